"""Annulus anchoring: the slow part of each annulus track taken from its basal wall, which the
similarity of the wall's basal points carries (history and measurements of the constants:
``docs/mechanics_notes.md``)."""
from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..warning_codes import ReportWarning, warn
from .points import WALL_OF, TrackedPoints

#: Share of the wall (from the annulus) whose points carry the annulus, its time smoothing (share
#: of the tracked span) and the closure scale (px) of the carriers' weights; see
#: docs/mechanics_notes.md.
ANNULUS_ANCHOR_FRACTION = 7 / 30
ANNULUS_ANCHOR_SMOOTH = 0.2
ANNULUS_ANCHOR_CLOSURE_PX = 1.0  # px, scale of the carriers' closure weighting
#: Guard (:func:`anchor_trusted`): an annulus keeps its own track when its carriers closed the beat
#: more than 3 px off, or more than 1 px and twice its own closure; see docs/mechanics_notes.md.
ANNULUS_ANCHOR_GUARD_PX = 3.0
ANNULUS_ANCHOR_GUARD_MIN_PX = 1.0
ANNULUS_ANCHOR_GUARD_RATIO = 2.0


def similarity_carry(ref: np.ndarray, cur: np.ndarray, p0: np.ndarray,
                     weights: np.ndarray | None = None) -> np.ndarray:
    """Carry a point with the least-squares similarity of a point set, frame by frame.

    Parameters
    ----------
    ref : np.ndarray
        ``[N, 2]`` (x, y) px of the carrier points in the reference frame (N >= 2).
    cur : np.ndarray
        ``[K, N, 2]`` the same points in K frames.
    p0 : np.ndarray
        ``[2]`` the carried point in the reference frame.
    weights : np.ndarray, optional
        ``[N]`` non-negative weight of each carrier point (default equal).

    Returns
    -------
    np.ndarray
        float64 ``[K, 2]``: ``p0`` mapped by the similarity (shift, rotation, uniform scale) that
        best maps ``ref`` onto ``cur[k]`` in weighted least squares.
    """
    ref = np.asarray(ref, dtype=np.float64)
    cur = np.asarray(cur, dtype=np.float64)
    w = np.ones(ref.shape[0]) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (ref.shape[0],) or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise InputError(f"similarity_carry: weights must be {ref.shape[0]} non-negative numbers, not all 0")
    w = w / w.sum()
    mr = w @ ref
    mc = np.einsum("n,knc->kc", w, cur)  # [K, 2]
    zr = (ref[:, 0] - mr[0]) + 1j * (ref[:, 1] - mr[1])
    zc = (cur[..., 0] - mc[:, None, 0]) + 1j * (cur[..., 1] - mc[:, None, 1])
    den = float(np.sum(w * np.abs(zr) ** 2))
    if den <= 1e-12:
        raise InputError("similarity_carry: the reference points coincide")
    c = (zc @ (w * np.conj(zr))) / den  # [K] rotation and scale
    q = c * ((p0[0] - mr[0]) + 1j * (p0[1] - mr[1]))
    return np.stack([q.real + mc[:, 0], q.imag + mc[:, 1]], axis=1)


def _gaussian_in_time(x: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing of ``x`` ``[K, ...]`` along axis 0 (``sigma`` in samples, edges held)."""
    if sigma <= 0 or x.shape[0] < 2:
        return x.copy()
    r = int(np.ceil(3.0 * sigma))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    xp = np.concatenate([np.repeat(x[:1], r, axis=0), x, np.repeat(x[-1:], r, axis=0)])
    out = np.zeros_like(x, dtype=np.float64)
    for j, kj in enumerate(k):
        out += kj * xp[j:j + x.shape[0]]
    return out


def anchor_points(n_wall: int) -> tuple[int, int]:
    """First and last wall index of the anchoring carriers for a wall of ``n_wall`` points: the
    basal ``ANNULUS_ANCHOR_FRACTION`` of the wall (1..7 of 31), at least two points."""
    if n_wall < 3:
        raise InputError(f"a wall needs >= 3 points for anchoring, got {n_wall}")
    return 1, max(2, int(round(ANNULUS_ANCHOR_FRACTION * (n_wall - 1))))


def _carrier_weights(car: np.ndarray, closure_index: int, closure_px: float) -> tuple[np.ndarray, np.ndarray]:
    """Beat-closure error ``c`` (px) of each carrier ``car`` ``[K, N, 2]`` and its weight
    ``1 / (1 + (c / closure_px)^2)``, both ``[N]``."""
    c = np.hypot(*(car[closure_index] - car[0]).T)
    return c, 1.0 / (1.0 + (c / closure_px) ** 2)


def anchor_trusted(annulus: np.ndarray, wall: np.ndarray, closure_index: int, *,
                   points: tuple[int, int] | None = None,
                   closure_px: float = ANNULUS_ANCHOR_CLOSURE_PX) -> tuple[bool, float, float]:
    """Whether the basal wall closed its beat well enough to carry the annulus (the guard of
    ``ANNULUS_ANCHOR_GUARD_PX``).

    Parameters
    ----------
    annulus, wall, points, closure_px
        As in :func:`anchor_annulus` (``[K, 2]`` own track, ``[K, N, 2]`` wall, px).
    closure_index : int
        Index of the next end-diastole in the tracks (1..K-1).

    Returns
    -------
    trusted : bool
        False when the carriers' closure-weighted mean closure exceeds ``ANNULUS_ANCHOR_GUARD_PX``,
        or exceeds ``ANNULUS_ANCHOR_GUARD_MIN_PX`` and ``ANNULUS_ANCHOR_GUARD_RATIO`` times the
        annulus's own.
    own_px, carriers_px : float
        The annulus's own closure and the carriers' weighted mean closure, px.
    """
    a = np.asarray(annulus, dtype=np.float64)
    wall = np.asarray(wall, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != 2 or wall.ndim != 3 or wall.shape[0] != a.shape[0] or wall.shape[2] != 2:
        raise InputError(f"anchor_trusted: annulus must be [K, 2] and wall [K, N, 2], got {a.shape} and {wall.shape}")
    if not 0 < int(closure_index) < a.shape[0]:
        raise InputError(f"anchor_trusted: closure_index must be in 1..{a.shape[0] - 1}, got {closure_index}")
    closure_index = int(closure_index)
    lo, hi = anchor_points(wall.shape[1]) if points is None else points
    c, w = _carrier_weights(wall[:, lo:hi + 1], closure_index, closure_px)
    own = float(np.hypot(*(a[closure_index] - a[0])))
    cw = float((w * c).sum() / w.sum())
    lost = cw > ANNULUS_ANCHOR_GUARD_PX or (cw > ANNULUS_ANCHOR_GUARD_MIN_PX and cw > ANNULUS_ANCHOR_GUARD_RATIO * own)
    return not lost, own, cw


def anchor_annulus(annulus: np.ndarray, wall: np.ndarray, *, points: tuple[int, int] | None = None,
                   smooth: float = ANNULUS_ANCHOR_SMOOTH, closure_index: int | None = None,
                   closure_px: float = ANNULUS_ANCHOR_CLOSURE_PX) -> np.ndarray:
    """An annulus track whose slow part follows its basal wall (see ``ANNULUS_ANCHOR_FRACTION``).

    Parameters
    ----------
    annulus : np.ndarray
        ``[K, 2]`` (x, y) px: the annulus's own track, frame 0 the reference (ED).
    wall : np.ndarray
        ``[K, N, 2]`` the tracked wall from that annulus (index 0) toward the apex.
    points : (int, int), optional
        First and last wall index of the carrier points (inclusive); default
        :func:`anchor_points` of the wall's number of points.
    smooth : float
        Gaussian sigma of the correction, as a fraction of the K-1 tracked steps.
    closure_index : int, optional
        Index of the next end-diastole in the tracks: each carrier point is then weighted by
        ``1 / (1 + (c / closure_px)^2)``, ``c`` its beat-closure error (px), so that points
        the tracker lost (in dropout, say) carry little. None: equal weights.
    closure_px : float
        Scale of that weighting, px.

    Returns
    -------
    np.ndarray
        float64 ``[K, 2]``: ``annulus`` plus the time-smoothed difference between the wall's
        similarity prediction of it and itself, less that difference at frame 0 (so that frame 0
        stays the annulus's own).
    """
    a = np.asarray(annulus, dtype=np.float64)
    lo, hi = anchor_points(wall.shape[1]) if points is None else points
    car = wall[:, lo:hi + 1]
    w = None if closure_index is None else _carrier_weights(car, closure_index, closure_px)[1]
    pred = similarity_carry(car[0], car, a[0], weights=w)
    corr = _gaussian_in_time(pred - a, smooth * (a.shape[0] - 1))
    return a + (corr - corr[:1])  # nothing moves at ED: the annulus stays where the landmark is


def anchor_annuli(raw: TrackedPoints, closure_index: int) -> tuple[TrackedPoints, dict[str, bool], list[ReportWarning]]:
    """Anchor each annulus track of ``raw`` ``[K, M, 2]`` to its basal wall where
    :func:`anchor_trusted` trusts the wall (``closure_index``: the next ED in the tracks).

    Returns
    -------
    points : TrackedPoints
        A copy with the anchored annulus tracks.
    anchored : dict
        ``septal_annulus`` / ``lateral_annulus`` -> whether it was anchored.
    warnings : list of ReportWarning
        One per annulus left on its own track.
    """
    raw = raw.with_array(raw.array.copy())
    anchored = dict.fromkeys(WALL_OF, False)
    warnings: list[ReportWarning] = []
    for lname, wname in WALL_OF.items():
        own, wall_tr = raw.landmark(lname), raw.wall(wname)  # the wall from this annulus toward the apex
        trusted, own_px, car_px = anchor_trusted(own, wall_tr, closure_index)
        if trusted:
            own[...] = anchor_annulus(own, wall_tr, closure_index=closure_index)
            anchored[lname] = True
        else:
            warnings.append(warn("annulus_not_anchored", f"{lname}: not anchored to its basal wall, whose points closed the beat {car_px:.1f} px "
                            f"off (its own track {own_px:.1f} px): the tracker lost the wall there, so the annulus "
                            "keeps its own track (its excursion may read low)"))
    return raw, anchored, warnings
