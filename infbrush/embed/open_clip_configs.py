"""open_clip models from an architecture dict (the demo CLIP, hub folders copied without their cache): the
config is registered with open_clip under a name derived from its content."""
from __future__ import annotations

import atexit
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from infbrush.errors import InfbrushError

_CONFIG_DIR: Path | None = None


def register_open_clip_config(model_cfg: dict) -> str:
    """Register an architecture config dict with open_clip; returns the name to pass to ``create_model``.

    The name is derived from the config's content, so the same config always maps to the same name.
    """
    global _CONFIG_DIR
    import open_clip

    blob = json.dumps(model_cfg, sort_keys=True)
    name = "infbrush-" + hashlib.sha1(blob.encode()).hexdigest()[:12]
    if name in open_clip.list_models():
        return name
    if _CONFIG_DIR is None:
        _CONFIG_DIR = Path(tempfile.mkdtemp(prefix="infbrush-open_clip-"))
        atexit.register(shutil.rmtree, _CONFIG_DIR, True)
        (_CONFIG_DIR / f"{name}.json").write_text(blob)
        open_clip.add_model_config(_CONFIG_DIR)
    else:
        (_CONFIG_DIR / f"{name}.json").write_text(blob)
        open_clip.add_model_config(_CONFIG_DIR / f"{name}.json")
    return name


def open_clip_from_config(model_cfg: dict, preprocess_cfg: dict | None, weights: str | os.PathLike | None,
                          device="cpu"):
    """(model, preprocess_train, preprocess_val, tokenizer) for an architecture dict and optional weights file."""
    import open_clip

    name = register_open_clip_config(model_cfg)
    pp = preprocess_cfg or {}
    kwargs = {k: pp[k] for k in ("image_mean", "image_std", "image_interpolation", "image_resize_mode") if k in pp}
    if "mean" in pp:
        kwargs["image_mean"] = tuple(pp["mean"])
    if "std" in pp:
        kwargs["image_std"] = tuple(pp["std"])
    if "interpolation" in pp:
        kwargs["image_interpolation"] = pp["interpolation"]
    if "resize_mode" in pp:
        kwargs["image_resize_mode"] = pp["resize_mode"]
    try:
        model, pre_train, pre_val = open_clip.create_model_and_transforms(
            name, pretrained=str(weights) if weights else None, device=device, **kwargs)
    except RuntimeError as err:  # strict state-dict load: wrong architecture
        first = str(err).strip().splitlines()[0][:300]
        raise InfbrushError(f"{weights}: weights do not fit the model architecture ({first})") from None
    return model, pre_train, pre_val, open_clip.get_tokenizer(name)
