"""``infbrush large-field``: whole-image generation of large fields against patch-based assembly (Table 1)."""
from __future__ import annotations

import argparse
import sys

HELP = ("large fields: the whole-image model against the small model's tiles assembled (hard seams and blended "
        "overlaps) on held-out reference fields; whole-image KID, Crop KID, seams, embedding similarity, time")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from infbrush.cli.options import add_config_options, add_device_option, add_encoder_options
    from infbrush.evaluate.large_field import FieldSetup, LargeFieldRun

    d = LargeFieldRun("", "", "", "", 0, "", "")  # the library owns the defaults
    parser.add_argument("--field-weights", required=True, help="the whole-image model (ema.pt of the field dataset)")
    parser.add_argument("--field-store", required=True, help="images.h5 of the fields (held-out rows: references)")
    parser.add_argument("--field-embeddings", required=True, help="embeddings.h5 of the fields (its conditions)")
    parser.add_argument("--tile-weights", required=True, help="the small model (ema.pt of the patch dataset)")
    parser.add_argument("--tile-size", type=int, required=True, help="the small model's training size (px)")
    parser.add_argument("--overlap", type=int, nargs="+", default=list(d.overlaps),
                        help="patch-based variants: 0 = tiles side by side; o > 0 = tiles overlapping by o px, "
                             "predictions blended at every step (default: %(default)s)")
    parser.add_argument("--field-condition-tiles", action="store_true", default=d.field_condition_tiles,
                        help="also sample patch_based_field_condition: hard-seam tiles all conditioned on the whole "
                             "field's embedding (the whole-image model's information), not one embedding per tile")
    parser.add_argument("--n-fields", type=int, default=d.n_fields, help="reference fields (default: %(default)s)")
    parser.add_argument("--batch-fields", type=int, default=d.batch_fields,
                        help="fields per sampling batch; outputs do not depend on it (default: %(default)s)")
    add_config_options(parser, FieldSetup(), {
        "steps": "sampler steps", "sampler": "sampler (ddim | dpmpp_2m | unipc)", "spacing": "timestep spacing",
        "field_guidance": "guidance scale of the whole-image model", "tile_guidance": "guidance scale of the tiles",
        "seed": "seed of reference field i is SEED + i (the same for every method)",
        "crops_per_field": "native-resolution crops per field for Crop KID", "bootstrap": "bootstrap resamples"})
    add_encoder_options(parser)
    add_device_option(parser)
    parser.add_argument("--out", required=True, help="large_field.json")
    parser.add_argument("--gallery", help="PNG: reference | whole image | patch-based, first 4 references")
    parser.add_argument("--fields-dir", help="folder for every field: real/NNN.png and <method>/NNN.png with a sample "
                                             "index (index.json) that `infbrush viewer` reads")
    parser.add_argument("--no-progress", action="store_true")


def main(args: argparse.Namespace) -> int:
    from pathlib import Path

    from PIL import Image

    from infbrush.cli.options import config_from_args
    from infbrush.errors import InfbrushError
    from infbrush.evaluate.large_field import FieldSetup, LargeFieldRun, gallery, run_large_field
    from infbrush.io import atomic_path, write_json
    from infbrush.runtime.device import resolve_device

    for flag, value, low in (("--n-fields", args.n_fields, 2), ("--batch-fields", args.batch_fields, 1),
                             ("--steps", args.steps, 1), ("--crops-per-field", args.crops_per_field, 1),
                             ("--bootstrap", args.bootstrap, 10), ("--tile-size", args.tile_size, 1)):
        if value < low:
            raise InfbrushError(f"{flag} must be >= {low}, got {value}")
    run = LargeFieldRun(field_weights=args.field_weights, field_store=args.field_store,
                        field_embeddings=args.field_embeddings, tile_weights=args.tile_weights,
                        tile_size=args.tile_size, encoder_kind=args.kind, encoder_model=args.model,
                        encoder_checkpoint=args.checkpoint, overlaps=tuple(args.overlap), n_fields=args.n_fields,
                        field_condition_tiles=args.field_condition_tiles,
                        batch_fields=args.batch_fields, setup=config_from_args(FieldSetup, args),
                        device=str(resolve_device(args.device)))
    try:
        result, methods, real = run_large_field(run, progress=not args.no_progress)
    except ValueError as err:
        raise InfbrushError(f"large-field: {err}") from None
    write_json(args.out, result)
    if args.gallery:
        with atomic_path(args.gallery) as tmp:
            Image.fromarray(gallery(real, methods)).save(tmp, format="PNG")
    if args.fields_dir:
        write_fields(Path(args.fields_dir), real, methods, result)
    for name, m in result["methods"].items():
        print(f"large-field: {name}: whole-image KID {m['whole_image_kid']:.4f}, crop KID {m['crop_kid']:.4f}, seam "
              f"ratio {m['seam_ratio']['mean']:.2f}, embedding similarity {m['embedding_similarity']['mean']:.3f}, "
              f"{m['seconds_per_image']:.1f} s per field", file=sys.stderr)
    print(f"large-field: real fields' seam ratio {result['real']['seam_ratio']['mean']:.2f} -> {args.out}",
          file=sys.stderr)
    return 0


def write_fields(folder, real: list, methods: dict[str, list], result: dict) -> None:
    """Every field as PNG: ``real/NNN.png`` (the references) and ``<method>/NNN.png`` with that folder's sample
    index (``index.json``, the format of `infbrush sample`), whose entries name each field's reference as
    ``source_id``; `infbrush viewer --samples FOLDER --store FIELD_STORE` shows every generated field beside it."""
    import numpy as np
    from PIL import Image

    from infbrush.data.store import ImageStore
    from infbrush.io import atomic_path
    from infbrush.sample.outputs import SampleIndex

    store = ImageStore(result["field_store"])
    rows = result["reference_rows"]
    size = result["field_size"]
    for position, (name, images) in enumerate({"real": real, **methods}.items()):
        sub = folder / name
        sub.mkdir(parents=True, exist_ok=True)
        index = None if name == "real" else SampleIndex(sub, (size, size), {
            "method": name, "field_weights": result["field_weights"], "tile_weights": result["tile_weights"],
            **result["setup"], "viewer_position": position})  # the viewer lists whole_image (the first) first
        for i, image in enumerate(images):
            file = f"{i:03d}.png"
            with atomic_path(sub / file) as tmp:
                Image.fromarray(np.asarray(image)).save(tmp, format="PNG")
            if index is not None:
                index.add({"file": file, "name": f"{name}_{i:03d}", "seed": result["seeds"][i], "source": "held-out",
                           "source_id": store.ids[rows[i]], "label": int(store.labels[rows[i]]), "method": name,
                           "resolution": [size, size], "format": "png"})
        if index is not None:
            index.save()
