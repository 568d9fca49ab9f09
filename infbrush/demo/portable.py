"""Transcendental functions that return the same bits on every x86-64 CPU, for the demo world.

numpy chooses SIMD kernels for sin, cos, exp, arctan2 and power at run time (baseline, AVX2, AVX-512), and
the kernels differ in the last bits. In the demo world one flipped threshold ("is this pixel tissue?") changes
how many random numbers a slide draws, and so every pixel drawn after it: two machines wrote different slides
from one seed (5 of 6 slides differed between this CPU with and without numpy's AVX-512 kernels). These
wrappers evaluate in float64 and round the result to a 2^-20 grid (exact in binary). The kernels' differences
(a few ulp, ~1e-15) can then change a result only where the exact value lies within ~1e-15 of a grid midpoint,
about one value in 10^8 to 10^9. Arithmetic (+, -, *, /, sqrt) is IEEE-exact on every CPU and needs no wrapper.
"""
from __future__ import annotations

import numpy as np

_GRID = 2.0 ** 20


def _snap(exact: np.ndarray, like) -> np.ndarray:
    """Round float64 ``exact`` to the 2^-20 grid and return it in ``like``'s float type (float32 stays float32)."""
    dtype = np.float32 if np.asarray(like).dtype == np.float32 else np.float64
    return (np.rint(exact * _GRID) / _GRID).astype(dtype)


def _f64(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def sin(x):
    """sin(x), the same bits on every CPU."""
    return _snap(np.sin(_f64(x)), x)


def cos(x):
    """cos(x), the same bits on every CPU."""
    return _snap(np.cos(_f64(x)), x)


def exp(x):
    """exp(x), the same bits on every CPU (for results well below 2^32)."""
    return _snap(np.exp(_f64(x)), x)


def arctan2(y, x):
    """arctan2(y, x), the same bits on every CPU."""
    like = np.float32 if np.asarray(y).dtype == np.float32 and np.asarray(x).dtype == np.float32 else np.float64
    return _snap(np.arctan2(_f64(y), _f64(x)), np.zeros((), like))


def hypot(y, x):
    """sqrt(y² + x²) from exact arithmetic, the same bits on every CPU."""
    y, x = _f64(y), _f64(x)
    return np.sqrt(y * y + x * x)


def power10(x):
    """10 ** x, the same bits on every CPU."""
    return _snap(np.power(10.0, _f64(x)), x)
