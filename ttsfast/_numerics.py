"""Small numerics that several stages share, written once: sub-sample peak refinement,
bilinear sampling of an image, linear beat-closure drift removal, 8-bit rescaling."""
from __future__ import annotations

import numpy as np
from numba import njit


def parabolic_offset(a: float, b: float, c: float, *, maximum: bool) -> float:
    """Offset in samples, within [-0.5, 0.5], of the vertex of the parabola through the samples
    ``a, b, c`` at -1, 0, +1 from the middle one: of its top when ``maximum`` (needs
    ``a - 2b + c < 0``), of its bottom otherwise (needs ``> 0``); 0 when it does not curve so."""
    den = a - 2 * b + c
    if (den < 0) if maximum else (den > 0):
        return float(np.clip(0.5 * (a - c) / den, -0.5, 0.5))
    return 0.0


def refine_extremum(y: np.ndarray, i: int, *, maximum: bool) -> float:
    """Sub-sample position of the extremum of ``y [N]`` at index ``i`` (parabola through 3
    samples; ``float(i)`` at either end or where the samples do not curve the right way)."""
    if 0 < i < y.size - 1:
        return i + parabolic_offset(y[i - 1], y[i], y[i + 1], maximum=maximum)
    return float(i)


def refined_peak_value(y: np.ndarray, i: int) -> float:
    """Height of the parabola's top through the samples around the maximum ``y[i]`` (the peak
    between two samples is otherwise cut); ``y[i]`` at either end or without a top."""
    best = float(y[i])
    if 0 < i < y.size - 1:
        a, b, c = y[i - 1], y[i], y[i + 1]
        if a - 2 * b + c < 0:
            off = parabolic_offset(a, b, c, maximum=True)
            best = float(b - 0.25 * (a - c) * off)
    return best


def bilinear_sample(img: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """``img [H, W]`` at the points ``xy [..., 2]`` (x, y px), bilinear, clamped 0.001 px inside
    the last row and column; shape ``xy.shape[:-1]``."""
    h, w = img.shape
    x = np.clip(xy[..., 0], 0, w - 1.001)
    y = np.clip(xy[..., 1], 0, h - 1.001)
    x0 = np.floor(x).astype(int)
    y0 = np.floor(y).astype(int)
    ax, ay = x - x0, y - y0
    return ((1 - ax) * (1 - ay) * img[y0, x0] + ax * (1 - ay) * img[y0, x0 + 1]
            + (1 - ax) * ay * img[y0 + 1, x0] + ax * ay * img[y0 + 1, x0 + 1])


@njit(cache=True, nogil=True, inline="always")
def bilinear_sample_one(img, x, y):
    """:func:`bilinear_sample` at one point, for Numba kernels (same clamping and arithmetic)."""
    h, w = img.shape
    x = min(max(x, 0.0), w - 1.001)
    y = min(max(y, 0.0), h - 1.001)
    x0 = int(np.floor(x))
    y0 = int(np.floor(y))
    ax = x - x0
    ay = y - y0
    return ((1 - ax) * (1 - ay) * img[y0, x0] + ax * (1 - ay) * img[y0, x0 + 1]
            + (1 - ax) * ay * img[y0 + 1, x0] + ax * ay * img[y0 + 1, x0 + 1])


def remove_linear_drift(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Beat closure: over one full beat the signal or point ``p [K, ...]`` must end where it
    started; what does not is drift, removed linearly in time.

    Returns
    -------
    corrected : np.ndarray
        float64 ``[K, ...]``.
    drift : np.ndarray
        ``p[-1] - p[0]`` before correction, shape ``p.shape[1:]``.
    """
    p = np.asarray(p, dtype=np.float64)
    drift = p[-1] - p[0]
    frac = np.linspace(0.0, 1.0, p.shape[0]).reshape((-1,) + (1,) * (p.ndim - 1))
    return p - frac * drift[None], drift


def rescale_to_uint8(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """``x`` mapped linearly from ``[lo, hi]`` to 0..255, rounded half to even and clipped;
    uint8, same shape."""
    return np.clip(np.rint((x - lo) * (255.0 / max(hi - lo, 1e-12))), 0, 255).astype(np.uint8)


__all__ = ["parabolic_offset", "refine_extremum", "refined_peak_value", "bilinear_sample", "bilinear_sample_one",
           "remove_linear_drift", "rescale_to_uint8"]
