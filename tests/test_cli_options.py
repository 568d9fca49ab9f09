"""Command options come from the library's config dataclasses: the defaults have one owner (issue 14)."""
import argparse
import dataclasses

import pytest

from infbrush.cli import build_parser
from infbrush.cli.options import add_config_options, config_from_args


def _parse(command, *argv):
    return build_parser().parse_args([command, *argv])


def test_train_dino_without_options_is_the_library_default():
    from infbrush.ssl.train import DinoConfig

    args = _parse("train-dino", "--store", "s.h5", "--out", "d_ckpt", "--export", "d.pt")
    assert config_from_args(DinoConfig, args) == DinoConfig()


def test_train_clip_and_train_defaults_are_the_dataclass_defaults():
    from infbrush.embed.train_clip import ClipTrainConfig
    from infbrush.train.config import TrainConfig

    clip = config_from_args(ClipTrainConfig, _parse("train-clip", "--store", "s", "--prompts", "a=b", "--out", "o"),
                            progress=True)
    assert clip == ClipTrainConfig()
    args = _parse("train", "--store", "s", "--out", "o", "--uncond")
    default = TrainConfig(store="s", out="o")
    for field in dataclasses.fields(TrainConfig):
        if hasattr(args, field.name) and field.name not in ("betas", "model_args"):  # list / JSON text on the CLI
            assert getattr(args, field.name) == getattr(default, field.name), field.name


def test_options_parse_types_tuples_and_optional_ints():
    @dataclasses.dataclass
    class Config:
        size: int = 4
        scale: tuple[float, float] = (0.5, 1.0)
        depth: int | None = None
        name: str = "x"
        fast: bool = False

    parser = argparse.ArgumentParser()
    add_config_options(parser, Config(), {"size": "", "scale": "", "depth": "", "name": "", "fast": ""})
    got = config_from_args(Config, parser.parse_args(["--size", "8", "--scale", "0.1", "0.9", "--depth", "3",
                                                      "--fast"]))
    assert got == Config(size=8, scale=(0.1, 0.9), depth=3, name="x", fast=True)
    with pytest.raises(SystemExit):
        parser.parse_args(["--size", "eight"])


def test_both_trainers_share_one_vocabulary():
    """`--out` is the run folder (checkpoints, metrics) and `--export` the weights file of both trainers; both
    resume from `--out` and take `--on-data-change error|restart` (issue 14)."""
    for command, argv in (("train", ["--store", "s", "--uncond"]), ("train-dino", ["--store", "s"])):
        args = _parse(command, *argv, "--out", "run", "--export", "w.pt")
        assert (args.out, args.export, args.on_data_change) == ("run", "w.pt", "error")
        assert _parse(command, *argv, "--out", "run", "--export", "w.pt", "--on-data-change",
                      "restart").on_data_change == "restart"
    for old in (["--restart-stale"], ["--ckpt-dir", "c"]):  # train-dino's former spellings are gone
        with pytest.raises(SystemExit):
            _parse("train-dino", "--store", "s", "--out", "run", "--export", "w.pt", *old)


def test_command_defaults_are_the_library_defaults():
    """Each default of these commands is written once, in the library (issue 14)."""
    from infbrush.cli.options import signature_defaults
    from infbrush.data.adapters import CELEBA_ATTRIBUTE, adapt_bach
    from infbrush.data.geotiff import PatchParams, patch_geotiffs
    from infbrush.diffusion.settings import SamplingSettings
    from infbrush.data.patches import extract_patches
    from infbrush.embed.images import embed_store
    from infbrush.evaluate.bach import bach_downstream
    from infbrush.evaluate.spectrum import spectrum_check
    from infbrush.evaluate.zeroshot import zero_shot_evaluate
    from infbrush.runtime.device import resolve_device
    from infbrush.sample import run

    def same(args, func, *names):
        d = signature_defaults(func)
        for name in names:
            want = d[name]
            assert getattr(args, name) == (list(want) if isinstance(want, tuple) else want), name

    same(_parse("extract-patches", "t", "--slides", "s", "--out", "o"), extract_patches,
         "thumb_size", "class_maps", "held_out_slides", "workers")
    geo = _parse("patch-geotiff", "a.tif", "--out", "o", "--patch-size", "8")
    same(geo, patch_geotiffs, "thumb_size", "landcover", "landcover_names", "held_out_fraction")
    assert (geo.bands, geo.max_nodata_fraction) == (PatchParams().bands, PatchParams().max_nodata_fraction)
    adapt = _parse("adapt", "--kind", "bach", "--root", "r", "--out", "o", "--image-size", "8")
    same(adapt, adapt_bach, "thumb_size", "test_fraction", "seed")
    assert adapt.attribute == CELEBA_ATTRIBUTE
    same(_parse("embed", "--store", "s", "--kind", "timm", "--model", "m", "--out", "o"), embed_store,
         "batch_size", "limit")
    same(_parse("spectrum", "--store", "s", "--samples", "i", "--out", "o"), spectrum_check,
         "lattice_freqs", "real_split", "max_real", "seed", "peak_factor", "max_side")
    same(_parse("zeroshot", "--samples", "s", "--model", "m", "--prompts", "a=b", "--out", "o"), zero_shot_evaluate,
         "batch_size")
    same(_parse("bach-eval", "--bach", "b", "--synthetic", "s", "--model", "m", "--out", "o"), bach_downstream,
         "seeds", "val_fraction", "batch_size")
    sample = _parse("sample", "--weights", "w", "--out", "o", "--resolution", "64")
    sampling, output, execution = SamplingSettings(), run.ImageOutput(), run.Execution()
    for name in ("steps", "guidance_scale", "guidance_interval", "sampler", "spacing"):
        assert getattr(sample, name) == getattr(sampling, name), name
    assert (sample.png_max_side, sample.compression, sample.format) == (output.png_max_side, output.compression,
                                                                        output.fmt)
    assert (sample.batch_pixels, sample.amp) == (execution.batch_pixels, execution.precision)
    assert (sample.chunk_points, sample.seed, sample.per_class) == \
        (run.DEFAULT_CHUNK_POINTS, run.DEFAULT_SEED, run.DEFAULT_PER_CLASS)
    for command in (["embed-text", "--model", "m", "--prompts", "a=b", "--out", "o"], ["sample", "--weights", "w",
                    "--out", "o", "--resolution", "64"]):
        assert _parse(*command).device == signature_defaults(resolve_device)["device"]


def test_brush_eval_defaults_are_the_brush_settings():
    """brush-eval's and brush's defaults are PaintSettings' and EvalProtocol's (one owner: infbrush.brush.settings)."""
    from infbrush.brush.settings import EvalProtocol, PaintSettings

    args = _parse("brush-eval", "--map", "m.png", "--legend", "l.yaml", "--store", "s.h5", "--size", "64",
                  "--out", "b.json")
    paint, protocol = PaintSettings(), EvalProtocol()
    for name in ("steps", "guidance_scale", "guidance_interval", "chunk_points"):
        assert getattr(args, name) == getattr(paint, name), name
    for name in ("crop_fraction", "margin_fraction", "crops_per_region", "judge_seed", "feature_size"):
        assert getattr(args, name) == getattr(protocol, name), name
    assert args.seeds == list(protocol.seeds)
    brush = _parse("brush", "--map", "m.png", "--legend", "l.yaml", "--size", "64", "--out", "o.png")
    for name in ("steps", "guidance_scale", "guidance_interval", "chunk_points", "method"):
        assert getattr(brush, name) == getattr(paint, name), name


def test_every_commands_help_shows_its_defaults():
    """An option with a default (not a switch, not required) says it in its help: `infbrush X --help` is where a
    user reads what a run will do."""
    import argparse
    import importlib

    from infbrush.cli import COMMANDS

    switches = (argparse._StoreTrueAction, argparse._StoreFalseAction, argparse._StoreConstAction,
                argparse._HelpAction)
    silent = []
    for name in COMMANDS:
        parser = argparse.ArgumentParser()
        importlib.import_module(f"infbrush.cli.{name.replace('-', '_')}").add_arguments(parser)
        for action in parser._actions:
            if isinstance(action, switches) or action.required or action.default in (None, argparse.SUPPRESS):
                continue
            if "default" not in (action.help or ""):
                silent.append(f"{name} {action.option_strings[0]}")
    assert not silent, f"options whose --help does not show their default: {silent}"
