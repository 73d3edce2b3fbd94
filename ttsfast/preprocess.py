"""Find the ultrasound sector, remove overlays, crop and resize a clip to the analysis grid.

The moving fan is found from per-pixel temporal statistics (tissue speckle changes over time,
text and scales do not), coloured pixels (``Clip.overlay_mask``: ECG traces, markers) are
removed before that, thin structures are opened away, the largest moving component is taken,
and a fan (two lines through an apex plus an arc) is fitted to its edges. When the fit agrees
with the component's convex hull it becomes the mask, otherwise the hull is used (e.g. a clip
already cropped to the heart, without a fan). Overlays inside the fan (coloured pixels, static
bright text or calipers) are excluded from the mask and inpainted in the frames.

The sector's bounding box is letterboxed onto the grid (default 256 x 352, rows x cols) with
one scale for x and y so that pixels stay square; :meth:`Prepared.to_original` and
:meth:`Prepared.to_grid` map points between the grid and the original frames.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._nativelib import native
from .clip import Clip
from .errors import InputError, NotEchoError, QualityError
from .warning_codes import ReportWarning, warn

__all__ = ["preprocess", "Prepared", "SectorGeometry", "GridMapping", "grid_mapping", "find_sector"]

#: Longest side (px) of the working image on which the sector is searched.
_WORK_SIDE = 400


@dataclass(frozen=True)
class SectorGeometry:
    """A fitted ultrasound fan in original pixels.

    Attributes
    ----------
    apex : tuple of float
        (x, y) of the fan's apex, original px (may lie above the image).
    half_angle_deg : float
        Half opening angle of the fan, degrees.
    axis_angle_deg : float
        Direction of the fan's axis from the apex, degrees from image +y (down) toward +x.
    depth_px : float
        Radius of the fan's arc from the apex, original px.
    """

    apex: tuple[float, float]
    half_angle_deg: float
    axis_angle_deg: float
    depth_px: float

    def mask(self, shape: tuple[int, int]) -> np.ndarray:
        """bool ``[H, W]``: pixels of an image of ``shape`` whose centres lie inside the fan
        (polygon of the apex and the arc sampled every <= 0.5 degree)."""
        import cv2

        h, w = shape
        n = max(8, int(math.ceil(4 * self.half_angle_deg)))
        ang = np.radians(self.axis_angle_deg + np.linspace(-self.half_angle_deg, self.half_angle_deg, n))
        ax, ay = self.apex
        pts = np.concatenate([[[ax, ay]], np.stack([ax + self.depth_px * np.sin(ang),
                                                     ay + self.depth_px * np.cos(ang)], axis=1)])
        # clamp far outside points (fillPoly works in int32 with 4 fractional bits)
        pts = np.clip(pts, -4 * max(h, w), 5 * max(h, w))
        out = np.zeros((h, w), np.uint8)
        cv2.fillPoly(out, [np.rint(pts * 16).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=4)
        return out.astype(bool)


@dataclass
class Prepared:
    """A clip on the analysis grid.

    Attributes
    ----------
    frames : np.ndarray
        uint8 ``[T, h, w]`` grid frames; 0 outside the sector, overlays inpainted.
    mask : np.ndarray
        bool ``[h, w]``: grid pixels inside the sector and free of overlays.
    mask_original : np.ndarray
        bool ``[H, W]``: the same on the original frames.
    scale : float
        Original px per grid px (same in x and y).
    offset : tuple of float
        (x, y) original position of grid pixel (0, 0)'s centre:
        ``original = offset + scale * grid``.
    fps, fps_source :
        As in the source :class:`Clip`.
    mm_per_px : float or None
        Grid pixel size in mm (``clip.mm_per_px * scale``), None when uncalibrated.
    sector : SectorGeometry or None
        Fitted fan in original pixels, None when no fan was fitted (e.g. a pre-cropped clip).
    overlay_original : np.ndarray
        bool ``[H, W]``: overlay pixels removed inside the sector.
    metadata, warnings :
        The source clip's metadata and warnings plus this stage's.
    mapping : GridMapping
        How the original frames were put on the grid.
    """

    frames: np.ndarray
    mask: np.ndarray
    mask_original: np.ndarray
    scale: float
    offset: tuple[float, float]
    fps: float | None
    fps_source: str
    mm_per_px: float | None
    sector: SectorGeometry | None
    overlay_original: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)
    warnings: list[ReportWarning] = field(default_factory=list)
    #: how the original frames were put on the grid (apply it to more frames of the same view)
    mapping: GridMapping | None = None

    @property
    def grid(self) -> tuple[int, int]:
        """Grid size (h, w)."""
        return int(self.frames.shape[1]), int(self.frames.shape[2])

    def to_original(self, xy: Any) -> np.ndarray:
        """Map grid points ``[..., 2]`` (x, y) to original-frame pixels (float64)."""
        p = _as_points(xy)
        return p * self.scale + np.asarray(self.offset, float)

    def to_grid(self, xy: Any) -> np.ndarray:
        """Map original-frame points ``[..., 2]`` (x, y) to grid pixels (float64)."""
        p = _as_points(xy)
        return (p - np.asarray(self.offset, float)) / self.scale


def _as_points(xy: Any) -> np.ndarray:
    p = np.asarray(xy, dtype=float)
    if p.ndim < 1 or p.shape[-1] != 2:
        raise InputError(f"points must have shape [..., 2] (x, y), got {p.shape}")
    return p


# --------------------------------------------------------------------------------------------
def preprocess(
    clip: Clip | np.ndarray,
    *,
    grid: tuple[int, int] = (256, 352),
    remove_overlays: bool = True,
    mask: np.ndarray | None = None,
    margin: float = 0.01,
    antialias: bool = True,
    threads: int = 0,
) -> Prepared:
    """Find the sector, remove overlays, crop and letterbox the clip onto the analysis grid.

    Parameters
    ----------
    clip : Clip or np.ndarray
        The clip (an array is read with :func:`ttsfast.read_clip` rules).
    grid : (int, int)
        Output (h, w) rows x cols, each within 8..4096.
    remove_overlays : bool
        Exclude and inpaint coloured or static bright pixels inside the sector.
    mask : np.ndarray, optional
        bool ``[H, W]`` sector mask to use instead of searching for one.
    margin : float
        Extra border around the sector's bounding box, as a fraction of its larger side.
    antialias : bool
        When the grid is coarser than the frames, average each grid pixel's footprint
        (area resampling, like ``cv2.INTER_AREA``) instead of sampling bilinearly.
    threads : int
        Threads for the native kernels (0 = all).

    Returns
    -------
    Prepared
    """
    if isinstance(clip, np.ndarray):
        from .io import read_clip

        clip = read_clip(clip)
    if not isinstance(clip, Clip):
        raise InputError(f"preprocess needs a ttsfast.Clip (see ttsfast.read_clip), got {type(clip).__name__}")
    gh, gw = check_grid(grid)
    try:
        margin = float(margin)
    except (TypeError, ValueError) as exc:
        raise InputError(f"margin must be a number within [0, 1), got {margin!r}") from exc
    if not (0 <= margin < 1):
        raise InputError(f"margin must be within [0, 1), got {margin!r}")
    frames = clip.frames
    t, h, w = frames.shape
    if t < 2:
        raise InputError(f"a clip needs >= 2 frames, got {t}")
    warnings = list(clip.warnings)
    std, mean = native.temporal_stats(frames, threads)
    coloured = _usable_colour_mask(std, clip.overlay_mask, warnings)

    sector: SectorGeometry | None = None
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape != (h, w):
            raise InputError(f"mask must have shape {(h, w)}, got {mask.shape}")
        sector_mask = mask.astype(bool)
    else:
        sector_mask, sector, note = find_sector(std, mean, coloured)
        if note:
            warnings.append(note)
    if not sector_mask.any():
        raise InputError("no moving image region was found in the clip (all frames identical?)")

    overlay = np.zeros((h, w), bool)
    if remove_overlays:
        overlay = _overlays_inside(std, mean, coloured, sector_mask)
    mask_original = sector_mask & ~overlay

    mapping = grid_mapping(sector_mask, mask_original, (gh, gw), margin=margin, antialias=antialias, threads=threads)
    out = mapping.apply(frames, threads)
    scale = mapping.scale
    mm = None if clip.mm_per_px is None else clip.mm_per_px * scale
    meta = dict(clip.metadata)
    meta["grid"] = (gh, gw)
    meta["crop_box"] = mapping.box
    return Prepared(
        frames=out, mask=mapping.mask, mask_original=mask_original, scale=float(scale),
        offset=mapping.offset, fps=clip.fps, fps_source=clip.fps_source,
        mm_per_px=mm, sector=sector, overlay_original=overlay, metadata=meta, warnings=warnings, mapping=mapping,
    )


def check_grid(grid: Any) -> tuple[int, int]:
    """``(rows, cols)`` of an analysis grid, each within 8..4096; InputError otherwise."""
    try:
        gh, gw = (int(v) for v in grid)
    except (TypeError, ValueError) as exc:
        raise InputError(f"grid must be (rows, cols), got {grid!r}") from exc
    if not (8 <= gh <= 4096 and 8 <= gw <= 4096):
        raise InputError(f"grid must be within 8..4096 in each side, got {grid!r}")
    return gh, gw


@dataclass(frozen=True)
class GridMapping:
    """How original frames map onto the analysis grid: settled once per clip (or per stream,
    :mod:`ttsfast.streaming`) by :func:`grid_mapping`, applied to any frames by :meth:`apply`.

    Attributes
    ----------
    box : (float, float, float, float)
        x0, y0, width, height of the grid's footprint in original px.
    grid : (int, int)
        Grid (rows, cols).
    area : bool
        Area resampling (the grid is coarser than the frames) rather than bilinear.
    mask : np.ndarray
        bool ``[h, w]`` grid pixels inside the sector and free of overlays.
    sector : np.ndarray
        bool ``[h, w]`` grid pixels inside the sector.
    scale : float
        Original px per grid px.
    """

    box: tuple[float, float, float, float]
    grid: tuple[int, int]
    area: bool
    mask: np.ndarray
    sector: np.ndarray
    scale: float

    @property
    def offset(self) -> tuple[float, float]:
        """(x, y) original position of grid pixel (0, 0)'s centre."""
        s = self.scale
        return float(self.box[0] + 0.5 * s - 0.5), float(self.box[1] + 0.5 * s - 0.5)

    def apply(self, frames: np.ndarray, threads: int = 0) -> np.ndarray:
        """uint8 ``[T, H, W]`` original frames -> uint8 ``[T, h, w]`` grid frames: cropped and
        resampled, overlays inside the sector inpainted, 0 outside the sector."""
        resize = native.crop_resize_area if self.area else native.crop_resize
        out = resize(frames, *self.box, *self.grid, threads)
        hole = self.sector & ~self.mask
        if hole.any():
            _inpaint_frames(out, hole, self.mask)
        out *= self.sector[None].astype(np.uint8)
        return out


def grid_mapping(sector_mask: np.ndarray, mask_original: np.ndarray, grid: tuple[int, int], *,
                 margin: float = 0.01, antialias: bool = True, threads: int = 0) -> GridMapping:
    """The sector's bounding box (plus ``margin`` of its larger side) letterboxed onto ``grid``
    with square pixels, and the sector and overlay-free masks on the grid.

    Parameters
    ----------
    sector_mask, mask_original : np.ndarray
        bool ``[H, W]``: the sector, and the sector without overlays, on the original frames.
    grid : (int, int)
        Grid (rows, cols).
    """
    gh, gw = grid
    (ymin, ymax), (xmin, xmax) = _extent(sector_mask)
    bx0, bx1 = float(xmin) - 0.5, float(xmax) + 0.5
    by0, by1 = float(ymin) - 0.5, float(ymax) + 0.5
    pad = margin * max(bx1 - bx0, by1 - by0)
    bx0, bx1, by0, by1 = bx0 - pad, bx1 + pad, by0 - pad, by1 + pad
    scale = max((bx1 - bx0) / gw, (by1 - by0) / gh)
    cx, cy = (bx0 + bx1) / 2, (by0 + by1) / 2
    x0, y0 = cx - gw * scale / 2, cy - gh * scale / 2
    # downsampling averages each grid pixel's footprint (no aliasing of the speckle);
    # upsampling interpolates bilinearly; both share the same pixel-centre geometry
    area = bool(antialias and scale > 1.0)
    resize = native.crop_resize_area if area else native.crop_resize
    box = (x0, y0, gw * scale, gh * scale)
    m8 = (mask_original.astype(np.uint8) * 255)[None]
    mask_grid = resize(m8, *box, gh, gw, threads)[0] >= 128
    s8 = (sector_mask.astype(np.uint8) * 255)[None]
    sector_grid = resize(s8, *box, gh, gw, threads)[0] >= 128
    return GridMapping(box, (gh, gw), area, mask_grid, sector_grid, float(scale))


def frame_correlation(frames: np.ndarray, mask: np.ndarray, step: int = 2) -> np.ndarray:
    """Pearson correlation of each frame with the next, over the masked pixels.

    Consecutive frames of an ultrasound clip share their speckle and structures (r > 0.9 on
    the real and synthetic clips of the test data, 0.6 with the frames of a real clip
    shuffled); independent noise frames give r ~ 0.

    Parameters
    ----------
    frames : np.ndarray
        ``[T, H, W]`` frames (any numeric dtype), T >= 2.
    mask : np.ndarray
        bool ``[H, W]`` pixels to use.
    step : int
        Use every ``step``-th row and column of the mask (speed; the speckle is still sampled
        many thousand times).

    Returns
    -------
    np.ndarray
        float64 ``[T-1]``, r of frame t with frame t+1 (0 where a frame is flat).
    """
    mask = np.asarray(mask, bool)
    m = mask[::step, ::step]
    if m.sum() >= 16:
        f = frames[:, ::step, ::step][:, m].astype(np.float32)
    else:
        f = frames[:, mask].astype(np.float32)
    f -= f.mean(axis=1, keepdims=True)
    num = np.einsum("ij,ij->i", f[1:], f[:-1], dtype=np.float64)
    ss = np.einsum("ij,ij->i", f, f, dtype=np.float64)
    den = np.sqrt(ss[1:] * ss[:-1])
    return np.where(den > 0, num / np.maximum(den, 1e-12), 0.0)


#: Median correlation of consecutive frames below which a clip is not analysed: > 0.9 on every
#: real and synthetic test clip, 0.6 with a real clip's frames shuffled, ~0 for noise.
MIN_FRAME_CORRELATION = 0.5


#: An echo sector is mostly dark (blood, shadow, black background): the median grey level in
#: the sector is 9-49 on the real test clips; figures and documents on white read 255.
MAX_SECTOR_MEDIAN = 128
#: Most consecutive frames a live clip may leave unchanged (mean absolute difference in the
#: sector below 0.5 grey levels) before it reads as a slide show or a frozen image (docs/flow_notes.md).
MAX_STILL_SHARE = 0.9


def check_echo_like(frames: np.ndarray, mask: np.ndarray) -> None:
    """Refuse input that is evidently not an echo clip (:class:`NotEchoError`).

    Parameters
    ----------
    frames : np.ndarray
        uint8 ``[T, H, W]`` frames on the analysis grid.
    mask : np.ndarray
        bool ``[H, W]`` the sector (or the moving region) found by :func:`preprocess`.

    Raises
    ------
    NotEchoError
        The sector's median grey level is above :data:`MAX_SECTOR_MEDIAN` (a bright page:
        figures, slides, documents), or more than :data:`MAX_STILL_SHARE` of the consecutive
        frames are identical (a slide show, a frozen or single image).
    """
    mask = np.asarray(mask, bool)
    if frames.shape[0] < 2 or not mask.any():
        return
    m = mask[::2, ::2]  # every other row and column, as frame_correlation samples the sector
    sub = frames[:, ::2, ::2][:, m] if m.sum() >= 16 else frames[:, mask]
    med = float(np.median(sub[:: max(1, sub.shape[0] // 16)]))
    if med > MAX_SECTOR_MEDIAN:
        raise NotEchoError(
            f"this is not an echo clip: its image is mostly bright (median grey level {med:.0f} of 255), while "
            "an ultrasound sector is mostly dark; figures, slides and documents are not analysed")
    diff = np.abs(np.diff(sub.astype(np.int16), axis=0)).mean(axis=1)
    still = float(np.mean(diff < 0.5))
    if still > MAX_STILL_SHARE:
        raise NotEchoError(
            f"this is not a live echo clip: {100 * still:.0f} % of its consecutive frames are identical "
            "(a slide show, a frozen or repeated image); record the moving heart")


def check_continuity(frames: np.ndarray, mask: np.ndarray, min_r: float = MIN_FRAME_CORRELATION) -> float:
    """Median :func:`frame_correlation` of a clip; :class:`NotEchoError` (a QualityError) below
    ``min_r``, or when :func:`check_echo_like` refuses the clip.

    Noise or unrelated images would still go through every later stage, and the model would
    give a confident answer; this stops them first.
    """
    check_echo_like(frames, mask)
    r = float(np.median(frame_correlation(frames, mask)))
    if r < min_r:
        raise NotEchoError(
            f"consecutive frames hardly correlate (median r = {r:.2f}, an ultrasound clip gives > 0.9): "
            "this is not a continuous echo clip (noise, unrelated images, or frames out of order)")
    return r


def _usable_colour_mask(std: np.ndarray, coloured: np.ndarray | None,
                        warnings: list[ReportWarning]) -> np.ndarray | None:
    """The clip's "coloured anywhere" mask, or None when colour cannot tell overlays apart:
    a tinted grey map (sepia, blue) or colour Doppler colours much of the moving image, while
    overlays touch only a small part of it."""
    if coloured is None or not coloured.any():
        return coloured
    hi = float(np.percentile(std[::4, ::4], 95))
    moving = std > max(1.0, 0.12 * hi)
    n = int(moving.sum())
    if n and (coloured & moving).sum() > 0.2 * n:
        warnings.append(warn("colour_not_used", "colour covers more than 20% of the moving image (tinted grey "
                             "map or colour Doppler): colour is not used to find overlays"))
        return None
    return coloured


def _extent(mask: np.ndarray) -> tuple[tuple[int, int], tuple[int, int]]:
    """((ymin, ymax), (xmin, xmax)) of the True pixels of a non-empty bool [H, W] mask."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return (int(rows[0]), int(rows[-1])), (int(cols[0]), int(cols[-1]))


def _inpaint_frames(frames: np.ndarray, hole: np.ndarray, valid: np.ndarray) -> None:
    """Fill ``hole`` (bool [h,w]) in every frame of ``frames`` (uint8 [T,h,w]) in place with the
    local mean of ``valid`` neighbours (normalised box filter, window grown until every hole
    pixel has a neighbour), one small window per hole component."""
    import cv2

    def box_sum(a: np.ndarray, k: int) -> np.ndarray:
        return cv2.boxFilter(a, -1, (k, k), normalize=False, borderType=cv2.BORDER_CONSTANT)

    n, lab, stats, _ = cv2.connectedComponentsWithStats(hole.astype(np.uint8), connectivity=8)
    h, w = hole.shape
    for i in range(1, n):
        x, y, bw, bh, _ = stats[i]
        r = 3
        while True:
            xa, xb = max(0, x - r), min(w, x + bw + r)
            ya, yb = max(0, y - r), min(h, y + bh + r)
            hol = lab[ya:yb, xa:xb] == i
            val = valid[ya:yb, xa:xb].astype(np.float32)
            k = 2 * r + 1
            den = box_sum(val, k)
            if (den[hol] > 0.5).all() or r > 64:
                break
            r *= 2
        if not (den[hol] > 0.5).any():
            continue
        sub = frames[:, ya:yb, xa:xb]
        d = np.maximum(den[hol], 1e-6)
        for t in range(frames.shape[0]):
            num = box_sum(sub[t].astype(np.float32) * val, k)
            sub[t][hol] = np.clip(np.rint(num[hol] / d), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------
def find_sector(
    std: np.ndarray, mean: np.ndarray, coloured: np.ndarray | None = None
) -> tuple[np.ndarray, SectorGeometry | None, ReportWarning | None]:
    """Find the moving ultrasound sector.

    Parameters
    ----------
    std, mean : np.ndarray
        float32 ``[H, W]`` per-pixel temporal std and mean of the grey clip (grey levels).
    coloured : np.ndarray, optional
        bool ``[H, W]`` pixels coloured in any frame (overlays).

    Returns
    -------
    mask : np.ndarray
        bool ``[H, W]`` sector (overlays inside it not yet removed).
    sector : SectorGeometry or None
        The fitted fan, None when the moving region is not fan-shaped.
    note : ReportWarning or None
        A warning for the caller, if any (``sector_still``, ``sector_not_found``).
    """
    import cv2

    h, w = std.shape
    f = min(1.0, _WORK_SIDE / max(h, w))
    wh, ww = max(8, round(h * f)), max(8, round(w * f))
    sd = cv2.resize(std, (ww, wh), interpolation=cv2.INTER_AREA) if f < 1 else std.copy()
    if coloured is not None and coloured.any():
        col = cv2.resize(coloured.astype(np.uint8), (ww, wh), interpolation=cv2.INTER_AREA) > 0
        col = cv2.dilate(col.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        sd[col] = 0
    sigma = 1.5
    sd = cv2.GaussianBlur(sd, (0, 0), sigma)
    hi = float(np.percentile(sd, 95))
    if hi <= 0.5:
        return np.ones((h, w), bool), None, warn("sector_still", "the clip barely moves; the whole frame is "
                                                 "used as the sector")
    thr = max(1.0, 0.12 * hi)
    moving = (sd > thr).astype(np.uint8)
    r = max(2, round(0.012 * max(wh, ww)))
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    moving = cv2.morphologyEx(moving, cv2.MORPH_OPEN, k)
    n, lab, stats, _ = cv2.connectedComponentsWithStats(moving, connectivity=8)
    if n <= 1:
        return np.ones((h, w), bool), None, warn("sector_not_found", "no moving region found; the whole "
                                                 "frame is used as the sector")
    best = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    comp = (lab == best).astype(np.uint8)
    comp = cv2.morphologyEx(comp, cv2.MORPH_CLOSE, k)
    pts = cv2.findNonZero(comp)
    hull = cv2.convexHull(pts)
    hull_mask = np.zeros((wh, ww), np.uint8)
    cv2.fillConvexPoly(hull_mask, hull, 1)

    # blurring then thresholding at thr moves a step edge of height `level` outward by
    # sigma * z(1 - thr/level); the fan's edges are pulled back in by that much
    level = float(np.median(sd[comp.astype(bool)]))
    q = min(0.5, max(1e-3, thr / max(level, 1e-6)))
    inflate = sigma * _normal_quantile(1.0 - q)
    sector = _fit_fan(comp.astype(bool), hull_mask.astype(bool), inflate)
    use_fan_only = False
    if sector is not None:
        fan_w = sector.mask((wh, ww))
        hb = hull_mask.astype(bool)
        inter = np.logical_and(fan_w, hb).sum()
        union = np.logical_or(fan_w, hb).sum()
        if inter < 0.9 * hb.sum():
            sector = None  # the moving region is not a fan (e.g. a pre-cropped clip)
        elif inter / union >= 0.7:
            use_fan_only = True  # the fan's clean outline is the mask (dark far field included)
    hull_full = (cv2.resize(hull_mask, (w, h), interpolation=cv2.INTER_NEAREST) if f < 1
                 else hull_mask).astype(bool)
    if sector is not None:
        s = 1.0 / f
        # work pixel centres -> original pixel centres: x_o = (x_w + 0.5) * s - 0.5
        ax, ay = sector.apex
        sector = SectorGeometry(
            apex=((ax + 0.5) * s - 0.5, (ay + 0.5) * s - 0.5),
            half_angle_deg=sector.half_angle_deg,
            axis_angle_deg=sector.axis_angle_deg,
            depth_px=sector.depth_px * s,
        )
        fan = sector.mask((h, w))
        # the far lateral field is often dark and still: keep the moving part of the fan
        full = fan if use_fan_only else fan & hull_full
    else:
        full = hull_full
    if not full.any():
        full = np.ones((h, w), bool)
    return full, sector, None


def _normal_quantile(p: float) -> float:
    """Inverse of the standard normal CDF (p in (0, 1))."""
    from statistics import NormalDist

    return float(NormalDist().inv_cdf(p))


def _fit_fan(comp: np.ndarray, hull: np.ndarray, inflate: float = 0.0) -> SectorGeometry | None:
    """Fit two lines through an apex (fan edges) and an arc to a component (bool [h,w]);
    ``inflate`` (px) is how far the component's edges lie outside the true ones."""
    rows = np.nonzero(hull.any(axis=1))[0]
    if rows.size < 20:
        return None
    top, bot = int(rows[0]), int(rows[-1])
    height = bot - top + 1
    ys = np.arange(top + int(0.04 * height), top + int(0.40 * height) + 1)
    ys = ys[hull[ys].any(axis=1)]
    if ys.size < 8:
        return None
    left = np.array([np.argmax(hull[y]) for y in ys], float)
    right = np.array([hull.shape[1] - 1 - np.argmax(hull[y, ::-1]) for y in ys], float)
    # edges touching the image border are not fan edges
    okl = left > 1
    okr = right < hull.shape[1] - 2
    if okl.sum() < 6 or okr.sum() < 6:
        return None
    bl = np.polyfit(ys[okl], left[okl], 1)
    br = np.polyfit(ys[okr], right[okr], 1)
    if not (bl[0] < -0.05 and br[0] > 0.05):
        return None
    # residuals: edges must be straight
    resl = np.abs(np.polyval(bl, ys[okl]) - left[okl])
    resr = np.abs(np.polyval(br, ys[okr]) - right[okr])
    if np.median(resl) > 0.03 * height or np.median(resr) > 0.03 * height:
        return None
    # pull both edges in along their normals by `inflate`
    bl[1] += inflate * math.hypot(1.0, bl[0])
    br[1] -= inflate * math.hypot(1.0, br[0])
    ay = (br[1] - bl[1]) / (bl[0] - br[0])
    ax = float(np.polyval(bl, ay))
    if not (top - 0.6 * height <= ay <= top + 0.1 * height):
        return None
    ang_l = math.degrees(math.atan(bl[0]))  # angle from +y toward +x (negative on the left)
    ang_r = math.degrees(math.atan(br[0]))
    half = (ang_r - ang_l) / 2
    axis = (ang_r + ang_l) / 2
    if not (10 <= half <= 75):
        return None
    yy, xx = np.nonzero(comp)
    dist = np.hypot(xx - ax, yy - ay)
    depth = float(np.percentile(dist, 99.5)) + 1.0 - inflate
    return SectorGeometry(apex=(ax, float(ay)), half_angle_deg=float(half),
                          axis_angle_deg=float(axis), depth_px=depth)


def _overlays_inside(std: np.ndarray, mean: np.ndarray, coloured: np.ndarray | None,
                     sector: np.ndarray) -> np.ndarray:
    """Overlay pixels inside ``sector``: coloured anywhere, or static and bright (text,
    calipers, markers), found around the sector too and dilated by 2 px (so that the soft
    edges of a mark just outside the sector go as well); bool [H, W]."""
    import cv2

    h, w = sector.shape
    (ymin, ymax), (xmin, xmax) = _extent(sector)
    pad = 8
    y0, y1 = max(0, ymin - pad), min(h, ymax + pad + 1)
    x0, x1 = max(0, xmin - pad), min(w, xmax + pad + 1)
    sd, mn = std[y0:y1, x0:x1], mean[y0:y1, x0:x1]
    # static thin bright structures (text, caliper marks, scale dots): bright against their
    # neighbourhood (white top-hat of the mean image) and unchanging; static near-field clutter
    # is broad and so does not qualify
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (11, 11))
    tophat = cv2.morphologyEx(mn, cv2.MORPH_TOPHAT, k)
    # static saturated graphics (markers, icons larger than the top-hat window) qualify too
    ov = (sd < 3.0) & (((mn > 180) & (tophat > 60)) | (mn > 235))
    if coloured is not None:
        ov |= coloured[y0:y1, x0:x1]
    out = np.zeros((h, w), bool)
    if ov.any():
        ov8 = cv2.dilate(ov.astype(np.uint8), np.ones((5, 5), np.uint8))
        out[y0:y1, x0:x1] = ov8 > 0
    return out & sector
