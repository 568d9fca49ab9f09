"""Device choice, one rule for every command: ``auto`` is cuda when a GPU is visible, else cpu."""
from __future__ import annotations


def resolve_device(device: str = "auto") -> str:
    """'auto' → 'cuda' when a GPU is visible, else 'cpu'; any other name (cpu, cuda, cuda:1) unchanged."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
