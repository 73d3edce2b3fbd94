"""Live mode (:mod:`ttsfast.streaming`): each beat of a stream agrees with ``analyze(beat=i)``
on the same clip, faults mid-stream end the beat in progress with a ``not_measured`` result
that says why and the stream measures again after them, bad input is refused, ``push()`` does
not block. Timings and memory over a long replay: bench/bench_live.py."""
from __future__ import annotations

import functools
import json

import numpy as np
import pytest

import ttsfast
from ttsfast.analyze import analyze
from ttsfast.errors import InputError
from ttsfast.streaming import BeatResult, LiveAnalyzer
from ttsfast.synth import generate

from accuracy_targets import TARGETS
from conftest import read_bgr, real_clip_path

LANDMARKS = ("septal_annulus", "lateral_annulus", "apex")
#: Live vs analyze(beat=i) on the same clip: p(TTS) within 0.02 (issue 24), each measure within
#: its accuracy target (tests/accuracy_targets.py) -- the live beat must not cost accuracy.
P_TOL = 0.02
MEASURE_TOL = {  # report key -> (tolerance, unit)
    "peak_displacement_px": (TARGETS["e2e_peak_displacement_px"].limit, "px"),
    "excursion_px": (TARGETS["e2e_excursion_px"].limit, "px"),
    "gls_pct": (TARGETS["e2e_gls_pts"].limit, "strain points"),
    "strain_peak_pct": (TARGETS["e2e_segment_strain_pts"].limit, "strain points"),
}
MEASURED = ("complete", "partial")

# ---------------------------------------------------------------------------- known faults
#: GE capture settled on its first second: crop box x0 89.13 vs analyze()'s 91.30 (all 110 frames), 251
#: mask pixels differ, so grid and flow differ: peak displacement 0.51-0.72 px, excursion 0.70-1.96 px,
#: segment strain 0.77-1.04 points from analyze(beat=i), p(TTS) within 0.0012. Identical at settle_s=2.
GE_SETTLE = pytest.mark.xfail(strict=True, reason=(
    "GE capture: the grid mapping settled on the first 1 s differs from analyze()'s whole-clip one; "
    "peak displacement 0.51-0.72 px, excursion up to 1.96 px from analyze(beat=i) (targets 0.1 / 0.5 px)"))


# ---------------------------------------------------------------------------- helpers
def true_landmarks(gt) -> dict:
    e = int(gt.ed_frames[0])
    return {k: [float(v) for v in gt.landmarks[k][e]] for k in LANDMARKS}


def run_stream(frames, fps: float, times=None, **options) -> tuple[list[BeatResult], LiveAnalyzer]:
    """Push every frame (as fast as the caller can), close, and return all beat results."""
    la = LiveAnalyzer(fps, **options)
    out: list[BeatResult] = []
    for n, f in enumerate(frames):
        out += la.push(f, t=(n / fps) if times is None else times[n])
    out += la.close()
    assert la.stats["frames"] == len(frames), "the frame worker did not take every frame"
    return out, la


def _flat(d, prefix="") -> dict[str, float]:
    if isinstance(d, dict):
        out = {}
        for k, v in d.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    if isinstance(d, (int, float)) and not isinstance(d, bool):
        return {prefix[:-1]: float(d)}
    return {}


def compare_with_analyze(source, fps: float, results: list[BeatResult], landmarks: dict,
                         name: str) -> tuple[list[str], list[str]]:
    """Match the live beats to ``analyze()``'s (ED and next ED within 1 frame) and compare p(TTS)
    and the measures with ``analyze(beat=i)``. Returns (the measured differences, the failures)."""
    full = analyze(source, fps=fps, landmarks=landmarks, saliency=False, keep_arrays=False)
    beats = full.cycle["beats"]
    lines, fails = [], []
    matched = set()
    for b in results:
        idx = [i for i, ab in enumerate(beats)
               if abs(ab["ed"] - b.frames[0]) <= 1 and abs(ab["next_ed"] - b.frames[1]) <= 1]
        codes = [w.code for w in b.warnings]
        if not idx:
            fails.append(f"{name}: live beat {b.frames} ({b.status}) matches none of analyze's beats "
                         f"{[(ab['ed'], ab['next_ed']) for ab in beats]}")
            continue
        i = idx[0]
        matched.add(i)
        if b.status not in MEASURED or b.p_tts is None:
            msg = next((w.message for w in b.warnings if w.code == "beat_not_measured"), codes)
            fails.append(f"{name}: live beat {b.frames} not measured: {msg}")
            continue
        ri = analyze(source, fps=fps, landmarks=landmarks, beat=i, saliency=False, keep_arrays=False)
        dp = abs(b.p_tts - ri.p_tts)
        line = f"{name} beat {i} {b.frames}: |dp_tts| {dp:.4f}"
        if dp > P_TOL:
            fails.append(f"{name} beat {i}: p_tts live {b.p_tts:.4f} vs analyze(beat={i}) {ri.p_tts:.4f}")
        if abs(beats[i]["p_tts"] - ri.p_tts) > 1e-3:  # the whole-clip run scores every beat alike
            fails.append(f"{name} beat {i}: analyze's cycle.beats p_tts {beats[i]['p_tts']} != {ri.p_tts:.4f}")
        ml, ma = b.report.get("mechanics"), ri.to_dict()["mechanics"]
        if (ml is None) != (ma is None) or b.status != ri.status:
            fails.append(f"{name} beat {i}: live {b.status} mechanics {ml is not None} vs analyze {ri.status} "
                         f"mechanics {ma is not None}")
        elif ma is not None:
            for key, (tol, unit) in MEASURE_TOL.items():
                fl, fa = _flat(ml[key]), _flat(ma[key])
                if set(fl) != set(fa) or not fa:
                    fails.append(f"{name} beat {i}: {key} keys differ: {sorted(fl)} vs {sorted(fa)}")
                    continue
                worst = max(fa, key=lambda k: abs(fl[k] - fa[k]))
                d = abs(fl[worst] - fa[worst])
                line += f", {key} {d:.3f}"
                if d > tol:
                    fails.append(f"{name} beat {i}: {key}[{worst}] live {fl[worst]:.3f} vs analyze "
                                 f"{fa[worst]:.3f} ({d:.3f} {unit} > {tol:g})")
        lines.append(line)
    missing = sorted(set(range(len(beats))) - matched)
    if missing:
        fails.append(f"{name}: analyze's beats {missing} have no live beat (live: {[b.frames for b in results]})")
    return lines, fails


# ---------------------------------------------------------------------------- agreement
AGREEMENT_CASES = [
    pytest.param("tts", 0, {"n_frames": 250}, id="tts-0"),
    # sub-frame ED 1.54 for ED 2: the beat window must start before the integer ED
    pytest.param("stemi_anterior", 1, {"n_frames": 250}, id="stemi_anterior-1"),
    # 75 bpm, four beats, every sub-frame ED 0.05-0.17 frame before the integer ED
    pytest.param("tts", 0, {"n_frames": 180, "hr": 75}, id="tts-0-75bpm"),
]


@pytest.mark.parametrize("preset,seed,kw", AGREEMENT_CASES)
def test_live_beats_agree_with_analyze_synthetic(preset, seed, kw):
    clip, gt = generate(preset=preset, seed=seed, **kw)
    lm = true_landmarks(gt)
    results, la = run_stream(clip.frames, clip.fps, landmarks=lm, mm_per_px=clip.mm_per_px)
    for b in results:
        json.dumps(b.to_dict(), allow_nan=False)  # plain JSON
    lines, fails = compare_with_analyze(clip, clip.fps, results, lm, f"{preset}-{seed}")
    assert not fails, "\n".join(fails + ["measured:"] + lines)
    assert len(results) >= 2


def _ge_frames():
    frames = read_bgr(real_clip_path("ctrl_a4c_ge_55hz.mp4"))  # BGR colour, as a capture card gives them
    assert len(frames) == 110
    return frames


GE_LANDMARKS = {"septal_annulus": [623.5, 598.5], "lateral_annulus": [817.0, 606.5], "apex": [689.0, 205.0]}


@pytest.mark.parametrize("settle_s", [pytest.param(None, id="default-settle"),
                                      pytest.param(1.0, id="settle-1s", marks=GE_SETTLE)])
def test_live_beats_agree_with_analyze_real_ge(settle_s):
    """The default settle_s (2 s) covers the whole 110-frame capture: the stream's grid is
    analyze()'s; settled on its first second, the grid differs and so do the measures."""
    frames = _ge_frames()
    options = {} if settle_s is None else {"settle_s": settle_s}
    results, la = run_stream(frames, 55.0, landmarks=GE_LANDMARKS, **options)
    lines, fails = compare_with_analyze(str(real_clip_path("ctrl_a4c_ge_55hz.mp4")), 55.0, results,
                                        GE_LANDMARKS, "ctrl_a4c_ge_55hz")
    assert not fails, "\n".join(fails + ["measured:"] + lines)


# ---------------------------------------------------------------------------- faults
FPS = 50.0
K = 150  # where the fault starts (stream frame), mid-beat (EDs at 6, 46, 86, 126, 166, ...)


@functools.cache
def _clips():
    # 75 bpm: 40 frames a beat, EDs at 6, 46, 86, 126, 166, ...
    base, _ = generate(preset="tts", seed=0, n_frames=400, hr=75)
    view, _ = generate(preset="stemi_anterior", seed=3, n_frames=400, hr=75, mirrored=True)
    patient, _ = generate(preset="normal", seed=1, n_frames=150, hr=60)
    resized, _ = generate(preset="tts", seed=0, n_frames=400, hr=75, height=200, width=280)
    return base.frames, view.frames, patient.frames, resized.frames


def _scenario(name: str):
    """(frames, times, transitions that cross the fault, expected codes, first frame after it)."""
    F, view, patient, resized = _clips()
    times = None
    if name == "clean":
        return list(F), None, [], (), 0
    if name == "gap":  # 10 frames dropped: the times jump by 11 frame intervals
        frames = list(F[:K]) + list(F[K + 10:])
        times = [n / FPS for n in range(K)] + [(n + 10) / FPS for n in range(K, len(frames))]
        return frames, times, [K], ("stream_gap",), K
    if name == "frozen":  # frame K shown 21 times (20 repeats) inside a beat
        return list(F[:K + 1]) + [F[K]] * 20 + list(F[K + 1:]), None, list(range(K + 1, K + 21)), \
            ("frozen_frames",), K + 21
    if name == "probe_lifted":  # 30 black frames, then the clip again
        return list(F[:K]) + [np.zeros_like(F[0])] * 30 + list(F[K:]), None, list(range(K, K + 31)), \
            ("no_signal",), K + 30
    if name == "noise":  # 10 frames of uniform noise
        rng = np.random.default_rng(0)
        noise = [rng.integers(0, 256, F[0].shape, dtype=np.uint8) for _ in range(10)]
        return list(F[:K]) + noise + list(F[K:]), None, list(range(K, K + 11)), ("view_change",), K + 10
    if name == "view_change":  # cut to another view (another preset and seed, mirrored) for good
        return list(F[:K]) + list(view), None, [K], ("view_change",), K
    if name == "other_patient":  # 120 frames of another patient's clip spliced in
        return list(F[:K]) + list(patient[:120]) + list(F[K:]), None, [K, K + 120], ("view_change",), K + 120
    if name == "size_change":  # the frame size changes (depth/zoom): 200x280 from here on
        return list(F[:K]) + list(resized[K:]), None, [K], ("view_change",), K
    raise KeyError(name)


@functools.cache
def _run(name: str):
    frames, times, cuts, codes, after = _scenario(name)
    results, la = run_stream(frames, FPS, times)  # the landmarks found on each view
    return results, la, cuts, codes, after


STREAM_CODES = ("stream_gap", "frozen_frames", "no_signal", "view_change", "beat_not_measured")


def _summary(results) -> str:
    return "; ".join(f"{b.frames} {b.status} {[w.code for w in b.warnings if w.code in STREAM_CODES]}"
                     for b in results)


FAULTS = ["gap", "frozen", "probe_lifted", "noise", "view_change", "other_patient", "size_change"]
@pytest.mark.parametrize("name", FAULTS)
def test_fault_ends_the_beat_with_its_code(name):
    """The beat in progress at the fault comes out not_measured with the fault's code, no beat
    is measured across the fault, and the stream goes on: it takes every frame, settles again
    and reads the beats that follow."""
    results, la, cuts, codes, after = _run(name)
    s = _summary(results)
    assert [b.beat_index for b in results] == list(range(len(results))), s

    def faulted(b):
        return b.status == "not_measured" and any(w.code in codes for w in b.warnings)

    if name == "frozen":  # the beat holding the repeated frames
        hits = [[b for b in results if faulted(b) and b.frames[0] < cuts[-1] and b.frames[1] >= cuts[0]]]
    else:  # the beat in progress ends on the frame before each cut
        hits = [[b for b in results if faulted(b) and b.frames[0] <= j - 1 == b.frames[1]]
                for j in (cuts if name == "other_patient" else cuts[:1])]
    for j, hit in zip(cuts, hits):
        assert hit, f"{name}: no not_measured beat with {codes} at stream frame {j}: {s}"
        nm = hit[0]
        assert nm.p_tts is None and nm.label is None
        d = nm.to_dict()
        json.dumps(d, allow_nan=False)
        assert d["status"] == "not_measured" and d["withheld"]["beat"]["code"] in codes
        assert d["quality"]["warnings"][0]["code"] in codes
    if name == "frozen":  # a beat may hold up to 10 % repeated frames
        crossed = [b.frames for b in results if b.status in MEASURED
                   and sum(b.frames[0] < j <= b.frames[1] for j in cuts) > 0.1 * (b.frames[1] - b.frames[0])]
    else:
        crossed = [b.frames for b in results if b.status in MEASURED
                   and any(b.frames[0] < j <= b.frames[1] for j in cuts)]
    assert not crossed, f"{name}: beats measured across the fault ({cuts[0]}..{cuts[-1]}): {crossed}; {s}"
    later = [b for b in results if b.frames[0] >= after]
    assert len(later) >= 3, f"{name}: {len(later)} beats after the fault (frame {after}): {s}"


@pytest.mark.parametrize("name", FAULTS)
def test_beats_after_a_fault_are_measured_again(name):
    """Once settled again (settle_s of good frames), every beat after the fault is measured."""
    results, la, cuts, codes, after = _run(name)
    later = [b for b in results if b.frames[0] >= after + la.settle_n // 4]
    s = _summary(results)
    assert len(later) >= 3, f"{name}: {len(later)} beats after the fault (frame {after}): {s}"
    bad = [(b.frames, b.status, [w.message for w in b.warnings]) for b in later if b.status not in MEASURED]
    assert not bad, f"{name}: beats after the fault not measured: {bad}"
    assert all(0.0 <= b.p_tts <= 1.0 for b in later)


def test_clean_stream_measures_every_beat():
    """The fault scenarios' clip without a fault: nine beats, every one measured (its sub-frame
    EDs fall 0.01-0.18 frame before the integer EDs: the beat window must start before them)."""
    results, la, *_ = _run("clean")
    assert len(results) >= 8, _summary(results)
    bad = [(b.frames, [w.message for w in b.warnings]) for b in results if b.status not in MEASURED]
    assert not bad, bad


def test_beats_are_sent_from_the_frame_that_confirms_them(monkeypatch):
    """After the first beat, the chunk that holds the frame likely to confirm the next beat's end
    (the beat's end plus a period plus the confirmation) is cut short there, so that the beat does
    not wait for the rest of the chunk (up to 7 frames, 140 ms at 50 frames/s): on a steady 75 bpm
    clip every later beat is sent when its confirming frame is the newest, or the one after."""
    from ttsfast.streaming import _Stream

    sent = []
    real_send = _Stream._send

    def send(self, cyc, i, sa, sb, done):
        sent.append((sb, done, self.first + len(self.grid_frames) - 1))
        return real_send(self, cyc, i, sa, sb, done)

    monkeypatch.setattr(_Stream, "_send", send)
    clip, gt = generate(preset="tts", seed=0, n_frames=300, hr=75)
    results, la = run_stream(clip.frames, clip.fps, landmarks=true_landmarks(gt), saliency=False)
    assert len(sent) == len(results) >= 6, _summary(results)
    confirm = max(2, int(round(0.12 * clip.fps)))
    late = [(sb, done, newest) for sb, done, newest in sent[2:-1] if done != sb + confirm or newest - done > 1]
    assert not late, f"(end, confirming frame, newest frame when sent) of beats sent late: {late} of {sent}"


def test_dim_clip_is_measured():
    """normal-2: whole-frame mean 7.6 (in the sector 42), diastasis 0.47 grey levels apart over the
    whole frame: neither a lifted probe nor a frozen image."""
    clip, _ = generate(preset="normal", seed=2, n_frames=200, hr=75)
    assert clip.frames[:, ::4, ::4].mean() < 8.0 < clip.frames[0][clip.frames.max(0) > 0].mean()
    results, la = run_stream(clip.frames, clip.fps)
    assert len(results) >= 3 and all(b.status in MEASURED for b in results), _summary(results)


def test_push_does_not_block():
    """push() only queues the frame: its p99 stays below one frame interval at 50 frames/s
    (20 ms) while the workers analyse a stream pushed as fast as possible."""
    for name in ("clean", "noise"):
        results, la, *_ = _run(name)
        ms = np.asarray(la.stats["push_ms"])
        p99 = float(np.percentile(ms, 99))
        assert p99 < 20.0, f"{name}: push p99 {p99:.2f} ms (max {ms.max():.1f} ms) over {ms.size} pushes"


# ---------------------------------------------------------------------------- bad input
def test_push_after_close_raises():
    clip, _ = generate(preset="tts", seed=0, n_frames=3)
    la = LiveAnalyzer(50)
    la.push(clip.frames[0], t=0.0)
    la.close()
    with pytest.raises(InputError):
        la.push(clip.frames[1], t=0.02)
    assert la.close() == []  # a second close is harmless


@pytest.mark.parametrize("frame", [
    pytest.param(np.zeros((64, 64), np.float32), id="float"),
    pytest.param(np.zeros((64, 64), np.float64) + 0.5, id="float64"),
    pytest.param(np.zeros(4096, np.uint8), id="1-D"),
    pytest.param(np.zeros((8, 8), np.uint8), id="tiny"),
    pytest.param(np.zeros((64, 64, 2), np.uint8), id="two-channels"),
    pytest.param(np.zeros((2, 64, 64, 3), np.uint8), id="4-D"),
    pytest.param(np.zeros((64, 64), np.uint16), id="uint16"),
])
def test_bad_frame_raises_input_error(frame):
    with LiveAnalyzer(50) as la:
        with pytest.raises(InputError):
            la.push(frame)


@pytest.mark.parametrize("fps", [0, -5, float("nan"), float("inf"), "abc", None, 1e6])
def test_bad_fps_raises_input_error(fps):
    with pytest.raises(InputError):
        LiveAnalyzer(fps)


def test_bad_options_raise_input_error():
    with pytest.raises(InputError):
        LiveAnalyzer(50, channels="yuv")
    with pytest.raises(InputError):
        LiveAnalyzer(50, mm_per_px=-1.0)
    with pytest.raises(InputError):
        LiveAnalyzer(50, tracker="nope")
    # each would otherwise fail only inside the frame worker, or never settle
    for bad in (dict(grid="abc"), dict(grid=(4, 4)), dict(threads="two"), dict(threads=0), dict(settle_s=-1),
                dict(settle_s=float("nan")), dict(window_s="x"), dict(window_s=0)):
        with pytest.raises(InputError):
            LiveAnalyzer(50, **bad)


def test_live_iterates_a_video_file(tmp_path):
    """ttsfast.live(): the beats of a file as they complete, the same as pushing its frames."""
    from ttsfast.synth import write_video

    clip, gt = generate(preset="tts", seed=0, n_frames=250)
    path = write_video(clip, tmp_path / "clip.avi")
    beats = list(ttsfast.live(path, fps=50.0, landmarks=true_landmarks(gt), saliency=False))
    assert [b.beat_index for b in beats] == list(range(len(beats))) and len(beats) == 3
    assert all(abs(b.frames[0] - e) <= 1 and abs(b.frames[1] - n) <= 1
               for b, e, n in zip(beats, (10, 80, 150), (80, 150, 220))), [b.frames for b in beats]
    assert all(b.status == "complete" and 0 <= b.p_tts <= 1 for b in beats)
    with pytest.raises(InputError):
        next(ttsfast.live(tmp_path / "missing.avi", fps=50.0))


# ---------------------------------------------------------------------------- tracking flow ahead
def _same(a, b) -> bool:
    """Exact equality of nested mechanics values (arrays, dicts, lists, floats; NaN equals NaN)."""
    if isinstance(a, dict) or isinstance(b, dict):
        return isinstance(a, dict) and isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k])
                                                                                          for k in a)
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        return isinstance(b, (list, tuple)) and isinstance(a, (list, tuple)) and len(a) == len(b) \
            and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.array_equal(np.asarray(a), np.asarray(b), equal_nan=np.asarray(a).dtype.kind == "f")
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (np.isnan(a) and np.isnan(b))
    return a == b


def _mechanics_values(m) -> dict:
    """Every value of a Mechanics (landmarks as their array, warnings as code and message)."""
    import dataclasses

    d = {f.name: getattr(m, f.name) for f in dataclasses.fields(m) if f.name not in ("to_original", "landmarks",
                                                                                     "warnings")}
    d.update(landmarks=m.landmarks.as_array(), warnings=[(w.code, w.message) for w in m.warnings])
    return d


def _run_spied(monkeypatch, frames, fps: float, ahead: bool, **options):
    """Stream ``frames`` with the tracking flow computed ahead or not; the beats, each beat's
    Mechanics (None when not measured), the DIS pairs the beat worker computed and the analyzer."""
    import threading

    import ttsfast.flow as flow_mod
    import ttsfast.stages as stages

    mechanics, beat_pairs = [], [0]
    real_stage, real_pair = stages.mechanics_stage, flow_mod._dis_pair

    def stage(*a, **kw):
        st = real_stage(*a, **kw)
        mechanics.append(st.mechanics)
        return st

    def pair(*a, **kw):
        if threading.current_thread().name.startswith("ttsfast-live-beats"):
            beat_pairs[0] += 1
        return real_pair(*a, **kw)

    monkeypatch.setattr(stages, "mechanics_stage", stage)
    monkeypatch.setattr(flow_mod, "_dis_pair", pair)
    la = LiveAnalyzer(fps, **options)
    la._dis_ahead = ahead
    out: list[BeatResult] = []
    for n, f in enumerate(frames):
        out += la.push(f, t=n / fps)
    out += la.close()
    monkeypatch.undo()
    return out, mechanics, beat_pairs[0], la


@pytest.mark.parametrize("seed,caller", [pytest.param(0, True, id="caller-landmarks"),
                                         # tts-1: the landmarks found on beat 0 pass the checks on every beat
                                         pytest.param(1, False, id="carried-landmarks")])
def test_tracking_flow_ahead_gives_the_same_beats(monkeypatch, seed, caller):
    """The DIS tracking flow computed as the frames arrive (in the box of the caller's or the
    carried landmarks) gives every beat exactly the mechanics of computing it at beat time, the
    beat worker then computes only the few pairs left, and the cache of pairs stays within a beat."""
    from ttsfast.streaming import AHEAD_S

    clip, gt = generate(preset="tts", seed=seed, n_frames=300, hr=75)  # 40 frames a beat
    options = {"mm_per_px": clip.mm_per_px, "saliency": False}
    if caller:
        options["landmarks"] = true_landmarks(gt)
    on, mech_on, pairs_on, la_on = _run_spied(monkeypatch, clip.frames, clip.fps, True, **options)
    off, mech_off, pairs_off, la_off = _run_spied(monkeypatch, clip.frames, clip.fps, False, **options)
    assert [(b.frames, b.status, b.p_tts) for b in on] == [(b.frames, b.status, b.p_tts) for b in off]
    assert len(mech_on) == len(mech_off) >= 6
    measured = [(a, b) for a, b in zip(mech_on, mech_off) if a is not None or b is not None]
    assert len(measured) >= 6, _summary(on)
    for a, b in measured:
        assert a is not None and b is not None
        va, vb = _mechanics_values(a), _mechanics_values(b)
        diff = [k for k in va if not _same(va[k], vb[k])]
        assert not diff, f"beat {a.beat}: {diff} differ with the tracking flow computed ahead"
    for b_on, b_off in zip(on, off):
        d_on, d_off = b_on.to_dict(), b_off.to_dict()
        for d in (d_on, d_off):
            d.pop("timings_ms"), d.pop("latency_ms")
        assert d_on == d_off
    assert la_off.stats["ahead_pairs"] == 0 and la_on.stats["ahead_handed"] > 0
    # the DIS worker searches every pair beside the flow, from the settling window on, once the
    # landmarks are known: the beat worker computes none with the caller's; carried ones are known
    # after the first beat (its pairs, and those of the next beat that came before its landmarks)
    print("pairs computed by the beat worker", pairs_on, "of", pairs_off)
    assert pairs_on == 0 if caller else pairs_on <= pairs_off / 2, (pairs_on, pairs_off)
    # the cache holds at most the settling window or a beat, and a chunk
    longest = max(b.frames[1] - b.frames[0] for b in on)
    bound = max(longest, la_on.settle_n) + 8
    assert 0 < la_on.stats["ahead_max"] <= min(bound, int(AHEAD_S * clip.fps) + 8), la_on.stats


def test_flow_window_hands_views_that_stay_put():
    """The frame worker's flow window (streaming._FlowWindow) against a plain record of every
    pair: chunks written in place, pairs dropped as beats pass, spans read back exactly (a view
    of one block when they lie in one), and a span handed out keeps its values while later
    chunks fill and replace the blocks; another frame size starts afresh."""
    from ttsfast.streaming import _FlowWindow

    rng = np.random.default_rng(3)
    win, truth, held = _FlowWindow(24), {}, []
    s, views, most = 100, 0, 0
    for step in range(60):
        k = int(rng.integers(1, 9))
        out = win.space(s, k, 4, 5)
        assert out.shape == (k, 4, 5, 2) and out.dtype == np.float32
        out[...] = rng.normal(size=out.shape)
        for i in range(k):
            truth[s + i] = out[i].copy()
        win.commit(k)
        s += k
        win.drop_before(max(win.lo, s - int(rng.integers(1, 20))))
        assert len(win) == s - win.lo
        a = int(rng.integers(win.lo, s))
        b = int(rng.integers(a + 1, s + 1))
        got = win.span(a, b)
        np.testing.assert_array_equal(got, np.stack([truth[t] for t in range(a, b)]))
        np.testing.assert_array_equal(win.at(a), truth[a])
        held.append((a, b, got))
        views += any(np.shares_memory(got, seg[1]) for seg in win.segs)
        most = max(most, sum(seg[1].shape[0] for seg in win.segs))
        for a0, b0, g in held:  # nothing handed out was written over
            np.testing.assert_array_equal(g, np.stack([truth[t] for t in range(a0, b0)]))
    assert most <= 2 * 24 and views >= 40, (most, views)  # blocks let go; most spans handed as views
    # with no view left, the blocks let go are used again (no fresh memory to fault in)
    held.clear()
    del got, out, g
    seen = [seg[3] for seg in win.segs] + [m for m, _ in win.retired]
    for _ in range(20):
        win.space(s, 8, 4, 5)[...] = 1.0
        win.commit(8)
        s += 8
        win.drop_before(s - 4)
    assert all(any(seg[3] is m for m in seen) for seg in win.segs)
    with pytest.raises(IndexError):
        win.span(win.lo - 1, win.lo + 1)
    assert win.space(s, 3, 6, 5).shape == (3, 6, 5, 2)  # another size: a new window from pair s
    win.commit(3)
    assert win.lo == s and len(win) == 3 and len(win.segs) == 1


def test_tracking_ahead_cache_is_bounded():
    """The cache drops every pair when the box changes, and the pairs before the kept range."""
    from ttsfast.flow import TrackingPairs
    from ttsfast.streaming import _TrackingAhead

    ahead = _TrackingAhead()
    box = (10, 20, 60, 90)
    ahead.set_roi(box)
    ahead.add(TrackingPairs(box, {s: np.zeros((70, 50, 2), np.float32) for s in range(5, 15)}))
    assert ahead.first_missing(5, 15) is None and ahead.first_missing(3, 15) == 3
    ahead.keep(9)
    assert sorted(ahead.pairs) == list(range(9, 15))
    tp = ahead.take(8, 12)
    assert tp.roi == box and sorted(tp.pairs) == [1, 2, 3]  # keyed from pair 8; 8 was dropped
    ahead.set_roi(box)
    assert len(ahead.pairs) == 6  # the same box keeps them
    ahead.set_roi((10, 20, 61, 90))
    assert ahead.pairs == {} and ahead.take(8, 12) is None
    ahead.set_roi(None)
    assert ahead.pairs == {}


def test_tracking_flow_known_pairs_are_exact():
    """tracking_flow with pairs computed ahead (tracking_pairs, part of them, in the same box)
    equals computing them all; pairs of another box are ignored, malformed ones refused."""
    from ttsfast.flow import TrackingPairs, dense_flow, tracking_flow, tracking_pairs

    clip, _ = generate(preset="tts", seed=0, n_frames=14)
    frames = clip.frames
    ref = dense_flow(frames)
    roi = (60, 40, 300, 230)
    full = tracking_flow(frames, 2, 12, roi=roi, reference=ref[2:12])
    part = tracking_pairs(frames[4:10], roi, reference=ref[4:9], first=4)
    assert sorted(part.pairs) == list(range(4, 9))
    np.testing.assert_array_equal(tracking_flow(frames, 2, 12, roi=roi, reference=ref[2:12], known=part), full)
    other = TrackingPairs((60, 40, 301, 230), {t: np.zeros((190, 241, 2), np.float32) for t in range(2, 12)})
    np.testing.assert_array_equal(tracking_flow(frames, 2, 12, roi=roi, reference=ref[2:12], known=other), full)
    bad = TrackingPairs(part.roi, {5: np.zeros((3, 3, 2), np.float32)})
    with pytest.raises(InputError):
        tracking_flow(frames, 2, 12, roi=roi, reference=ref[2:12], known=bad)
    with pytest.raises(InputError):
        tracking_pairs(frames.astype(np.float32), roi)
