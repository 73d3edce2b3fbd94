"""``ttsfast live SOURCE``: score a file, camera or stream beat by beat as its frames arrive."""
from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, TextIO


def add_live(sub: argparse._SubParsersAction) -> None:
    """Register the ``live`` subcommand."""
    p = sub.add_parser("live", help="score a video file, camera index or stream URL beat by beat as it plays")
    p.add_argument("source", help="a video file, a camera index (0, 1, ...) or a stream URL (OpenCV VideoCapture)")
    p.add_argument("--fps", type=float, default=None, help="acquisition frame rate (default: the source's)")
    p.add_argument("--jsonl", default=None, metavar="FILE", help="write each beat's result as a JSON line to FILE")
    p.add_argument("--realtime", action="store_true", help="pace a file at its frame rate, as a live feed")
    p.add_argument("--landmarks", default=None, help="landmarks as JSON text (frame pixels), as for analyze")
    p.set_defaults(func=cmd_live)


def beat_line(d: dict[str, Any]) -> str:
    """One line per beat: frames, status, p(TTS), heart rate, the paper's peak displacements
    (systolic/diastolic, px), latency and warning codes."""
    cyc = d.get("cycle") or {}
    pd = (d.get("mechanics") or {}).get("peak_displacement_px") or {}

    def peak(wall: str) -> str:
        v = pd.get(wall) or {}
        s, di = v.get("systolic"), v.get("diastolic")
        return "n/a" if s is None or di is None else f"{s:.2f}/{di:.2f}"

    p = d.get("p_tts")
    hr = cyc.get("heart_rate_bpm")
    codes = ",".join(dict.fromkeys(w["code"] for w in (d.get("quality") or {}).get("warnings", [])))
    return (f"beat {d['beat_index']:3d} frames {d['frames'][0]}-{d['frames'][1]} {d['status']:12s} "
            f"p(TTS) {'n/a ' if p is None else f'{p:.2f}'}  HR {'n/a' if hr is None else f'{hr:.0f}'} bpm  "
            f"peak disp. sept {peak('basal_inferoseptal')} lat {peak('basal_anterolateral')} px  "
            f"{d['latency_ms']:.0f} ms" + (f"  [{codes}]" if codes else ""))


def cmd_live(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """Run the stream: a status line refreshed as frames arrive, a line per beat, JSON lines to
    ``--jsonl``; Ctrl-C ends it cleanly, finishing and flushing the pending beats."""
    from .streaming import LiveAnalyzer, open_source, read_frames

    cap, fps = open_source(args.source, args.fps)
    lm = json.loads(args.landmarks) if args.landmarks else None
    sink = open(args.jsonl, "w", encoding="utf-8") if args.jsonl else None
    la = LiveAnalyzer(fps, landmarks=lm)
    t0, n, beats = time.perf_counter(), 0, 0

    def emit(results: list) -> None:
        nonlocal beats
        for r in results:
            d = r.to_dict()
            beats += 1
            out.write("\r" + beat_line(d) + " " * 8 + "\n")
            if sink is not None:
                sink.write(json.dumps(d) + "\n")
                sink.flush()

    try:
        for t, frame in read_frames(cap, fps, args.realtime):
            emit(la.push(frame, t=t))
            n += 1
            if n % 10 == 0:
                el = time.perf_counter() - t0
                out.write(f"\rframes {n}  input {n / max(el, 1e-9):.0f} fps  load "
                          f"{la.stats['busy_s'] / max(n / fps, 1e-9):.2f} x real time  beats {beats}")
                out.flush()
    except KeyboardInterrupt:
        out.write("\ninterrupted: finishing the pending beats\n")
    finally:
        cap.release()
        emit(la.close())
        if sink is not None:
            sink.close()
    out.write(f"\n{n} frames, {beats} beats\n")
    return 0
