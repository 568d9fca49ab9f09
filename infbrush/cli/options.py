"""Command options from a library config dataclass: the dataclass owns every default, the command only adds
the help text. ``add_config_options(parser, ClipTrainConfig(), HELP_TEXTS)`` adds ``--image-size`` … with the
type and default of each field; ``config_from_args(ClipTrainConfig, args)`` builds the config back."""
from __future__ import annotations

import argparse
import dataclasses
import inspect
from typing import Any, Callable, TypeVar

T = TypeVar("T")


_TYPES = {"int": int, "float": float, "str": str}


def _value_type(field: dataclasses.Field, default: Any) -> type:
    """The option's type: the default's, or for a None default the first type of the annotation (``int | None``)."""
    if default is not None:
        return type(default)
    name = str(field.type).split("|")[0].strip()
    if name not in _TYPES:
        raise ValueError(f"{field.name}: cannot tell the option type of {field.type!r}; valid: {', '.join(_TYPES)}")
    return _TYPES[name]


def add_config_options(parser: argparse.ArgumentParser, config: Any, helps: dict[str, str]) -> None:
    """One ``--field-name`` per field of ``config`` (a dataclass instance) named in ``helps``; booleans that
    default to False are flags ``--field-name``, those that default to True are ``--no-field-name``; tuples take
    as many values as the default has."""
    for field in dataclasses.fields(config):
        if field.name not in helps:
            continue
        default = getattr(config, field.name)
        flag = "--" + field.name.replace("_", "-")
        text = f"{helps[field.name]} (default: %(default)s)" if helps[field.name] else "default: %(default)s"
        if isinstance(default, bool) and default:  # on by default: the option turns it off
            parser.add_argument("--no-" + field.name.replace("_", "-"), dest=field.name, action="store_false",
                                help=helps[field.name])
        elif isinstance(default, bool):
            parser.add_argument(flag, action="store_true", help=helps[field.name])
        elif isinstance(default, tuple):
            parser.add_argument(flag, type=type(default[0]), nargs=len(default), default=list(default), help=text)
        else:
            parser.add_argument(flag, type=_value_type(field, default), default=default, help=text)


def config_from_args(cls: type[T], args: argparse.Namespace, **extra: Any) -> T:
    """``cls`` built from the parsed options of its fields (tuples back from lists) and ``extra``."""
    values = dict(extra)
    for field in dataclasses.fields(cls):
        if field.name in values or not hasattr(args, field.name):
            continue
        value = getattr(args, field.name)
        values[field.name] = tuple(value) if isinstance(value, list) else value
    return cls(**values)


def signature_defaults(func: Callable) -> dict[str, Any]:
    """The keyword defaults of a library function, for commands whose library takes keywords, not a config."""
    return {name: p.default for name, p in inspect.signature(func).parameters.items()
            if p.default is not inspect.Parameter.empty}


def int_list(flag: str) -> Callable[[str], list[int]]:
    """An argparse ``type``: comma-separated integers → list[int]; a bad value is an error naming ``flag``."""

    def parse(text: str) -> list[int]:
        try:
            return [int(x) for x in text.split(",") if x.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} must be comma-separated integers, got {text!r}") from None

    return parse


def add_device_option(parser: argparse.ArgumentParser) -> None:
    """``--device``: the default and its meaning are those of :func:`infbrush.runtime.device.resolve_device`."""
    from infbrush.runtime.device import resolve_device

    parser.add_argument("--device", default=signature_defaults(resolve_device)["device"],
                        help="auto (cuda when a GPU is visible, else cpu) | cpu | cuda | cuda:N (default: %(default)s)")


def add_encoder_options(parser: argparse.ArgumentParser, *, kinds: tuple[str, ...] | None = None,
                        kind_required: bool = False) -> None:
    """``--kind``, ``--model``, ``--checkpoint`` of :func:`infbrush.embed.encoders.load_encoder`: the kinds and the
    checkpoint default are the library's; ``kinds`` narrows them (a text tower: open_clip only); ``--kind``
    defaults to the first of them unless ``kind_required``."""
    from infbrush.embed.encoders import ENCODER_KINDS, load_encoder

    narrowed = kinds is not None and tuple(kinds) != tuple(ENCODER_KINDS)
    kinds = kinds or ENCODER_KINDS
    text = "encoder family" + (" (only these have a text tower)" if narrowed else "")
    parser.add_argument("--kind", choices=kinds, required=kind_required, default=None if kind_required else kinds[0],
                        help=text + ("" if kind_required else " (default: %(default)s)"))
    parser.add_argument("--model", required=True,
                        help="open_clip model (democlip, hf-hub:ORG/REPO, local-dir:DIR, ViT-B-32, ...) or timm name")
    parser.add_argument("--checkpoint", default=signature_defaults(load_encoder)["checkpoint"],
                        help="local weights file/folder of the model (or an open_clip pretrained tag)")


def add_guidance_interval_option(parser: argparse.ArgumentParser, default: tuple[int, int] | None = None) -> None:
    """``--guidance-interval T_LO T_HI``: classifier-free guidance only at the steps with T_LO <= t <= T_HI."""
    parser.add_argument("--guidance-interval", type=int, nargs=2, metavar=("T_LO", "T_HI"), default=default,
                        help="guide only the steps with T_LO <= t <= T_HI of the schedule's [0, T) (Kynkäänniemi et "
                             "al. 2024); the others run the conditional pass alone (default: every step)")


def check_guidance_interval_option(interval: tuple[int, int] | None, timesteps: int) -> None:
    """``--guidance-interval`` against the model's schedule: InfbrushError naming the flag and the value."""
    from infbrush.diffusion.guidance import check_guidance_interval
    from infbrush.errors import InfbrushError

    try:
        check_guidance_interval(interval, timesteps)
    except ValueError as err:
        raise InfbrushError(f"--guidance-interval: {err}") from None
