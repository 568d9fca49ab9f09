"""Model weight files shared by the encoders and the self-supervised trainer: our own checkpoint files (a dict
with a ``format`` tag, read with ``weights_only=True``) and third-party state dicts (``.pt``, ``.bin``,
``.safetensors``) loaded into timm backbones."""
from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

from infbrush.errors import InfbrushError


def _first_line(err: BaseException) -> str:
    return str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__


def read_tagged_checkpoint(path: str | os.PathLike, fmt: str, what: str, made_by: str) -> dict:
    """The dict in ``path`` whose ``format`` is ``fmt``; a missing, unreadable or other file is one InfbrushError
    naming it (``what``: e.g. 'demo CLIP checkpoint'; ``made_by``: the command that writes it)."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise InfbrushError(f"{path}: {what} not found (made by `{made_by}`)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001
        raise InfbrushError(f"{path}: cannot read checkpoint ({_first_line(err)})") from None
    if not isinstance(state, dict) or state.get("format") != fmt:
        raise InfbrushError(f"{path}: not a {what} from `{made_by}` (no format={fmt!r})")
    return state


def sha256_state_dict(state_dict: dict) -> str:
    """sha256 of a state dict's serialized bytes (for weights that did not come from one file)."""
    import torch

    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in state_dict.items()}, buffer)
    return hashlib.sha256(buffer.getvalue()).hexdigest()


def read_state_dict(path: Path) -> dict:
    """A third-party state dict (.safetensors or torch file; nested under state_dict/model/backbone, DDP's
    ``module.`` prefix removed)."""
    import torch

    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001
        raise InfbrushError(f"{path}: cannot read weights ({_first_line(err)})") from None
    for key in ("state_dict", "model", "backbone"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_timm_weights(module, path: Path, state: dict | None = None) -> None:
    """Load a local state dict into a timm backbone (keys the backbone lacks, e.g. a classifier, are ignored).

    A checkpoint of another architecture (missing keys or different shapes) raises an InfbrushError naming the file.
    """
    state = read_state_dict(Path(path)) if state is None else state
    own = module.state_dict()
    state = {k: v for k, v in state.items() if k in own}
    for key, value in state.items():
        if tuple(own[key].shape) != tuple(value.shape):
            raise InfbrushError(f"{path}: weights do not fit the model ({key}: {tuple(value.shape)} in the file, "
                                f"{tuple(own[key].shape)} in the model)")
    missing = [k for k in own if k not in state]
    if missing:
        raise InfbrushError(f"{path}: weights do not fit the model ({len(missing)} tensors missing, "
                            f"e.g. {missing[:3]})")
    module.load_state_dict(state)
