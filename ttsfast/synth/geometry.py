"""Reference (end-diastolic) geometry of the synthetic apical-4-chamber view.

All lengths here are in millimetres in the *probe frame*: origin at the transducer (the
apex of the fan), x to the viewer's right, y down (depth). The standard display is built
(LV on the viewer's right, inferoseptal wall nearer the image centre); a mirrored clip is
made by flipping the finished images and coordinates, see :mod:`ttsfast.synth.generate`.

The left ventricle is described in its own frame: ``s`` along the long axis from the
endocardial apex (s = 0) toward the mitral annulus midpoint (s = L), ``n`` across it,
positive toward the anterolateral wall.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

#: Echogenicity (linear amplitude factors) of the tissue classes of the reference map.
CLASS_BLOOD = 0
CLASS_BACKGROUND = 1
CLASS_MYOCARDIUM = 2
CLASS_PERICARDIUM = 3
CLASS_THIN_WALL = 4  # atrial walls, RV free wall, valves
CLASS_NEAR_FIELD = 5
CLASS_TRABECULAE = 6  # rough endocardial border: weaker echo than compact myocardium
CLASS_PAPILLARY = 7  # papillary muscles in the LV cavity (variety mode only)

#: Default echogenicity in dB of each class (0 dB = myocardium).
CLASS_DB = np.array([-42.0, -23.0, 0.0, 5.0, -7.0, -14.0, -9.0, -3.0], dtype=np.float32)


@dataclass
class Geometry:
    """Reference geometry, all lengths in mm (probe frame, standard orientation).

    Attributes
    ----------
    apex : ndarray [2]
        Endocardial LV apex (x, y) mm.
    e_s, e_n : ndarray [2]
        Unit vectors: long axis (apex -> base) and across (toward anterolateral).
    length : float
        LV length (endocardial apex to annulus midpoint) mm.
    halfwidth : float
        Largest cavity half-width mm.
    wall : float
        Myocardial wall thickness mm.
    s_grid, w_of_s : ndarray [Ns]
        Cavity half-width ``w(s)`` (mm) tabulated at ``s_grid`` (mm).
    midwall : dict
        ``"inferoseptal"``/``"anterolateral"`` -> [N, 2] mm mid-wall points from the
        annulus (index 0) to the apex (last, shared by both walls).
    depth, half_angle : float
        Sector depth (mm) and half opening angle (radians).
    """

    apex: np.ndarray
    e_s: np.ndarray
    e_n: np.ndarray
    length: float
    halfwidth: float
    wall: float
    s_grid: np.ndarray
    w_of_s: np.ndarray
    midwall: dict
    depth: float
    half_angle: float
    polygons: dict
    #: where the elliptic apical cap meets the tapered base, as a fraction of ``length``
    #: (0.62 by default; smaller = rounder, blunter apex)
    apex_frac: float = 0.62

    def to_probe(self, s: np.ndarray, n: np.ndarray) -> np.ndarray:
        """LV-frame (s, n) mm -> probe-frame [..., 2] (x, y) mm."""
        s = np.asarray(s, dtype=np.float64)
        n = np.asarray(n, dtype=np.float64)
        return self.apex + s[..., None] * self.e_s + n[..., None] * self.e_n

    def to_lv(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Probe-frame [..., 2] mm -> LV frame (s, n) mm."""
        d = np.asarray(xy, dtype=np.float64) - self.apex
        return d @ self.e_s, d @ self.e_n


def cavity_halfwidth(s: np.ndarray, length: float, halfwidth: float,
                     apex_frac: float = 0.62) -> np.ndarray:
    """Bullet-shaped LV cavity: elliptic toward the apex, slight taper to the annulus.

    Parameters
    ----------
    s : ndarray
        Position along the long axis, mm (0 = endocardial apex, ``length`` = annulus).
    length, halfwidth : float
        LV length and largest half-width, mm.
    apex_frac : float
        Where the elliptic apical cap reaches the full half-width, as a fraction of
        ``length`` (smaller: a rounder, blunter apex, as in dilated or foreshortened views).

    Returns
    -------
    ndarray
        Half-width in mm (0 outside [0, length] toward the apex).
    """
    s = np.asarray(s, dtype=np.float64)
    sc = apex_frac * length
    q = np.clip((sc - s) / sc, -1.0, 1.0)
    ell = halfwidth * np.sqrt(np.clip(1.0 - q * q, 0.0, None))
    t = np.clip((s - sc) / (length - sc), 0.0, None)
    taper = halfwidth * (1.0 - 0.14 * t * t)
    return np.where(s < 0, 0.0, np.where(s < sc, ell, taper))


def _offset_curve(s_lv: np.ndarray, w: np.ndarray, side: float, offset: float) -> np.ndarray:
    """Points (s, n) of the endocardial curve of one side pushed outward by ``offset`` mm
    along its normal. Returns [N, 2] in the LV frame."""
    pts = np.stack([s_lv, side * w], axis=1)
    d = np.gradient(pts, axis=0)
    d /= np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-9)
    nrm = np.stack([-d[:, 1], d[:, 0]], axis=1)
    # outward = away from the axis (sign of n), at the apex away from the base (-s)
    out_ref = np.stack([-np.ones_like(s_lv) * 0.3, np.full_like(s_lv, side)], axis=1)
    flip = np.sign(np.sum(nrm * out_ref, axis=1))
    flip[flip == 0] = 1.0
    return pts + offset * nrm * flip[:, None]


def _endo_curve(length: float, halfwidth: float, side: float, n_pts: int = 200,
                apex_frac: float = 0.62) -> np.ndarray:
    """Endocardial curve of one side from the apex (s=0) to the annulus, LV frame [N,2]."""
    # uniform in angle near the apex (so the cap is sampled finely), then in s
    u = np.linspace(0.0, 1.0, n_pts)
    s = length * (1.0 - np.cos(u * np.pi / 2.0)) ** 1.0
    s = np.maximum(s, 0.0)
    w = cavity_halfwidth(s, length, halfwidth, apex_frac)
    return np.stack([s, side * w], axis=1)


def _resample_polyline(pts: np.ndarray, n: int) -> np.ndarray:
    """Resample a polyline to ``n`` points equally spaced in arc length."""
    seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
    c = np.concatenate([[0.0], np.cumsum(seg)])
    t = np.linspace(0.0, c[-1], n)
    return np.stack([np.interp(t, c, pts[:, 0]), np.interp(t, c, pts[:, 1])], axis=1)


def _lv_frame_mapper(apex: np.ndarray, e_s: np.ndarray,
                     e_n: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """Map LV-frame points to the probe frame.

    Parameters
    ----------
    apex : ndarray [2]
        Endocardial LV apex (x, y), probe-frame mm.
    e_s, e_n : ndarray [2]
        Unit vectors of the long axis (apex -> base) and across it.

    Returns
    -------
    callable
        ``to_probe(sn)``: LV-frame (s, n) points [N, 2] mm -> probe-frame (x, y) [N, 2] mm.
    """
    def to_probe(sn: np.ndarray) -> np.ndarray:
        return apex + sn[:, :1] * e_s + sn[:, 1:2] * e_n

    return to_probe


def _lv_walls(L: float, W: float, h: float, qf: float, to_probe: Callable, n_wall_points: int
              ) -> tuple[dict, dict, dict]:
    """Endocardium, epicardium and mid-wall of both LV walls.

    Parameters
    ----------
    L, W, h : float
        LV length, largest cavity half-width and wall thickness, mm.
    qf : float
        Apical cap fraction of ``L`` (see :func:`cavity_halfwidth`).
    to_probe : callable
        LV frame -> probe frame, see :func:`_lv_frame_mapper`.
    n_wall_points : int
        Mid-wall points per wall.

    Returns
    -------
    endo, epi : dict
        ``"inferoseptal"``/``"anterolateral"`` -> [N, 2] LV-frame (s, n) mm, apex first.
    mid : dict
        Same keys -> [n_wall_points, 2] probe-frame mm, annulus first, apex last (the apex
        point shared exactly by both walls).
    """
    endo = {}
    epi = {}
    mid = {}
    for name, side in (("inferoseptal", -1.0), ("anterolateral", 1.0)):
        e = _endo_curve(L, W, side, apex_frac=qf)
        endo[name] = e
        epi[name] = _offset_curve(e[:, 0], np.abs(e[:, 1]), side, h)
        m = _offset_curve(e[:, 0], np.abs(e[:, 1]), side, h / 2.0)
        # annulus first, apex last
        mid[name] = to_probe(_resample_polyline(m[::-1], n_wall_points))
    # the two mid-wall curves share the apex point exactly
    apex_mid = 0.5 * (mid["inferoseptal"][-1] + mid["anterolateral"][-1])
    for name in mid:
        mid[name][-1] = apex_mid
    return endo, epi, mid


def _lv_polygons(polys: dict, endo: dict, epi: dict, h: float, to_probe: Callable) -> None:
    """Add the LV cavity (endocardium closed by the valve plane), the myocardium ring and
    the lateral pericardium band (``h`` to ``h + 3`` mm outside the lateral endocardium) to
    ``polys`` (probe-frame mm)."""
    cav = np.concatenate([endo["inferoseptal"][::-1], endo["anterolateral"]], axis=0)
    myo = np.concatenate([epi["inferoseptal"][::-1], epi["anterolateral"],
                          endo["anterolateral"][::-1], endo["inferoseptal"]], axis=0)
    polys["lv_cavity"] = to_probe(cav)
    polys["lv_myocardium"] = to_probe(myo)
    # pericardium: a bright band outside the lateral wall and around the apex
    peri_in = _offset_curve(endo["anterolateral"][:, 0], np.abs(endo["anterolateral"][:, 1]), 1.0, h)
    peri_out = _offset_curve(endo["anterolateral"][:, 0], np.abs(endo["anterolateral"][:, 1]), 1.0, h + 3.0)
    polys["pericardium_lat"] = to_probe(np.concatenate([peri_in, peri_out[::-1]], axis=0))


def _la_polygons(polys: dict, L: float, W: float, la_len: float, to_probe: Callable) -> None:
    """Add the left atrium (a rounded sac ``la_len`` mm long below the mitral annulus of an
    LV ``L`` mm long, ``W`` mm half-wide) and its wall to ``polys`` (probe-frame mm)."""
    t = np.linspace(0, np.pi, 60)
    la_w = 0.9 * W
    la_c_s = L + 2.0
    la = np.stack([la_c_s + la_len * np.sin(t), -la_w * np.cos(t) + 0.15 * la_w], axis=1)
    la = np.concatenate([[[L, -W * 0.86 + 0.0]], la, [[L, W * 0.86]]], axis=0)
    polys["la_cavity"] = to_probe(la)
    la_out = np.stack([la_c_s + (la_len + 3.0) * np.sin(t), -(la_w + 3.0) * np.cos(t) + 0.15 * la_w], axis=1)
    polys["la_wall"] = to_probe(la_out)


def _rv_polygons(polys: dict, sep_epi: np.ndarray, L: float, rv: float,
                 to_probe: Callable) -> tuple[np.ndarray, np.ndarray]:
    """Add the right ventricle (left of the septum, n < 0; its apex lower than the LV
    apex), its free wall and the pericardium outside it to ``polys`` (probe-frame mm).

    Parameters
    ----------
    sep_epi : ndarray [N, 2]
        Septal epicardium, LV-frame (s, n) mm.
    L : float
        LV length, mm.
    rv : float
        RV size factor (1 = typical, 34 mm largest width).

    Returns
    -------
    tv_sep, tv_lat : ndarray [2]
        Septal and lateral tricuspid annulus points, LV-frame (s, n) mm.
    """
    s_rv_apex = 0.22 * L
    s_tv = 0.90 * L
    keep = (sep_epi[:, 0] >= s_rv_apex) & (sep_epi[:, 0] <= s_tv)
    sept_edge = sep_epi[keep]
    n_edge_end = sept_edge[-1, 1]
    u = np.linspace(0.0, 1.0, 60)  # 0 at the tricuspid annulus, 1 at the RV apex
    s_free = s_tv + (s_rv_apex - s_tv) * u
    n_sept = np.interp(s_free, sept_edge[:, 0], sept_edge[:, 1])
    width = 34.0 * rv * (1.0 - u ** 1.6) ** 0.75
    n_free = n_sept - width
    free = np.stack([s_free, n_free], axis=1)
    polys["rv_cavity"] = to_probe(np.concatenate([sept_edge, free], axis=0))
    free_out = _offset_curve(free[:, 0], -free[:, 1], -1.0, 4.0)
    free_out2 = _offset_curve(free[:, 0], -free[:, 1], -1.0, 7.0)
    polys["rv_free_wall"] = to_probe(np.concatenate([free, free_out[::-1]], axis=0))
    polys["pericardium_rv"] = to_probe(np.concatenate([free_out, free_out2[::-1]], axis=0))
    return np.array([s_tv, n_edge_end]), free[0]


def _ra_polygons(polys: dict, tv_sep: np.ndarray, tv_lat: np.ndarray, la_len: float,
                 to_probe: Callable) -> None:
    """Add the right atrium (under the tricuspid annulus ``tv_sep``-``tv_lat``, LV-frame
    mm; 0.85 ``la_len`` mm long) and its wall to ``polys`` (probe-frame mm)."""
    ra_c = 0.5 * (tv_sep + tv_lat)
    ra_w = 0.5 * abs(tv_sep[1] - tv_lat[1]) + 2.0
    ra_len = 0.85 * la_len
    t2 = np.linspace(0, np.pi, 60)
    ra = np.stack([ra_c[0] + ra_len * np.sin(t2), ra_c[1] - ra_w * np.cos(t2)], axis=1)
    polys["ra_cavity"] = to_probe(np.concatenate([[tv_lat], ra, [tv_sep]], axis=0))
    ra_out = np.stack([ra_c[0] + (ra_len + 3) * np.sin(t2), ra_c[1] - (ra_w + 3) * np.cos(t2)], axis=1)
    polys["ra_wall"] = to_probe(ra_out)


def _valve_polygons(polys: dict, mid: dict, apex: np.ndarray, e_s: np.ndarray, e_n: np.ndarray,
                    h: float, W: float, rv: float, tv_sep: np.ndarray, tv_lat: np.ndarray,
                    to_probe: Callable) -> None:
    """Add the closed mitral and tricuspid leaflets (thin lines from the annuli) and the
    four annulus points (mitral septal, mitral lateral, tricuspid septal, tricuspid lateral)
    to ``polys`` (probe-frame mm).

    Parameters
    ----------
    mid : dict
        Mid-wall points, probe-frame mm, annulus first (see :func:`_lv_walls`).
    apex, e_s, e_n : ndarray [2]
        LV frame: apex (mm) and unit vectors.
    h, W : float
        Wall thickness and largest cavity half-width, mm.
    rv : float
        RV size factor.
    tv_sep, tv_lat : ndarray [2]
        Tricuspid annulus points, LV-frame (s, n) mm.
    """
    # annulus points (mid-wall) in the LV frame
    ann_sep = mid["inferoseptal"][0]
    ann_lat = mid["anterolateral"][0]
    s_sep, n_sep = (ann_sep - apex) @ e_s, (ann_sep - apex) @ e_n
    s_lat, n_lat = (ann_lat - apex) @ e_s, (ann_lat - apex) @ e_n
    s_tv, n_edge_end = tv_sep
    polys["mitral_leaflets"] = [
        to_probe(np.array([[s_sep, n_sep + h / 2], [s_sep - 9.0, n_sep + h / 2 + 0.45 * W]])),
        to_probe(np.array([[s_lat, n_lat - h / 2], [s_lat - 9.0, n_lat - h / 2 - 0.45 * W]])),
    ]
    polys["tricuspid_leaflets"] = [
        to_probe(np.array([[s_tv, n_edge_end], [s_tv - 8.0, n_edge_end - 10.0 * rv]])),
        to_probe(np.array([tv_lat, tv_lat + np.array([-8.0, 10.0 * rv])])),
    ]
    polys["annuli"] = [to_probe(np.array([[s_sep, n_sep]]))[0], to_probe(np.array([[s_lat, n_lat]]))[0],
                       to_probe(np.array([[s_tv, n_edge_end]]))[0], to_probe(np.array([tv_lat]))[0]]


def _posterior_pericardium(L: float, W: float, la_len: float, tv_lat: np.ndarray,
                           to_probe: Callable) -> np.ndarray:
    """Posterior pericardium: an arc [40, 2] (probe-frame mm) beneath both atria (LV length
    ``L``, half-width ``W``, LA length ``la_len`` mm; ``tv_lat`` LV-frame mm)."""
    t3 = np.linspace(0.15 * np.pi, 0.85 * np.pi, 40)
    back_c = np.array([L + 0.5 * la_len, 0.5 * (tv_lat[1] + W)])
    back_w = 0.5 * (W - tv_lat[1]) + 10.0
    return to_probe(np.stack(
        [back_c[0] + (0.5 * la_len + 9.0) * np.sin(t3), back_c[1] - back_w * np.cos(t3)], axis=1))


def _papillary_polygons(pap: list, L: float, s_grid: np.ndarray, w_of_s: np.ndarray,
                        to_probe: Callable) -> list[np.ndarray]:
    """Papillary muscles (variety mode): ellipses [40, 2] (probe-frame mm) standing on the
    mid walls in the cavity, one per ``[side, s_frac, length_mm, width_mm]`` of ``pap``
    (``side`` -1 septal / +1 lateral, ``s_frac`` position along ``L``)."""
    t4 = np.linspace(0.0, 2 * np.pi, 40, endpoint=False)
    out = []
    for side, s_frac, length_mm, width_mm in pap:
        sc_ = float(s_frac) * L
        w_here = float(np.interp(sc_, s_grid, w_of_s))
        n_c = float(side) * (w_here - 0.35 * float(width_mm))
        el = np.stack([sc_ + 0.5 * float(length_mm) * np.cos(t4),
                       n_c + 0.5 * float(width_mm) * np.sin(t4)], axis=1)
        out.append(to_probe(el))
    return out


def build_geometry(p: dict, n_wall_points: int = 41) -> Geometry:
    """Build the reference geometry from drawn parameters.

    Parameters
    ----------
    p : dict
        Preset parameters (see :mod:`ttsfast.synth.presets`): ``depth_mm``,
        ``half_angle_deg``, ``apex_depth_mm``, ``apex_x_mm``, ``tilt_deg``,
        ``lv_length_mm``, ``lv_halfwidth_mm``, ``wall_mm``, ``rv_scale``, ``la_length_mm``.
    n_wall_points : int
        Mid-wall points per wall (annulus to apex).
    """
    L = float(p["lv_length_mm"])
    W = float(p["lv_halfwidth_mm"])
    h = float(p["wall_mm"])
    tilt = np.deg2rad(float(p["tilt_deg"]))
    e_s = np.array([np.sin(tilt), np.cos(tilt)])
    e_n = np.array([np.cos(tilt), -np.sin(tilt)])
    apex = np.array([float(p["apex_x_mm"]), float(p["apex_depth_mm"])])
    qf = float(p.get("lv_apex_frac", 0.62))
    s_grid = np.arange(-60.0, L + 120.0, 0.5)
    w_of_s = cavity_halfwidth(s_grid, L, W, qf)
    to_probe = _lv_frame_mapper(apex, e_s, e_n)
    rv = float(p["rv_scale"])
    la_len = float(p["la_length_mm"])

    polys: dict = {}
    endo, epi, mid = _lv_walls(L, W, h, qf, to_probe, n_wall_points)
    _lv_polygons(polys, endo, epi, h, to_probe)
    _la_polygons(polys, L, W, la_len, to_probe)
    tv_sep, tv_lat = _rv_polygons(polys, epi["inferoseptal"], L, rv, to_probe)
    _ra_polygons(polys, tv_sep, tv_lat, la_len, to_probe)
    _valve_polygons(polys, mid, apex, e_s, e_n, h, W, rv, tv_sep, tv_lat, to_probe)
    polys["posterior_pericardium"] = _posterior_pericardium(L, W, la_len, tv_lat, to_probe)
    pap = p.get("papillary")
    if pap:
        polys["papillary"] = _papillary_polygons(pap, L, s_grid, w_of_s, to_probe)
    return Geometry(
        apex=apex, e_s=e_s, e_n=e_n, length=L, halfwidth=W, wall=h, s_grid=s_grid,
        w_of_s=w_of_s, midwall=mid, depth=float(p["depth_mm"]),
        half_angle=np.deg2rad(float(p["half_angle_deg"])), polygons=polys, apex_frac=qf,
    )


@dataclass
class ClassMap:
    """Tissue class map on a fine grid in the probe frame (reference configuration).

    ``labels[i, j]`` is the class at x = x0 + j*res, y = y0 + i*res (mm)."""

    labels: np.ndarray
    x0: float
    y0: float
    res: float

    def sample(self, xy: np.ndarray) -> np.ndarray:
        """Class of each probe-frame point [N,2] mm (nearest cell; background outside)."""
        j = np.rint((xy[:, 0] - self.x0) / self.res).astype(np.int64)
        i = np.rint((xy[:, 1] - self.y0) / self.res).astype(np.int64)
        ok = (i >= 0) & (i < self.labels.shape[0]) & (j >= 0) & (j < self.labels.shape[1])
        out = np.full(xy.shape[0], CLASS_BACKGROUND, dtype=np.int8)
        out[ok] = self.labels[i[ok], j[ok]]
        return out


def class_map(geo: Geometry, res: float = 0.25) -> ClassMap:
    """Rasterise the reference geometry to a tissue class map (fine grid, mm)."""
    R = geo.depth + 20.0
    half = R * np.sin(geo.half_angle) + 20.0
    x0, y0 = -half, -10.0
    w = int(np.ceil(2 * half / res)) + 1
    hgt = int(np.ceil((R + 10.0) / res)) + 1
    lab = np.full((hgt, w), CLASS_BACKGROUND, dtype=np.uint8)
    shift = 4
    scale = float(1 << shift) / res

    def fill(poly: np.ndarray, cls: int) -> None:
        pts = np.round((poly - [x0, y0]) * scale).astype(np.int32)
        cv2.fillPoly(lab, [pts], int(cls), lineType=cv2.LINE_8, shift=shift)

    def line(poly: np.ndarray, cls: int, thick_mm: float) -> None:
        pts = np.round((poly - [x0, y0]) * scale).astype(np.int32)
        cv2.polylines(lab, [pts], False, int(cls), thickness=max(1, int(round(thick_mm / res))),
                      lineType=cv2.LINE_8, shift=shift)

    # near field (chest wall) band
    lab[: int((10.0 + 12.0) / res), :] = CLASS_NEAR_FIELD
    P = geo.polygons
    fill(P["la_wall"], CLASS_THIN_WALL)
    fill(P["ra_wall"], CLASS_THIN_WALL)
    fill(P["la_cavity"], CLASS_BLOOD)
    fill(P["ra_cavity"], CLASS_BLOOD)
    fill(P["pericardium_rv"], CLASS_PERICARDIUM)
    fill(P["rv_free_wall"], CLASS_THIN_WALL)
    fill(P["rv_cavity"], CLASS_BLOOD)
    fill(P["pericardium_lat"], CLASS_PERICARDIUM)
    fill(P["lv_myocardium"], CLASS_MYOCARDIUM)
    fill(P["lv_cavity"], CLASS_BLOOD)
    for poly in P.get("papillary", []):
        fill(poly, CLASS_PAPILLARY)
    # trabeculated endocardial border: a band of uneven width along the endocardium
    endo = P["lv_cavity"]
    rng_w = np.random.default_rng(int(abs(endo[0, 0]) * 1000) % (2**32))
    seg = 12
    for i in range(0, len(endo) - seg, seg):
        line(endo[i:i + seg + 1], CLASS_TRABECULAE, float(rng_w.uniform(1.0, 3.5)))
    # (valve leaflets are rendered separately: they swing open in diastole)
    # fibrous annuli: bright spots at the valve hinges
    for pt in P["annuli"]:
        c = np.round((pt - [x0, y0]) * scale).astype(np.int32)
        cv2.circle(lab, (int(c[0]), int(c[1])), int(round(2.5 / res * (1 << shift))),
                   CLASS_PERICARDIUM, -1, lineType=cv2.LINE_8, shift=shift)
    # posterior pericardium beneath the atria
    line(P["posterior_pericardium"], CLASS_PERICARDIUM, 3.5)
    return ClassMap(labels=lab, x0=x0, y0=y0, res=res)
