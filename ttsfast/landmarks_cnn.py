"""A learned landmark detector: a small heatmap CNN on the end-diastolic frame and a motion map
of the beat, run with ONNX Runtime (no PyTorch at inference).

Same signature and return type as :func:`ttsfast.landmarks.detect_landmarks`, so the two can be
swapped. The network (``ttsfast/data/landmarks.onnx``, card ``landmarks.card.json``) was trained
on randomised synthetic clips only (``ttsfast train-landmarks``, see
:mod:`ttsfast.model.landmark_net`).

Input (:func:`landmark_inputs`): float32 ``[4, 128, 176]`` = the ED frame (normalised inside the
sector), the sector mask, and the summed dense flow from ED to ES (dy and |(dx, dy)|, grid px /
10), all area-downsampled by 2 from the 256x352 analysis grid. Output: 3 heat-map logits
``[3, 64, 88]`` (the image-left annulus point, the image-right one, the apex) and a display logit
(> 0: mirrored, so the septal annulus is the image-right point; the network learns it from the
RV's side). The spatial softmax of each map is decoded by argmax plus a local centroid, in grid
px; when both annulus maps peak on the same point, the two best-separated peaks of their sum are
taken (confidence halved). Confidence: the weakest landmark's probability mass near its peak
(relative to :data:`TARGET_MASS`) times the display logit's certainty.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError, ModelError, QualityError
from .landmarks import Landmarks, geometry_warnings, low_confidence_warning, validate_landmarks
from .warning_codes import warn

__all__ = ["DEFAULT_LANDMARK_MODEL", "GRID", "NET_IN", "NET_OUT", "landmark_inputs", "decode_heatmaps",
           "decode_outputs",
           "detect_landmarks_cnn"]

#: Analysis grid (H, W) the detector expects, its input size and its heatmap size.
GRID = (256, 352)
NET_IN = (128, 176)
NET_OUT = (64, 88)
#: Grid px per heatmap px.
OUT_STRIDE = GRID[0] / NET_OUT[0]
#: Motion channels are summed flow in grid px divided by this.
FLOW_SCALE = 10.0

DEFAULT_LANDMARK_MODEL = Path(__file__).resolve().parent / "data" / "landmarks.onnx"

_CACHE: dict[tuple, Any] = {}
_LOCK = threading.Lock()


def _down2(a: np.ndarray) -> np.ndarray:
    """Area-downsample the last two axes by 2 (float32)."""
    a = np.asarray(a, dtype=np.float32)
    h, w = a.shape[-2] // 2 * 2, a.shape[-1] // 2 * 2
    a = a[..., :h, :w]
    return 0.25 * (a[..., 0::2, 0::2] + a[..., 1::2, 0::2] + a[..., 0::2, 1::2] + a[..., 1::2, 1::2])


def normalise_image(img: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The ED frame (any scale) zero-mean, unit-SD inside the mask, 0 outside (float32)."""
    img = np.asarray(img, dtype=np.float32)
    m = mask > 0.5
    if m.sum() < 16:
        return np.zeros_like(img)
    v = img[m]
    mu, sd = float(v.mean()), float(v.std())
    out = (img - mu) / max(sd, 1e-3)
    out[~m] = 0.0
    return out


def motion_sum(flow: np.ndarray, ed: int, es: int) -> np.ndarray:
    """Summed dense flow ``flow[ed:es]`` (Eulerian, per pixel), float32 ``[H, W, 2]``."""
    if es <= ed:
        return np.zeros(flow.shape[1:], np.float32)
    return np.asarray(flow[ed:es], dtype=np.float32).sum(axis=0)


def raw_inputs(frame_ed: np.ndarray, mask: np.ndarray, msum: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Downsampled pieces: ED image (float32 0..255), mask (float32 0..1), motion [2, h, w] (dy, |v|)."""
    img = _down2(frame_ed)
    m = _down2(mask.astype(np.float32))
    mot = np.stack([msum[..., 1], np.hypot(msum[..., 0], msum[..., 1])]) / FLOW_SCALE
    mot = _down2(mot) * (m > 0.5)
    return img, m, mot.astype(np.float32)


def assemble(img: np.ndarray, m: np.ndarray, mot: np.ndarray) -> np.ndarray:
    """Network input ``[4, h, w]`` from the downsampled pieces."""
    return np.concatenate([normalise_image(img, m)[None], (m > 0.5).astype(np.float32)[None], mot],
                          axis=0).astype(np.float32)


def landmark_inputs(frames: np.ndarray, flow: np.ndarray, beat: tuple[int, int, int],
                    mask: np.ndarray | None = None) -> np.ndarray:
    """float32 ``[4, 128, 176]`` network input of one beat (see the module docstring)."""
    frames, flow, (ed, es, ned), mask = _check(frames, flow, beat, mask)
    img, m, mot = raw_inputs(frames[ed], mask, motion_sum(flow, ed, es))
    return assemble(img, m, mot)


def softmax_maps(logits: np.ndarray) -> np.ndarray:
    """Spatial softmax of heat-map logits ``[K, h, w]`` (each map sums to 1)."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.reshape(z.shape[0], -1).max(axis=1)[:, None, None]
    e = np.exp(z)
    return e / e.reshape(e.shape[0], -1).sum(axis=1)[:, None, None]


def decode_heatmaps(logits: np.ndarray, radius: int = 2, mass_radius: int = 3
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Heat-map logits ``[K, h, w]`` -> points ``[K, 2]`` (x, y) in grid px, the probability
    mass near each peak ``[K]`` (within ``mass_radius`` heat-map px, 0..1) and the spread ``[K]``
    (RMS distance of the whole distribution from the point, grid px).

    The point is the argmax of the spatial softmax, refined by the centroid of the probability
    in a ``(2 radius + 1)^2`` window around it.
    """
    pm = softmax_maps(logits)
    k, h, w = pm.shape
    pts = np.zeros((k, 2))
    mass = np.zeros(k)
    spread = np.zeros(k)
    yy, xx = np.mgrid[0:h, 0:w]
    for i in range(k):
        m = pm[i]
        iy, ix = np.unravel_index(int(np.argmax(m)), m.shape)
        y0, y1, x0, x1 = max(0, iy - radius), min(h, iy + radius + 1), max(0, ix - radius), min(w, ix + radius + 1)
        win = m[y0:y1, x0:x1]
        s = win.sum()
        cy = float((win * yy[y0:y1, x0:x1]).sum() / s)
        cx = float((win * xx[y0:y1, x0:x1]).sum() / s)
        r = mass_radius
        mass[i] = float(m[max(0, iy - r):iy + r + 1, max(0, ix - r):ix + r + 1].sum())
        spread[i] = float(np.sqrt((m * ((yy - cy) ** 2 + (xx - cx) ** 2)).sum())) * OUT_STRIDE
        # heat-map px -> grid px (pixel centres: heat-map px j covers grid px [s j, s j + s))
        pts[i] = ((cx + 0.5) * OUT_STRIDE - 0.5, (cy + 0.5) * OUT_STRIDE - 0.5)
    return pts, mass, spread


#: The weakest landmark's probability mass within 3 heat-map px of its peak that counts as full
#: confidence: about the 60th percentile on 300 training clips (quartiles 0.52 / 0.57 / 0.62;
#: a Gaussian training target itself holds 0.95).
TARGET_MASS = 0.6
#: Heat-map px (x4 grid px) below which the two annulus maps are taken to have found the same
#: point (an annulus is >= 0.15 LV lengths wide: >= ~15 grid px on the smallest hearts).
MIN_ANNULUS_SEP = 4.0


def decode_outputs(hm: np.ndarray, side: np.ndarray | None = None,
                   mirrored: bool | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """Network outputs of one clip -> points ``[3, 2]`` (septal, lateral, apex; grid px) and the
    decoding's details (``mirrored``, ``p_mirrored``, ``mass``, ``spread``, ``confidence``).

    ``hm`` holds the maps of the image-left and image-right annulus points and the apex; the
    display logit ``side`` (> 0: mirrored) says which annulus point is the septal one. Without
    ``side`` the maps are taken as (septal, lateral, apex). ``mirrored`` overrides the display.
    """
    pts, mass, spread = decode_heatmaps(hm)
    conf = float(np.clip(np.min(mass) / TARGET_MASS, 0.0, 1.0))
    merged = False
    if side is not None and np.hypot(*(pts[0] - pts[1])) < MIN_ANNULUS_SEP * OUT_STRIDE:
        # both annulus maps peaked on the same point: take the two best-separated peaks of
        # their sum instead (the one found and the strongest one beyond MIN_ANNULUS_SEP)
        pm = softmax_maps(hm)
        both = pm[0] + pm[1]
        p1 = _peak_refined(both)
        yy, xx = np.mgrid[0:both.shape[0], 0:both.shape[1]]
        far = np.hypot(xx - p1[0], yy - p1[1]) >= MIN_ANNULUS_SEP
        p2 = _peak_refined(np.where(far, both, 0.0))
        q = np.array([p1, p2])
        q = q[np.argsort(q[:, 0])]
        pts[0:2] = (q + 0.5) * OUT_STRIDE - 0.5
        conf *= 0.5
        merged = True
    if side is None:
        p_mir = float(pts[0, 0] > pts[1, 0])
        mir = bool(p_mir > 0.5)
    else:
        p_mir = float(1.0 / (1.0 + np.exp(-float(np.ravel(side)[0]))))
        mir = bool(p_mir > 0.5)
        if pts[0, 0] > pts[1, 0]:  # the "left" map peaked right of the "right" one: order by x
            pts[[0, 1]] = pts[[1, 0]]
        if mirrored is None:
            # a wrong display swaps the annulus points (a miss of ~40 % of the LV length)
            conf *= float(np.clip(abs(2.0 * p_mir - 1.0) / 0.8, 0.0, 1.0))
        if mirrored is not None:
            mir = bool(mirrored)
        if mir:
            pts[[0, 1]] = pts[[1, 0]]
    return pts, {"mirrored": mir, "p_mirrored": p_mir, "mass": mass, "spread": spread, "confidence": conf,
                 "merged_annulus_maps": merged}


def _peak_refined(m: np.ndarray, radius: int = 2) -> np.ndarray:
    """(x, y) heat-map px of the argmax of ``m``, refined by the local centroid."""
    h, w = m.shape
    iy, ix = np.unravel_index(int(np.argmax(m)), m.shape)
    y0, y1, x0, x1 = max(0, iy - radius), min(h, iy + radius + 1), max(0, ix - radius), min(w, ix + radius + 1)
    win = m[y0:y1, x0:x1]
    yy, xx = np.mgrid[y0:y1, x0:x1]
    s = max(float(win.sum()), 1e-12)
    return np.array([float((win * xx).sum() / s), float((win * yy).sum() / s)])


def _check(frames: Any, flow: Any, beat: Any, mask: Any):
    frames = np.asarray(frames)
    if frames.ndim != 3 or frames.dtype != np.uint8:
        raise InputError(f"frames must be uint8 [T, H, W], got {frames.dtype} {frames.shape}")
    t, h, w = frames.shape
    if (h, w) != GRID:
        raise InputError(f"the learned landmark detector needs the {GRID[1]}x{GRID[0]} analysis grid, got {w}x{h}")
    flow = np.asarray(flow)
    if flow.ndim != 4 or flow.shape != (t - 1, h, w, 2):
        raise InputError(f"flow must be [T-1, H, W, 2] = {[t - 1, h, w, 2]}, got {list(flow.shape)}")
    try:
        ed, es, ned = (int(x) for x in beat)
    except (TypeError, ValueError):
        raise InputError(f"beat must be (ed, es, next_ed) frame indices, got {beat!r}") from None
    if not (0 <= ed < es <= t - 1 and ed < ned):
        raise InputError(f"beat {(ed, es, ned)} does not fit a clip of {t} frames (need 0 <= ed < es < T)")
    if mask is None:
        mask = frames.max(axis=0) > 0
    mask = np.asarray(mask)
    if mask.shape != (h, w):
        raise InputError(f"mask must be [H, W] = {[h, w]}, got {list(mask.shape)}")
    return frames, flow, (ed, es, ned), mask.astype(bool)


def _session(path: Path):
    from .model.card import card_path_for, load_card, verify_model_file

    try:
        st = path.stat()
    except OSError as exc:
        raise ModelError(f"landmark model not found: {path}") from exc
    key = (str(path), st.st_size, st.st_mtime_ns)
    with _LOCK:
        s = _CACHE.get(key)
        if s is None:
            import onnxruntime as ort

            verify_model_file(path, load_card(card_path_for(path)))
            so = ort.SessionOptions()
            so.intra_op_num_threads = 1
            so.inter_op_num_threads = 1
            s = ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])
            _CACHE[key] = s
    return s


def run_model(x: np.ndarray, model: str | Path | None = None) -> list[np.ndarray]:
    """Run the ONNX model on inputs ``[B, 4, 128, 176]`` -> [heat-map logits ``[B, 3, 64, 88]``,
    display logit ``[B, 1]``]."""
    path = DEFAULT_LANDMARK_MODEL if model is None else Path(model)
    s = _session(path.resolve())
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim == 3:
        x = x[None]
    return s.run(None, {s.get_inputs()[0].name: x})


def detect_landmarks_cnn(
    frames: np.ndarray,
    flow: np.ndarray,
    beat: tuple[int, int, int],
    *,
    mask: np.ndarray | None = None,
    mirrored: bool | None = None,
    model: str | Path | None = None,
) -> Landmarks:
    """Septal and lateral mitral annulus and LV apex on the ED frame, by the learned detector.

    Parameters
    ----------
    frames : np.ndarray
        uint8 ``[T, 256, 352]`` analysis grid.
    flow : np.ndarray
        ``[T-1, H, W, 2]`` dense flow.
    beat : (int, int, int)
        (ed, es, next_ed).
    mask : np.ndarray, optional
        bool ``[H, W]`` sector mask (default: pixels that are ever non-zero).
    mirrored : bool, optional
        Declared display. The network finds the septum from the image; when a declared display
        disagrees, the two annulus points are swapped to it and a warning is added.
    model : path, optional
        Another landmark ONNX model with its card (default: the shipped one).

    Returns
    -------
    Landmarks
        ``source="auto"``, grid px; the confidence is the weakest landmark's probability mass
        near its heat-map peak (relative to a training target's), halved for an implausible
        geometry.

    Raises
    ------
    InputError
        Wrong shapes or dtypes, or a beat that does not fit the clip.
    QualityError
        The landmarks found break the basic geometry of an apical view.
    """
    frames, flow, beat, mask = _check(frames, flow, beat, mask)
    x = landmark_inputs(frames, flow, beat, mask)
    out = run_model(x, model)
    side = out[1][0] if len(out) > 1 else None
    pts, info = decode_outputs(out[0][0], side, mirrored)
    conf = info["confidence"]
    sep, lat, apex = (np.array(p, dtype=np.float64) for p in pts)
    mir = bool(info["mirrored"])
    warnings = [warn("learned_detector", "landmarks from the learned detector (synthetic-trained heatmap CNN)")]
    if mirrored is not None and (info["p_mirrored"] > 0.5) != bool(mirrored) and abs(info["p_mirrored"] - 0.5) > 0.3:
        warnings.append(warn("display_disagrees", "the declared display disagrees with the learned detector's "
                             "(the RV looks to be on the other side)"))
    h, w = GRID
    sep = np.clip(sep, 0, w - 1)
    lat = np.clip(lat, 0, w - 1)
    apex = np.clip(apex, 0, w - 1)
    for p in (sep, lat, apex):
        p[1] = min(max(p[1], 0.0), h - 1)
    try:
        _, more = validate_landmarks(sep, lat, apex, (h, w), mirrored=mir)
        warnings += more
    except InputError as exc:
        raise QualityError(f"automatic landmarks are implausible ({exc}); pass landmarks=") from None
    if geometry_warnings(sep, lat, apex):
        conf *= 0.5
    if conf < 0.5:
        warnings.append(low_confidence_warning(conf))
    return Landmarks(np.asarray(sep, float), np.asarray(lat, float), np.asarray(apex, float), source="auto",
                     confidence=float(conf), mirrored=mir, warnings=warnings)

