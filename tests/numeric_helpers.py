"""Numerical comparisons whose tolerance is a measured bound, not a guess.

``assert_within(got, want, atol, rtol)`` asserts |got - want| ≤ atol + rtol·|want| elementwise. With
``INFBRUSH_NUMERIC_LOG`` set to a file, each call appends one JSON line (test, what, max_abs, max_rel, the
tolerance, the CPU capability and thread count it ran under), which is how the bounds beside the calls were
measured: run ``pytest -m numeric`` under ``ATEN_CPU_CAPABILITY=avx2`` and ``=default`` and take the largest.

Tests marked ``numeric`` compare two computations (chunked vs one pass, ranks vs one process, DDP vs one process,
resume vs uninterrupted, bf16 vs fp32, the demo world's bytes). They run at one intra-op thread (conftest's
autouse fixture; their subprocesses get ``OMP_NUM_THREADS=1``), and ``.ci/run`` runs them again under both
capabilities, so a green CI means green on AVX-512 and AVX2 machines alike.
"""
from __future__ import annotations

import json
import os

import numpy as np


def _array(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu()
        if x.dtype.is_floating_point:
            x = x.double()
        x = x.numpy()
    return np.asarray(x, dtype=np.float64)


def capability() -> str:
    """The CPU kernels torch runs here (what ATEN_CPU_CAPABILITY selects), e.g. 'AVX2', 'AVX512', 'DEFAULT'."""
    import torch

    return torch.backends.cpu.get_cpu_capability()


def assert_within(got, want, atol: float, rtol: float = 0.0, what: str = "") -> float:
    """|got - want| ≤ atol + rtol·|want| everywhere (tensors or arrays, same shape); returns max |got - want|."""
    a, b = _array(got), _array(want)
    assert a.shape == b.shape, f"{what}: shapes {a.shape} and {b.shape}"
    diff = np.abs(a - b)
    max_abs = float(diff.max()) if diff.size else 0.0
    scale = np.abs(b)
    max_rel = float((diff[scale > 0] / scale[scale > 0]).max()) if (scale > 0).any() else 0.0
    log = os.environ.get("INFBRUSH_NUMERIC_LOG")
    if log:
        import torch

        with open(log, "a") as f:
            f.write(json.dumps({"test": os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0], "what": what,
                                "max_abs": max_abs, "max_rel": max_rel, "atol": atol, "rtol": rtol,
                                "capability": capability(), "threads": torch.get_num_threads(),
                                "env_capability": os.environ.get("ATEN_CPU_CAPABILITY", "")}) + "\n")
    bad = diff > atol + rtol * scale
    assert not bad.any(), (f"{what}: {int(bad.sum())} of {diff.size} values differ beyond atol={atol:g}, "
                           f"rtol={rtol:g} (max |diff| {max_abs:.3g}, max relative {max_rel:.3g}; "
                           f"capability {capability()})")
    return max_abs
