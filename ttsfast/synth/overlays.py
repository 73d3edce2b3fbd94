"""Scanner-style overlays burned into synthetic frames: text, depth scale, ECG trace."""
from __future__ import annotations

import cv2
import numpy as np


def _ecg_polyline(ecg: np.ndarray, t: int, width: int, height: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Points of the ECG sweep (whole clip across the bottom strip) and the cursor at ``t``."""
    T = ecg.size
    x0, x1 = int(0.12 * width), int(0.88 * width)
    base = height - 14
    amp = 9.0
    xs = np.linspace(x0, x1, T)
    ys = base - amp * ecg
    pts = np.stack([xs, ys], axis=1)
    return np.round(pts).astype(np.int32), (int(round(xs[t])), int(round(ys[t])))


def draw_overlays(frames: np.ndarray, ecg: np.ndarray, info: dict, rgb: bool = False) -> np.ndarray:
    """Burn overlays into frames.

    Parameters
    ----------
    frames : uint8 [T, H, W]
        Grey frames (not modified).
    ecg : float [T]
        ECG in mV, one sample per frame.
    info : dict
        ``fps``, ``depth_mm``, ``hr``, ``top_px``, ``mm_per_px``, ``mirrored``.
    rgb : bool
        Return [T, H, W, 3] RGB with a green ECG and a yellow probe marker; otherwise grey.

    Returns
    -------
    ndarray uint8
        [T, H, W] or [T, H, W, 3].
    """
    T, H, W = frames.shape
    out = np.repeat(frames[..., None], 3, axis=3) if rgb else frames.copy()
    white = (230, 230, 230) if rgb else 230
    green = (40, 220, 60) if rgb else 170
    yellow = (240, 200, 40) if rgb else 200
    font = cv2.FONT_HERSHEY_PLAIN
    lines = [f"{info['fps']:.0f} Hz", f"{info['depth_mm'] / 10:.0f} cm", "A4C", "ttsfast synth"]
    for t in range(T):
        img = out[t]
        for i, s in enumerate(lines):
            cv2.putText(img, s, (3, 11 + 11 * i), font, 0.75, white, 1, cv2.LINE_AA)
        cv2.putText(img, f"HR {info['hr']:.0f}", (W - 48, 11), font, 0.75, white, 1, cv2.LINE_AA)
        # depth scale: a dot every cm along the right margin
        x_sc = W - 8
        for k in range(0, int(info["depth_mm"] // 10) + 1):
            y = int(round(info["top_px"] + k * 10.0 / info["mm_per_px"]))
            if y < H - 20:
                cv2.circle(img, (x_sc, y), 1, white, -1)
        # probe orientation marker on the LV side of the fan top
        mx = W // 2 + (-30 if info.get("mirrored") else 30)
        cv2.circle(img, (mx, int(info["top_px"]) + 4), 2, yellow, -1)
        pts, cur = _ecg_polyline(ecg, t, W, H)
        cv2.polylines(img, [pts], False, green, 1, cv2.LINE_AA)
        cv2.circle(img, cur, 2, yellow, -1)
    return out
