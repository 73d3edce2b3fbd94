"""Inference without PyTorch: analyze() with the ONNX model and the CAM saliency never imports
torch, and what needs it raises MissingDependencyError naming the extra (torch blocked in a
subprocess, as on an install without the [train] extra)."""
from __future__ import annotations

import subprocess
import sys
import tempfile
import textwrap

BLOCK = "import sys; sys.modules['torch'] = None  # as if PyTorch were not installed\n"


def _run(code: str, block: bool = True) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter outside the checkout (so that the INSTALLED package is
    imported, as the other tests do), with torch blocked unless ``block`` is False."""
    return subprocess.run([sys.executable, "-c", (BLOCK if block else "") + textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=300, cwd=tempfile.gettempdir())


def test_analyze_runs_without_torch():
    r = _run("""
        import ttsfast
        from ttsfast.demo import demo_clip_path
        res = ttsfast.analyze(demo_clip_path())
        assert res.status == "complete" and res.beat.saliency["temporal"].max() > 0, res.withheld
        assert res.mechanics["gls_pct"] is not None
        print("ok", round(res.p_tts, 3))
    """)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.startswith("ok")


def test_what_needs_torch_names_the_extra():
    r = _run("""
        import ttsfast
        from ttsfast.demo import demo_clip_path
        for call in (lambda: ttsfast.analyze(demo_clip_path(), saliency="gradcam"),
                     lambda: ttsfast.model.TwoArmNet):
            try:
                call()
            except ttsfast.errors.MissingDependencyError as exc:
                assert "ttsfast[train]" in str(exc) and isinstance(exc, ImportError), exc
            else:
                raise SystemExit("no error")
        print("ok")
    """)
    assert r.returncode == 0, r.stderr[-2000:]


def test_a_normal_analyze_does_not_import_torch():
    r = _run("""
        import sys, ttsfast
        from ttsfast.demo import demo_clip_path
        ttsfast.analyze(demo_clip_path())
        print("torch" in sys.modules)
    """, block=False)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "False"
