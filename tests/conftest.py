"""Shared test setup: never touch the network, keep torch to few threads on the 2-core CI machine."""
import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One intra-op thread per test, whatever an earlier test or a module's import left: on the shared 2-core
    machine OpenMP contention costs more than it gives, and matmul rounding depends on the thread count, so the
    numerical comparisons (``numeric`` marker) need it fixed."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def tiny_democlip(tmp_path_factory):
    """Factory: a tiny demo CLIP with random weights (seed 0) saved in the demo CLIP's checkpoint format (16-d
    features) for the given class prompts; returns the checkpoint path."""

    def make(prompts: dict[str, str]) -> str:
        import torch

        from infbrush.embed.democlip import build_democlip, democlip_config, save_democlip

        cfg = democlip_config(image_size=32, patch_size=8, width=64, layers=2, embed_dim=16)
        torch.manual_seed(0)
        model, _, _ = build_democlip(cfg)
        path = tmp_path_factory.mktemp("clip") / "democlip.pt"
        save_democlip(path, model, cfg, list(prompts), prompts, steps=0)
        return str(path)

    return make


def have(cmd: str) -> bool:
    return shutil.which(cmd) is not None
