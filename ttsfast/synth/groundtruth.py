"""Ground truth of a synthetic clip: landmarks, wall points, strain, true flow and the
study's measures, all derived from the same displacement field that moved the speckle."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .geometry import CLASS_MYOCARDIUM, ClassMap
from .motion import SEGMENTS, SIDES, MotionModel, _displace_many, _invert_many
from .render import mm_to_px, px_to_mm

#: Samples of one beat in the study's resampling.
BEAT_SAMPLES = 32
#: Fixed-point iterations used to invert x = X + u(X, t).
N_INVERT = 10


@dataclass
class ScanGeometry:
    """How probe-frame mm map to clip pixels.

    Attributes
    ----------
    height, width : int
        Canvas size in pixels.
    mm_per_px : float
        Isotropic pixel size, mm.
    top_px : float
        Row of the fan apex (transducer).
    mirrored : bool
        True when the image is flipped left-right (LV on the viewer's left).
    cx_px : float or None
        Column of the fan apex before any mirroring (None: the canvas centre; a zoomed or
        cropped frame may put it elsewhere, even outside the canvas).
    """

    height: int
    width: int
    mm_per_px: float
    top_px: float
    mirrored: bool
    cx_px: float | None = None

    def to_px(self, xy_mm: np.ndarray) -> np.ndarray:
        """Probe-frame mm (standard orientation) -> clip pixel (x, y)."""
        p = mm_to_px(xy_mm, self.width, self.mm_per_px, self.top_px, self.cx_px)
        if self.mirrored:
            p[..., 0] = (self.width - 1) - p[..., 0]
        return p

    def to_mm(self, xy_px: np.ndarray) -> np.ndarray:
        """Clip pixel (x, y) -> probe-frame mm (standard orientation)."""
        q = np.array(xy_px, dtype=np.float64, copy=True)
        if self.mirrored:
            q[..., 0] = (self.width - 1) - q[..., 0]
        return px_to_mm(q, self.width, self.mm_per_px, self.top_px, self.cx_px)


def _polyline_len(p: np.ndarray) -> np.ndarray:
    """Length of polylines [..., N, 2] -> [...]."""
    return np.linalg.norm(np.diff(p, axis=-2), axis=-1).sum(axis=-1)


def _seg_bounds(n_points: int) -> list[tuple[float, float]]:
    """Fractional index ranges (start, end) of the basal, mid and apical thirds of a wall
    sampled from the annulus (0) to the apex (n_points - 1) at equal arc-length steps: exact
    thirds, also when ``n_points - 1`` is not a multiple of 3."""
    e = float(n_points - 1)
    return [(0.0, e / 3.0), (e / 3.0, 2.0 * e / 3.0), (2.0 * e / 3.0, e)]


def _sub_polyline(p: np.ndarray, a: float, b: float) -> np.ndarray:
    """The part of polylines ``[..., N, 2]`` between fractional indices ``a`` < ``b``: the
    points strictly inside, with the two ends interpolated linearly between neighbours (the
    material points at those reference positions)."""
    n = p.shape[-2]

    def at(f: float) -> np.ndarray:
        i = min(int(np.floor(f)), n - 2)
        u = f - i
        return (1.0 - u) * p[..., i, :] + u * p[..., i + 1, :]

    inner = np.arange(int(np.floor(a)) + 1, int(np.ceil(b)))
    return np.concatenate([at(a)[..., None, :], p[..., inner, :], at(b)[..., None, :]], axis=-2)


def strain_from_walls(walls: dict[str, np.ndarray], ref: dict[str, np.ndarray]) -> tuple[dict, np.ndarray]:
    """Lagrangian longitudinal strain (%) of each segment and GLS from mid-wall polylines.

    The segments are the exact thirds of each wall's reference arc (the points are equally
    spaced in arc length at end-diastole; see :func:`_seg_bounds`).

    Parameters
    ----------
    walls : dict
        Side -> [T, N, 2] current mid-wall points (any isotropic unit).
    ref : dict
        Side -> [N, 2] reference (end-diastolic) points, same unit.
    """
    seg: dict[str, np.ndarray] = {}
    tot = 0.0
    tot_ref = 0.0
    for side in SIDES:
        w, r = walls[side], ref[side]
        for lvl, (a, b) in zip(("basal", "mid", "apical"), _seg_bounds(w.shape[1])):
            lt = _polyline_len(_sub_polyline(w, a, b))
            l0 = _polyline_len(_sub_polyline(r, a, b))
            seg[f"{lvl}_{side}"] = 100.0 * (lt / l0 - 1.0)
        tot = tot + _polyline_len(w)
        tot_ref = tot_ref + _polyline_len(r)
    return seg, 100.0 * (tot / tot_ref - 1.0)


def measures_from_model(model: MotionModel, beat: int = 0, mm_per_px: float = 0.9,
                        dt: float = 0.002) -> dict:
    """The study's measures of one beat, computed from the motion model alone (no images).

    Parameters
    ----------
    model : MotionModel
    beat : int
        Beat index (0 = the beat starting at the first end-diastole of the clip).
    mm_per_px : float
        Pixel size used to express the displacement measures in pixels (mm).
    dt : float
        Time step (s) for velocities and peak strain.

    Returns
    -------
    dict
        ``peak_displacement_px`` / ``peak_displacement_mm``: {basal_inferoseptal,
        basal_anterolateral} -> {systolic, diastolic}: largest |longitudinal step| between
        consecutive samples of the beat resampled to 32 samples (px or mm per 1/32 beat);
        ``excursion_px`` / ``excursion_mm``: largest longitudinal displacement from
        end-diastole toward the apex; ``strain_peak_pct``: six segments -> most negative
        Lagrangian strain (%); ``gls_pct``; ``s_prime_cm_s`` / ``e_prime_cm_s``:
        {septal, lateral} peak systolic (toward the apex) and early diastolic (away from
        it, before the atrial wave) annular velocities, cm/s; ``heart_rate_bpm``; ``beat_s``.
    """
    geo = model.geo
    P = model.timing.period
    t_ed = model.timing.t0 + beat * P
    t_es = model.timing.t_es
    ref = {s: geo.midwall[s] for s in SIDES}
    pts = np.concatenate([ref["inferoseptal"], ref["anterolateral"]], axis=0)
    n = ref["inferoseptal"].shape[0]

    def walls_at(times: np.ndarray) -> dict:
        cur = model.displace(pts, times)
        return {"inferoseptal": cur[:, :n], "anterolateral": cur[:, n:]}

    def long_axis(w: dict) -> np.ndarray:
        mid = 0.5 * (w["inferoseptal"][:, 0] + w["anterolateral"][:, 0])
        ax = w["inferoseptal"][:, -1] - mid
        return ax / np.linalg.norm(ax, axis=-1, keepdims=True)

    # study resampling: 32 samples from ED to the next ED
    ts = t_ed + np.linspace(0.0, P, BEAT_SAMPLES)
    w32 = walls_at(ts)
    ax32 = long_axis(w32)
    i_es = int(round(t_es / P * (BEAT_SAMPLES - 1)))
    pk_mm: dict = {}
    for side in SIDES:
        a = w32[side][:, 0]
        step = np.einsum("ij,ij->i", np.diff(a, axis=0), ax32[:-1])
        pk_mm[f"basal_{side}"] = {
            "systolic": float(np.max(np.abs(step[:i_es]))),
            "diastolic": float(np.max(np.abs(step[i_es:]))),
        }
    # fine time: velocities, excursion, peak strain
    tf = t_ed + np.arange(0.0, P, dt)
    wf = walls_at(tf)
    axf = long_axis(wf)
    ax0 = axf[0]
    exc_mm = {}
    sp, ep = {}, {}
    sys = (tf - t_ed) < t_es
    for i, (side, short) in enumerate(zip(SIDES, ("septal", "lateral"))):
        a = wf[side][:, 0]
        d = (a - a[0]) @ ax0
        exc_mm[f"basal_{side}"] = float(np.max(d))
        v = np.gradient(d, dt) / 10.0  # mm/s -> cm/s
        sp[short] = float(np.max(v[sys]))
        # E' is the EARLY diastolic peak: from end-systole to the start of the atrial wave (a
        # late A' faster than E', as in impaired relaxation, is not E')
        early = ~sys & ((tf - t_ed) < model.a_wave_start(i))
        ep[short] = float(np.max(-v[early]))
    seg, gls = strain_from_walls(wf, ref)
    return {
        "peak_displacement_px": {k: {kk: vv / mm_per_px for kk, vv in v.items()} for k, v in pk_mm.items()},
        "peak_displacement_mm": pk_mm,
        "excursion_px": {k: v / mm_per_px for k, v in exc_mm.items()},
        "excursion_mm": exc_mm,
        "strain_peak_pct": {k: float(np.min(v)) for k, v in seg.items()},
        "gls_pct": float(np.min(gls)),
        "s_prime_cm_s": sp,
        "e_prime_cm_s": ep,
        "heart_rate_bpm": 60.0 / P,
        "beat_s": P,
    }


@dataclass
class GroundTruth:
    """Known motion of a synthetic clip. Coordinates are clip pixels, (x, y), x first.

    Attributes
    ----------
    landmarks : dict
        ``"septal_annulus"``, ``"lateral_annulus"``, ``"apex"`` -> float [T, 2] px: the
        mid-wall annulus hinge of each wall and the mid-wall apex, per frame.
    wall_points : dict
        ``"inferoseptal"``, ``"anterolateral"`` -> float [T, N, 2] px, mid-wall points from
        the annulus (index 0) to the apex (index N-1, shared by both walls).
    segment_strain : dict
        Six segment names (``basal_inferoseptal`` ... ``apical_anterolateral``) -> [T]
        Lagrangian longitudinal strain of the mid-wall segment, % relative to end-diastole
        (negative in systole).
    gls : ndarray [T]
        Global longitudinal strain (both walls, mid-wall), %.
    ed_frames, es_frames : ndarray of int
        End-diastole / end-systole frame indices in the clip (nearest frames).
    heart_rate_bpm, fps, mm_per_px : float
        Heart rate (beats/min), frame rate (frames/s), pixel size (mm).
    mirrored : bool
        True when the LV is on the viewer's left.
    sector_mask : ndarray bool [H, W]
        Pixels inside the imaged sector.
    params : dict
        The drawn preset parameters (plus clip settings).
    ecg : ndarray [T]
        Synthetic ECG in mV (R peak at end-diastole).
    """

    landmarks: dict
    wall_points: dict
    segment_strain: dict
    gls: np.ndarray
    ed_frames: np.ndarray
    es_frames: np.ndarray
    heart_rate_bpm: float
    fps: float
    mm_per_px: float
    mirrored: bool
    sector_mask: np.ndarray
    params: dict
    ecg: np.ndarray
    model: MotionModel = field(repr=False)
    scan: ScanGeometry = field(repr=False)
    times: np.ndarray = field(repr=False)
    class_map: ClassMap | None = field(default=None, repr=False)
    _tables: Any = field(default=None, repr=False)
    _measures: dict = field(default_factory=dict, repr=False)

    @property
    def n_frames(self) -> int:
        return int(self.times.size)

    def _tab(self, t: int) -> tuple:
        if self._tables is None:
            self._tables = self.model.tables(self.times)
        D, R, H, rig = self._tables
        return D[t], R[t], H[t], float(rig[t, 0]), float(rig[t, 1])

    def _tab_time(self, time_s: float) -> tuple:
        D, R, H, rig = self.model.tables(np.array([time_s]))
        return D[0], R[0], H[0], float(rig[0, 0]), float(rig[0, 1])

    def _check_t(self, t: int, last: int) -> int:
        t = int(t)
        if t < 0 or t > last:
            from ..errors import InputError

            raise InputError(f"frame index {t} out of range 0..{last}")
        return t

    def _pixel_grid_mm(self) -> tuple[np.ndarray, np.ndarray]:
        m = self.sector_mask
        yy, xx = np.nonzero(m)
        px = np.stack([xx, yy], axis=1).astype(np.float64)
        return px, self.scan.to_mm(px)

    def reference_positions(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        """Reference (end-diastolic) positions in mm of the sector pixels of frame ``t``.

        Returns
        -------
        px : ndarray [M, 2]
            Pixel centres (x, y) inside the sector.
        X : ndarray [M, 2]
            Their reference positions, probe-frame mm.
        """
        t = self._check_t(t, self.n_frames - 1)
        px, mm = self._pixel_grid_mm()
        X = np.empty_like(mm)
        _invert_many(mm, *self._tab(t), *self.model.kernel_args(), N_INVERT, X)
        return px, X

    def track(self, points: np.ndarray, t_from: int, t_to: int) -> np.ndarray:
        """True positions at frame ``t_to`` of the tissue at ``points`` in frame ``t_from``.

        Parameters
        ----------
        points : array [N, 2]
            (x, y) px in frame ``t_from``.
        t_from, t_to : int
            Frame indices.

        Returns
        -------
        ndarray float64 [N, 2]
            (x, y) px in frame ``t_to``.
        """
        t_from = self._check_t(t_from, self.n_frames - 1)
        t_to = self._check_t(t_to, self.n_frames - 1)
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        mm = np.ascontiguousarray(self.scan.to_mm(pts))
        X = np.empty_like(mm)
        _invert_many(mm, *self._tab(t_from), *self.model.kernel_args(), N_INVERT, X)
        out = np.empty_like(X)
        _displace_many(X, *self._tab(t_to), *self.model.kernel_args(), out)
        return self.scan.to_px(out)

    def true_flow(self, t: int) -> np.ndarray:
        """True displacement from frame ``t`` to ``t + 1`` at every pixel centre of frame t.

        Returns
        -------
        ndarray float32 [H, W, 2]
            (dx, dy) in px; NaN outside the sector.
        """
        t = self._check_t(t, self.n_frames - 2)
        px, X = self.reference_positions(t)
        nxt = np.empty_like(X)
        _displace_many(X, *self._tab(t + 1), *self.model.kernel_args(), nxt)
        q = self.scan.to_px(nxt)
        out = np.full((self.scan.height, self.scan.width, 2), np.nan, dtype=np.float32)
        ix = px[:, 0].astype(np.int64)
        iy = px[:, 1].astype(np.int64)
        out[iy, ix] = (q - px).astype(np.float32)
        return out

    def tissue_mask(self, t: int) -> np.ndarray:
        """Myocardium pixels at frame ``t`` (bool [H, W])."""
        if self.class_map is None:
            raise RuntimeError("no class map: ground truth built without rendering")
        px, X = self.reference_positions(t)
        cls = self.class_map.sample(X)
        out = np.zeros((self.scan.height, self.scan.width), dtype=bool)
        out[px[:, 1].astype(np.int64), px[:, 0].astype(np.int64)] = cls == CLASS_MYOCARDIUM
        return out

    def true_measures(self, beat: int = 0) -> dict:
        """The study's measures of beat ``beat`` (see :func:`measures_from_model`), with
        pixel measures at this clip's ``mm_per_px``."""
        if beat not in self._measures:
            self._measures[beat] = measures_from_model(self.model, beat, self.mm_per_px)
        return self._measures[beat]


def ecg_trace(times: np.ndarray, t0: float, period: float, t_es: float) -> np.ndarray:
    """Synthetic ECG (mV): P, QRS at end-diastole, T before end-systole."""
    tau = np.mod(times - t0 + 0.5 * period, period) - 0.5 * period  # around each R
    tau2 = np.mod(times - t0, period)

    def g(x: np.ndarray, c: float, w: float, a: float) -> np.ndarray:
        return a * np.exp(-0.5 * ((x - c) / w) ** 2)

    return (g(tau, -0.16, 0.025, 0.15) + g(tau, -0.025, 0.008, -0.12) + g(tau, 0.0, 0.01, 1.1)
            + g(tau, 0.025, 0.01, -0.25) + g(tau2, t_es - 0.08, 0.045, 0.3))


def build_groundtruth(model: MotionModel, scan: ScanGeometry, times: np.ndarray, fps: float,
                      params: dict, sector_mask: np.ndarray, cmap: ClassMap | None) -> GroundTruth:
    """Trajectories of the mid-wall points and everything derived from them."""
    geo = model.geo
    n = geo.midwall["inferoseptal"].shape[0]
    pts = np.concatenate([geo.midwall["inferoseptal"], geo.midwall["anterolateral"]], axis=0)
    cur = model.displace(pts, times)
    walls_mm = {"inferoseptal": cur[:, :n], "anterolateral": cur[:, n:]}
    seg, gls = strain_from_walls(walls_mm, {s: geo.midwall[s] for s in SIDES})
    walls_px = {k: scan.to_px(v) for k, v in walls_mm.items()}
    lm = {
        "septal_annulus": walls_px["inferoseptal"][:, 0].copy(),
        "lateral_annulus": walls_px["anterolateral"][:, 0].copy(),
        "apex": walls_px["inferoseptal"][:, -1].copy(),
    }
    P = model.timing.period
    T = times.size
    k_max = int(np.ceil((times[-1] - model.timing.t0) / P)) + 1
    ed_t = model.timing.t0 + P * np.arange(-1, k_max + 1)
    es_t = ed_t + model.timing.t_es

    def frames_of(ts: np.ndarray) -> np.ndarray:
        f = np.rint(ts * fps).astype(np.int64)
        return np.unique(f[(f >= 0) & (f < T)])

    return GroundTruth(
        landmarks=lm, wall_points=walls_px, segment_strain={k: seg[k] for k in SEGMENTS},
        gls=gls, ed_frames=frames_of(ed_t), es_frames=frames_of(es_t),
        heart_rate_bpm=60.0 / P, fps=float(fps), mm_per_px=scan.mm_per_px,
        mirrored=scan.mirrored, sector_mask=sector_mask, params=params,
        ecg=ecg_trace(times, model.timing.t0, P, model.timing.t_es),
        model=model, scan=scan, times=times, class_map=cmap,
    )
