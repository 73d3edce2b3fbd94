"""Synthetic clips shared by the stage tests (test_landmarks.py, test_tracking.py,
test_mechanics.py): generation and a cache of clip, ground truth and estimated flow. The cache
itself is the module-scoped ``synth_cache`` fixture of conftest.py."""
from __future__ import annotations

PRESETS = ["normal", "tts", "stemi_anterior"]


def generate(**kw):
    """``ttsfast.synth.generate`` (imported late: collecting the tests does not load it)."""
    from ttsfast.synth import generate as _gen

    return _gen(**kw)


def synth_case(cache, preset, n_frames=None, seed=0, **kw):
    """A noisy synthetic clip and its estimated flow; n_frames None = the generator's default
    (three full beats after the first ED), so that the first beat is complete whatever the
    preset's heart rate (a fixed 72 frames cut the beat of slow tts/stemi presets)."""
    from ttsfast.flow import dense_flow

    key = (preset, n_frames, seed, tuple(sorted(kw.items())))
    if key not in cache:
        clip, gt = generate(preset=preset, seed=seed, n_frames=n_frames, **kw)
        flow = dense_flow(clip.frames)
        cache[key] = (clip, gt, flow)
    return cache[key]
