"""Segment lengths along a tracked wall and Lagrangian longitudinal strain of its thirds."""
from __future__ import annotations

from typing import Mapping

import numpy as np
from numba import njit

from ..errors import InputError
from .points import LEVELS, WALLS


@njit(cache=True, nogil=True)
def _segment_lengths(points, bounds, out):
    """out[k, s] = polyline length of points[k, bounds[s]:bounds[s+1]+1]."""
    for k in range(points.shape[0]):
        for s in range(bounds.shape[0] - 1):
            acc = 0.0
            for i in range(bounds[s], bounds[s + 1]):
                dx = points[k, i + 1, 0] - points[k, i, 0]
                dy = points[k, i + 1, 1] - points[k, i, 1]
                acc += np.sqrt(dx * dx + dy * dy)
            out[k, s] = acc


def segment_lengths(points: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Polyline length of each segment of a tracked wall.

    Parameters
    ----------
    points : np.ndarray
        ``[K, N, 2]`` positions of the wall points over K frames.
    bounds : np.ndarray
        int ``[S+1]`` point indices of the segment borders (0 .. N-1).

    Returns
    -------
    np.ndarray
        float64 ``[K, S]`` px.
    """
    p = np.ascontiguousarray(points, dtype=np.float64)
    b = np.ascontiguousarray(bounds, dtype=np.int64)
    if p.ndim != 3 or p.shape[2] != 2 or b.ndim != 1 or b.size < 2 or b[0] < 0 or b[-1] > p.shape[1] - 1 \
            or np.any(np.diff(b) <= 0):
        raise InputError(f"bad points {p.shape} or segment bounds {b}")
    out = np.empty((p.shape[0], b.size - 1), dtype=np.float64)
    _segment_lengths(p, b, out)
    return out


def _smooth_along_wall(p: np.ndarray) -> np.ndarray:
    """[1,2,1]/4 smoothing of the interior points along the wall (ends kept): lowers the
    length bias that independent tracking noise adds to a polyline."""
    q = p.copy()
    q[:, 1:-1] = 0.25 * p[:, :-2] + 0.5 * p[:, 1:-1] + 0.25 * p[:, 2:]
    return q


def segment_bounds(n_wall: int) -> np.ndarray:
    """int ``[4]``: wall point indices of the borders of the basal, mid and apical segments (thirds
    of the ``n_wall`` points, annulus at 0)."""
    return np.rint(np.linspace(0, n_wall - 1, 4)).astype(np.int64)


def segment_closure_pct(wall0: np.ndarray, closure: np.ndarray) -> np.ndarray:
    """How far a segment's end points ended the beat from their start, in strain points.

    Parameters
    ----------
    wall0 : np.ndarray
        ``[N, 2]`` the wall at ED (annulus first), px.
    closure : np.ndarray
        ``[N, 2]`` each point's position at the next ED minus at ED (before any correction), px.

    Returns
    -------
    np.ndarray
        float64 ``[3]`` (basal, mid, apical): 100 x the larger closure error of the segment's two
        end points / the segment's ED length.
    """
    b = segment_bounds(wall0.shape[0])
    c = np.hypot(closure[:, 0], closure[:, 1])
    lens = segment_lengths(np.asarray(wall0, dtype=np.float64)[None], b)[0]
    return np.array([100.0 * max(c[b[j]], c[b[j + 1]]) / max(lens[j], 1e-9) for j in range(3)])


def strain_curves(walls: Mapping[str, np.ndarray], *, smooth: bool = True) -> dict[str, np.ndarray]:
    """Lagrangian longitudinal strain (%) of the six segments and GLS.

    Parameters
    ----------
    walls : mapping
        ``{"inferoseptal": [K, N, 2], "anterolateral": [K, N, 2]}`` tracked points, annulus
        (index 0) to apex (index N-1); frame 0 is the reference (ED).

    Returns
    -------
    dict
        The six :data:`SEGMENTS` and ``"gls"`` -> float64 ``[K]`` %.
    """
    out: dict[str, np.ndarray] = {}
    total = None
    for wname in WALLS:
        p = np.asarray(walls[wname], dtype=np.float64)
        if smooth and p.shape[1] >= 5:
            p = _smooth_along_wall(p)
        bounds = segment_bounds(p.shape[1])
        lens = segment_lengths(p, bounds)
        for j, lvl in enumerate(LEVELS):
            out[f"{lvl}_{wname}"] = 100.0 * (lens[:, j] - lens[0, j]) / lens[0, j]
        tot = lens.sum(axis=1)
        total = tot if total is None else total + tot
    out["gls"] = 100.0 * (total - total[0]) / total[0]
    return out
