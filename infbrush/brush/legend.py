"""Legends: which condition each region of a map gets (YAML).

::

    blend: 8px                 # soft edges: pixels of the output, or a fraction of the side (0.05); default hard
    guidance_scale: 3.0        # classifier-free guidance (default: the command's --guidance-scale)
    encoder:                   # for text prompts and image files (an open_clip model with a text tower)
      kind: open_clip
      model: democlip
      checkpoint: results/demo_brca/democlip.pt
    embeddings: results/demo_brca/embeddings.h5   # for `embedding: <store id>`
    regions:
      "#2b83ba": {label: water}                   # a class of a label-conditioned model (name or index)
      "#ffffff": unconditional                    # the null condition
      "#d7191c": {text: "a histopathology image of breast invasive carcinoma"}
      "#1a9641": {embedding: "slide_3_x0_y64"}    # the embedding of a real image (store id) …
      "#fdae61": {image: my_patch.png}            # … or of an image file, through ``encoder``
      7: {label: 2, name: "field", guidance_scale: 2.0}   # integer maps: integer keys

Keys are '#rrggbb' colours (RGB maps) or integers (gray / integer maps). Paths are read relative to the
working directory, then to the legend's folder. Every mistake is one line naming the value.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from infbrush.brush.maps import colour_key, key_name
from infbrush.errors import InfbrushError

KINDS = ("label", "text", "embedding", "image", "unconditional")


@dataclass
class RegionSpec:
    """One region: its map key, display name, kind of condition and the resolved vector (None: unconditional)."""

    key: int
    name: str
    kind: str
    value: str
    cond: np.ndarray | None = field(default=None, repr=False)
    label: int = -1
    guidance_scale: float | None = None


@dataclass
class Legend:
    regions: list[RegionSpec]
    blend: object = None
    guidance_scale: float | None = None
    path: str = ""

    @property
    def keys(self) -> list[int]:
        return [r.key for r in self.regions]

    def key_names(self, rgb: bool) -> list[str]:
        return [key_name(r.key, rgb) for r in self.regions]


def _resolve_path(value: str, base: Path) -> Path:
    path = Path(value)
    if path.is_absolute() or path.exists():
        return path
    alt = base / path
    return alt if alt.exists() else path


def read_legend_yaml(path: str | os.PathLike) -> dict:
    from infbrush.config import load_yaml

    data = load_yaml(path)
    if not isinstance(data, dict) or not isinstance(data.get("regions"), dict) or not data["regions"]:
        raise InfbrushError(f"{path}: a legend needs a non-empty 'regions:' mapping of colour/value -> condition")
    unknown = sorted(set(data) - {"regions", "blend", "guidance_scale", "encoder", "embeddings", "store", "weights"})
    if unknown:
        raise InfbrushError(f"{path}: unknown legend key(s) {unknown}; valid: regions, blend, guidance_scale, "
                            f"encoder, embeddings, weights")
    return data


def _label_index(value, label_names: Sequence[str], cond_dim: int, where: str) -> int:
    if isinstance(value, bool):
        value = str(value)
    if isinstance(value, (int, np.integer)) or (isinstance(value, str) and value.strip().isdigit()):
        k = int(value)
        if not 0 <= k < cond_dim:
            raise InfbrushError(f"{where}: label {k} outside [0, {cond_dim}) (the model has {cond_dim} classes)")
        return k
    names = list(label_names)
    if value not in names:
        raise InfbrushError(f"{where}: unknown class {value!r}; the model's classes are "
                            f"{', '.join(names) if names else f'0..{cond_dim - 1} (no names stored)'}")
    return names.index(value)


def parse_legend(data: dict, *, cond_dim: int, label_names: Sequence[str] = (), label_model: bool = False,
                 source: str = "legend", base_dir: str | os.PathLike = ".",
                 encoder_factory: Callable[[dict], object] | None = None) -> Legend:
    """Resolve a legend mapping into one ``RegionSpec`` per key with its condition vector.

    ``cond_dim``: the model's condition width (0: unconditional model — only ``unconditional`` regions);
    ``label_model``: the model was trained on one-hot class labels (``label`` regions) rather than embeddings
    (``text`` / ``embedding`` / ``image`` regions). ``encoder_factory(encoder_cfg)`` loads the encoder for
    text and image regions (default ``infbrush.embed.encoders.load_encoder``).
    """
    base = Path(base_dir)
    regions: list[RegionSpec] = []
    encoder = None
    embeddings: tuple[np.ndarray, dict] | None = None

    def get_encoder(where: str):
        nonlocal encoder
        if encoder is None:
            cfg = data.get("encoder")
            if not isinstance(cfg, dict) or "model" not in cfg:
                raise InfbrushError(f"{where}: text and image regions need an 'encoder: {{kind, model, checkpoint}}' "
                                    f"in the legend")
            cfg = dict(cfg)
            if cfg.get("checkpoint"):
                ckpt = _resolve_path(str(cfg["checkpoint"]), base)
                if not ckpt.exists():
                    raise InfbrushError(f"{where}: encoder checkpoint {cfg['checkpoint']} not found")
                cfg["checkpoint"] = str(ckpt)
            if encoder_factory is not None:
                encoder = encoder_factory(cfg)
            else:
                from infbrush.embed.encoders import load_encoder

                encoder = load_encoder(cfg.get("kind", "open_clip"), cfg["model"], cfg.get("checkpoint"), device="cpu")
        return encoder

    def get_embeddings(where: str):
        nonlocal embeddings
        if embeddings is None:
            if not data.get("embeddings"):
                raise InfbrushError(f"{where}: embedding regions need 'embeddings: <embeddings.h5>' in the legend")
            path = _resolve_path(str(data["embeddings"]), base)
            if not path.is_file():
                raise InfbrushError(f"{where}: embeddings file {data['embeddings']} not found")
            from infbrush.embed.images import read_embeddings

            feats, ids, _ = read_embeddings(path)
            embeddings = (feats, {i: n for n, i in enumerate(ids)})
        return embeddings

    seen: dict[int, str] = {}
    for raw_key, raw in data["regions"].items():
        key = colour_key(raw_key)
        where = f"{source}: region {raw_key!r}"
        if key in seen:
            raise InfbrushError(f"{where}: the same map value as region {seen[key]!r}")
        seen[key] = str(raw_key)
        if isinstance(raw, str) and raw.strip().lower() in ("unconditional", "none", "null"):
            raw = {"unconditional": True}
        if raw is None:
            raw = {"unconditional": True}
        if not isinstance(raw, dict):
            raise InfbrushError(f"{where}: expected a mapping with one of {', '.join(KINDS)}, or 'unconditional', "
                                f"got {raw!r}")
        unknown = sorted(set(raw) - set(KINDS) - {"name", "guidance_scale"})
        if unknown:
            raise InfbrushError(f"{where}: unknown key(s) {unknown}; valid: {', '.join(KINDS)}, name, guidance_scale")
        kinds = [k for k in KINDS if k in raw and not (k == "unconditional" and raw[k] is False)]
        if len(kinds) != 1:
            raise InfbrushError(f"{where}: give exactly one of {', '.join(KINDS)}, got {kinds or 'none'}")
        kind = kinds[0]
        value = raw[kind]
        gs = raw.get("guidance_scale")
        if gs is not None and not (isinstance(gs, (int, float)) and gs >= 0):
            raise InfbrushError(f"{where}: guidance_scale must be a number >= 0, got {gs!r}")
        cond, label, name = None, -1, raw.get("name")
        if kind != "unconditional" and cond_dim == 0:
            raise InfbrushError(f"{where}: the model is unconditional (cond_dim 0); only 'unconditional' regions")
        if kind == "label":
            if not label_model:
                raise InfbrushError(f"{where}: label {value!r} needs a label-conditioned model; this one takes "
                                    f"{cond_dim}-dimensional embeddings (use text, embedding or image)")
            label = _label_index(value, label_names, cond_dim, where)
            cond = np.zeros(cond_dim, np.float32)
            cond[label] = 1.0
            name = name or (label_names[label] if label < len(label_names) else f"label {label}")
        elif kind in ("text", "embedding", "image") and label_model:
            raise InfbrushError(f"{where}: {kind} conditions need an embedding-conditioned model; this one was "
                                f"trained on {cond_dim} class labels (use label: <class>)")
        elif kind == "text":
            if not isinstance(value, str) or not value.strip():
                raise InfbrushError(f"{where}: text must be a non-empty prompt")
            cond = np.asarray(get_encoder(where).embed_text([value]), dtype=np.float32).reshape(-1)
            name = name or value
        elif kind == "embedding":
            feats, where_id = get_embeddings(where)
            if str(value) not in where_id:
                raise InfbrushError(f"{where}: image id {value!r} is not in {data['embeddings']}")
            cond = np.asarray(feats[where_id[str(value)]], dtype=np.float32)
            name = name or str(value)
        elif kind == "image":
            path = _resolve_path(str(value), base)
            if not path.is_file():
                raise InfbrushError(f"{where}: image {value} not found")
            from PIL import Image

            with Image.open(path) as im:
                pixels = np.asarray(im.convert("RGB"))
            cond = np.asarray(get_encoder(where).embed_images([pixels]), dtype=np.float32).reshape(-1)
            name = name or path.stem
        else:
            name = name or "unconditional"
        if cond is not None and cond.shape != (cond_dim,):
            raise InfbrushError(f"{where}: condition has dimension {cond.shape[0]} but the model expects {cond_dim}")
        if cond is not None and not np.isfinite(cond).all():
            raise InfbrushError(f"{where}: condition contains NaN or inf")
        regions.append(RegionSpec(key, str(name), kind, str(value), cond, label, None if gs is None else float(gs)))
    gs = data.get("guidance_scale")
    if gs is not None and not (isinstance(gs, (int, float)) and gs >= 0):
        raise InfbrushError(f"{source}: guidance_scale must be a number >= 0, got {gs!r}")
    return Legend(regions, data.get("blend"), None if gs is None else float(gs), source)


def load_legend(path: str | os.PathLike, **kwargs) -> Legend:
    """Read and resolve a legend file (see ``parse_legend`` for the keyword arguments)."""
    data = read_legend_yaml(path)
    return parse_legend(data, source=str(path), base_dir=Path(path).parent, **kwargs)
