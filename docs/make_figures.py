"""Regenerate the README figures: ``docs/synth_frame.png`` (one synthetic end-diastolic frame)
and ``docs/synth_vs_real.png`` (synthetic normal / tts / stemi_anterior at ED and ES beside two
real STEMI clips from ``../shared/data/real``, when that folder is there).

Run from the repository root: ``python docs/make_figures.py``.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ttsfast import read_clip
from ttsfast.synth import generate

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "data" / "real"
H, W = 256, 352


def _labelled(img: np.ndarray, text: str) -> np.ndarray:
    """``img`` letterboxed onto H x W with a caption strip below."""
    s = min(H / img.shape[0], W / img.shape[1])
    small = cv2.resize(img, (max(1, round(img.shape[1] * s)), max(1, round(img.shape[0] * s))),
                       interpolation=cv2.INTER_AREA)
    tile = np.zeros((H + 24, W), np.uint8)
    y0, x0 = (H - small.shape[0]) // 2, (W - small.shape[1]) // 2
    tile[y0:y0 + small.shape[0], x0:x0 + small.shape[1]] = small
    cv2.putText(tile, text, (4, H + 17), cv2.FONT_HERSHEY_SIMPLEX, 0.45, 255, 1, cv2.LINE_AA)
    return tile


def main() -> None:
    tiles = []
    for preset in ("normal", "tts", "stemi_anterior"):
        clip, gt = generate(preset, 1)
        ed = int(gt.ed_frames[0])
        es = int(gt.es_frames[gt.es_frames > ed][0])
        tiles += [_labelled(clip.frames[ed], f"{preset} ED"), _labelled(clip.frames[es], f"{preset} ES")]
        if preset == "normal":
            cv2.imwrite(str(ROOT / "docs" / "synth_frame.png"), clip.frames[ed], [cv2.IMWRITE_PNG_COMPRESSION, 9])
    for name, label in (("stemi_a4c_cleaned16.gif", "real STEMI (gif)"), ("stemi_a4c_roi_cycle32.mp4", "real STEMI ROI")):
        path = REAL / name
        frame = read_clip(path).frames[0] if path.is_file() else np.zeros((H, W), np.uint8)
        tiles.append(_labelled(frame, label if path.is_file() else f"{label}: ../shared absent"))
    rows = [np.concatenate(tiles[i:i + 4], axis=1) for i in (0, 4)]
    cv2.imwrite(str(ROOT / "docs" / "synth_vs_real.png"), np.concatenate(rows, axis=0), [cv2.IMWRITE_PNG_COMPRESSION, 9])


if __name__ == "__main__":
    main()
