"""Whether a landmark set can be trusted: the anatomy of an apical 4-chamber view, checked on
the end-diastolic frame.

The mechanics are measured from three landmarks (septal and lateral mitral annulus, LV apex).
A landmark set that breaks the anatomy of an apical 4-chamber view (both annulus points on one
wall, an annulus as wide as the ventricle is long, an apex that is not beyond the annulus or
sits in the middle of the cavity, points far from any cavity border) gives numbers that look
like measurements and are not. :func:`check_landmarks` runs those checks on the ED frame and
returns a :class:`LandmarkCheck`: which checks failed (stable codes), the values behind them,
and a confidence that combines the detector's own with the checks' margins.
:func:`ttsfast.analyze` withholds the mechanics when a check fails or the confidence is below
:data:`MIN_CONFIDENCE`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .landmarks import Landmarks, long_axis


@dataclass(frozen=True)
class AnatomyParams:
    """Limits of the anatomy checks (ratios of the LV length L unless said otherwise).

    The geometric checks are hard; the image checks use only extreme values, because haze,
    near-field clutter and speckled blood pools on real clips make a blood/tissue threshold
    unreliable (docs/landmarks.md). The confidence's margins are soft.

    Attributes
    ----------
    width_ratio : (float, float)
        Plausible mitral annulus width / L (adults about 0.3-0.5; foreshortened or dilated
        ventricles reach 0.6-0.8).
    max_axis_tilt_deg : float
        Largest angle between the long axis and the normal of the annulus line.
    max_wall_ratio : float
        Largest ratio of the apex's distances to the two annulus points.
    blood_level : float
        A pixel is blood below ``dark + blood_level * (bright - dark)`` (the sector's 10th and
        90th intensity percentiles, on the smoothed frame).
    min_cavity_blood : float
        Least share of blood along the long axis between 0.25 L and 0.75 L (the cavity).
    min_between_blood : float
        Least share of blood across the ventricle at 0.25 L from the annulus, between the two
        walls' lines (both annulus points on one wall leave tissue there).
    border_reach : float
        Radius (in L) of the disc around each landmark whose blood share is measured.
    max_border_blood : float
        Largest share of blood in an annulus point's disc (above it the point is inside the
        cavity).
    max_apex_blood : float
        An apex whose disc and the 0.15 L beyond it both hold more blood than this lies inside
        the cavity.
    tilt_scale_deg, wall_scale : float
        The confidence's margins: the tilt (degrees) and the wall ratio's excess over 1 at which
        each margin reaches 0 (1 at a symmetric, upright landmark set).
    """

    width_ratio: tuple[float, float] = (0.2, 0.85)
    max_axis_tilt_deg: float = 25.0
    max_wall_ratio: float = 1.35
    blood_level: float = 0.4
    min_cavity_blood: float = 0.25
    min_between_blood: float = 0.15
    border_reach: float = 0.15
    max_border_blood: float = 0.92
    max_apex_blood: float = 0.95
    tilt_scale_deg: float = 20.0
    wall_scale: float = 0.25


#: Automatic landmarks below this confidence are not trusted (the mechanics are withheld).
#: Chosen on synthetic clips, classic and wide variety, seeds 0-15 (docs/landmarks.md);
#: caller landmarks face the hard checks only.
MIN_CONFIDENCE = 0.5


@dataclass
class LandmarkCheck:
    """The anatomy checks of one landmark set.

    Attributes
    ----------
    trusted : bool
        No check failed and ``confidence >= MIN_CONFIDENCE``.
    confidence : float
        0..1: the detector's confidence times the tilt and wall-ratio margins (:func:`judge`).
    failed : list of dict
        ``{code, message}`` of each failed check (codes: ``annulus_width``, ``axis_tilt``,
        ``wall_lengths``, ``cavity_not_found``, ``annulus_same_side``, ``off_border``,
        ``apex_in_cavity``, ``low_confidence``).
    values : dict
        The measured value behind each check (ratios, shares, degrees).
    """

    trusted: bool
    confidence: float
    failed: list[dict[str, str]] = field(default_factory=list)
    values: dict[str, float] = field(default_factory=dict)

    def reason(self) -> str:
        """One sentence naming the failed checks."""
        return "; ".join(f["message"] for f in self.failed) if self.failed else ""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["confidence"] = round(float(self.confidence), 3)
        d["values"] = {k: round(float(v), 4) for k, v in self.values.items()}
        return d


def blood_map(frame: np.ndarray, mask: np.ndarray, length: float, level: float) -> np.ndarray:
    """bool ``[H, W]``: the dark (blood) pixels of the smoothed ED frame inside the sector.

    Parameters
    ----------
    frame : np.ndarray
        uint8 or float ``[H, W]`` ED frame (analysis grid).
    mask : np.ndarray
        bool ``[H, W]`` sector mask.
    length : float
        LV length (px); sets the smoothing (1.5 % of it, at least 1.5 px: speckle is not blood).
    level : float
        Fraction of the way from the sector's 10th to its 90th intensity percentile below which
        a pixel is blood.
    """
    import cv2

    img = cv2.GaussianBlur(np.asarray(frame, np.float32), (0, 0), max(1.5, 0.015 * length))
    vals = img[mask]
    dark, bright = (np.percentile(vals, (10, 90)) if vals.size else (0.0, 1.0))
    return (img < dark + level * (bright - dark)) & mask


def _share_along(blood: np.ndarray, p0: np.ndarray, p1: np.ndarray, n: int = 40) -> float:
    """Share of blood pixels sampled on the segment p0 -> p1 (points outside the image count
    as not blood)."""
    h, w = blood.shape
    t = np.linspace(0.0, 1.0, n)[:, None]
    pts = np.rint(p0[None] + t * (p1 - p0)[None]).astype(int)
    ok = (pts[:, 0] >= 0) & (pts[:, 0] < w) & (pts[:, 1] >= 0) & (pts[:, 1] < h)
    hit = np.zeros(n, bool)
    hit[ok] = blood[pts[ok, 1], pts[ok, 0]]
    return float(hit.mean())


def _disc_share(blood: np.ndarray, mask: np.ndarray, p: np.ndarray, r: float) -> float:
    """Share of blood among the sector pixels within ``r`` px of ``p`` (0 when none)."""
    h, w = blood.shape
    x0, x1 = int(max(0, np.floor(p[0] - r))), int(min(w, np.ceil(p[0] + r) + 1))
    y0, y1 = int(max(0, np.floor(p[1] - r))), int(min(h, np.ceil(p[1] + r) + 1))
    if x1 <= x0 or y1 <= y0:
        return 0.0
    yy, xx = np.mgrid[y0:y1, x0:x1]
    disc = ((xx - p[0]) ** 2 + (yy - p[1]) ** 2 <= r * r) & mask[y0:y1, x0:x1]
    if not disc.any():
        return 0.0
    return float(blood[y0:y1, x0:x1][disc].mean())


def geometry_values(lm: Landmarks) -> dict[str, float]:
    """Scale-free geometry of a landmark set: ``width_ratio`` (annulus width / LV length),
    ``axis_tilt_deg`` (long axis vs the annulus line's normal), ``wall_ratio`` (the apex's
    farther / nearer annulus distance) and ``length_px``."""
    s, l, a = lm.septal_annulus, lm.lateral_annulus, lm.apex
    _, u, length = long_axis(s, l, a)
    d = l - s
    width = float(np.hypot(*d))
    normal = np.array([d[1], -d[0]]) / max(width, 1e-9)
    tilt = float(np.degrees(np.arccos(np.clip(abs(float(normal @ u)), 0.0, 1.0))))
    ds, dl = float(np.hypot(*(a - s))), float(np.hypot(*(a - l)))
    return {"length_px": length, "width_ratio": width / length, "axis_tilt_deg": tilt,
            "wall_ratio": max(ds, dl) / max(min(ds, dl), 1e-9)}


def image_values(lm: Landmarks, frame: np.ndarray, mask: np.ndarray,
                 params: AnatomyParams = AnatomyParams()) -> dict[str, float]:
    """Blood shares that say whether the landmarks sit on the LV's cavity borders.

    Returns ``cavity_blood`` (along the axis, 0.25-0.75 L), ``between_blood`` (across the
    ventricle 0.25 L above the annulus, middle 60 % between the walls), ``border_<name>``
    (blood share in a disc of ``border_reach`` L around each point) and ``apex_overshoot_blood``
    (0.15 L beyond the apex).
    """
    s, l, a = lm.septal_annulus, lm.lateral_annulus, lm.apex
    mid, u, length = long_axis(s, l, a)
    blood = blood_map(frame, mask, length, params.blood_level)
    out = {"cavity_blood": _share_along(blood, mid + 0.25 * length * u, mid + 0.75 * length * u)}
    # across the ventricle at 0.25 L: the walls' lines from each annulus point to the apex
    s1, l1 = s + 0.25 * (a - s), l + 0.25 * (a - l)
    out["between_blood"] = _share_along(blood, s1 + 0.2 * (l1 - s1), s1 + 0.8 * (l1 - s1))
    r = max(3.0, params.border_reach * length)
    for name, p in (("septal_annulus", s), ("lateral_annulus", l), ("apex", a)):
        out[f"border_{name}"] = _disc_share(blood, mask, p, r)
    out["apex_overshoot_blood"] = _share_along(blood, a + 0.03 * length * u, a + 0.15 * length * u, 20)
    return out


def judge(vals: dict[str, float], detector_confidence: float, params: AnatomyParams = AnatomyParams(),
          min_confidence: float | None = MIN_CONFIDENCE) -> tuple[list[dict[str, str]], float]:
    """The checks' verdict on measured values (:func:`geometry_values` and :func:`image_values`).

    Parameters
    ----------
    vals : dict
        The measured values.
    detector_confidence : float
        The detector's own confidence (1 for caller landmarks).
    params : AnatomyParams
    min_confidence : float or None
        Below this the set fails with ``low_confidence``; None skips that test (caller
        landmarks).

    Returns
    -------
    (failed, confidence)
        ``failed``: ``{code, message}`` per failed check; ``confidence``: the detector's
        confidence times the tilt and wall-ratio margins (each 1 for a symmetric, upright set,
        falling linearly to 0 at ``tilt_scale_deg`` and ``1 + wall_scale``).
    """
    p = params
    failed: list[dict[str, str]] = []

    def fail(code: str, message: str) -> None:
        failed.append({"code": code, "message": message})

    wr = vals["width_ratio"]
    if not p.width_ratio[0] <= wr <= p.width_ratio[1]:
        fail("annulus_width", f"the annulus points are {wr:.2f} LV lengths apart (plausible "
             f"{p.width_ratio[0]:g}-{p.width_ratio[1]:g})")
    if vals["axis_tilt_deg"] > p.max_axis_tilt_deg:
        fail("axis_tilt", f"the apex is not beyond the annulus: the long axis leans "
             f"{vals['axis_tilt_deg']:.0f} degrees from the annulus's normal (at most {p.max_axis_tilt_deg:g})")
    if vals["wall_ratio"] > p.max_wall_ratio:
        fail("wall_lengths", f"one wall is {100 * (vals['wall_ratio'] - 1):.0f} % longer than the other "
             f"(at most {100 * (p.max_wall_ratio - 1):.0f} %)")
    if vals["cavity_blood"] < p.min_cavity_blood:
        fail("cavity_not_found", f"the long axis runs through tissue, not the LV cavity "
             f"({100 * vals['cavity_blood']:.0f} % blood along it)")
    if vals["between_blood"] < p.min_between_blood:
        fail("annulus_same_side", f"no cavity between the two annulus points' walls "
             f"({100 * vals['between_blood']:.0f} % blood): both may lie on one wall")
    for name in ("septal_annulus", "lateral_annulus"):
        if vals[f"border_{name}"] > p.max_border_blood:
            fail("off_border", f"the {name.replace('_', ' ')} lies inside the cavity, not on its border")
    if vals["border_apex"] > p.max_apex_blood and vals["apex_overshoot_blood"] > p.max_apex_blood:
        fail("apex_in_cavity", "the apex lies inside the cavity (blood all around and beyond it)")
    m_tilt = float(np.clip(1.0 - vals["axis_tilt_deg"] / p.tilt_scale_deg, 0.0, 1.0))
    m_wall = float(np.clip(1.0 - (vals["wall_ratio"] - 1.0) / p.wall_scale, 0.0, 1.0))
    conf = float(np.clip(detector_confidence, 0.0, 1.0)) * m_tilt * m_wall
    if min_confidence is not None and not failed and conf < min_confidence:
        fail("low_confidence", f"the landmarks' confidence {conf:.2f} is below {min_confidence:g} "
             f"(detector {detector_confidence:.2f}, long-axis tilt {vals['axis_tilt_deg']:.0f} degrees, "
             f"walls {100 * (vals['wall_ratio'] - 1):.0f} % apart in length)")
    return failed, conf


def check_landmarks(lm: Landmarks, frame: np.ndarray, mask: np.ndarray | None = None,
                    params: AnatomyParams = AnatomyParams(),
                    min_confidence: float = MIN_CONFIDENCE) -> LandmarkCheck:
    """Check a landmark set against the anatomy of an apical 4-chamber view.

    Parameters
    ----------
    lm : Landmarks
        Grid px, from :func:`~ttsfast.landmarks.detect_landmarks` or the caller.
    frame : np.ndarray
        uint8 ``[H, W]`` end-diastolic frame on the same grid.
    mask : np.ndarray, optional
        bool ``[H, W]`` sector mask (default: the non-zero pixels).
    params : AnatomyParams
        The checks' limits.
    min_confidence : float
        Below this an automatic set is not trusted (code ``low_confidence``); caller landmarks
        face the hard checks only.

    Returns
    -------
    LandmarkCheck
        With the verdict of :func:`judge`.
    """
    frame = np.asarray(frame)
    if mask is None:
        mask = frame > 0
    mask = np.asarray(mask, dtype=bool)
    vals = geometry_values(lm)
    vals.update(image_values(lm, frame, mask, params))
    failed, conf = judge(vals, lm.confidence, params, min_confidence if lm.source == "auto" else None)
    return LandmarkCheck(trusted=not failed, confidence=conf, failed=failed, values=vals)


__all__ = ["AnatomyParams", "MIN_CONFIDENCE", "LandmarkCheck", "blood_map", "geometry_values",
           "image_values", "judge", "check_landmarks"]
