"""Run-time choice of the copy of the native flow kernels (csrc/flow_kernels.hpp): the copy
built with -mavx2 (no FMA) must give exactly the flow of the baseline copy, and it must be
the one used by default on a CPU with AVX2. ``TTSFAST_FLOW_ISA=baseline`` forces the baseline.

Each copy runs in a subprocess of its own with the variable set as a user would set it."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ttsfast._nativelib import native

# Flow of every case, saved to argv[2], from the frames and mask in argv[1]; prints the copy used.
_RUN = r"""
import json, sys
import numpy as np
from ttsfast._nativelib import native
from ttsfast.flow import dense_flow
d = np.load(sys.argv[1])
frames, mask = d["frames"], d["mask"]
out = {}
for threads in (1, 2):
    out[f"nomask_t{threads}"] = dense_flow(frames, threads=threads)
    out[f"mask_t{threads}"] = dense_flow(frames, mask=mask, threads=threads)
out["gaussian_poly7_mask"] = dense_flow(frames[:6], mask=mask, gaussian=True, poly_n=7, poly_sigma=1.5,
                                        threads=2)
out["float_levels1"] = dense_flow(frames[:6].astype(np.float32) * 0.6, levels=1, threads=1)
np.savez(sys.argv[2], **out)
print(json.dumps({"isa": native.flow_isa()}))
"""


def _avx2_copy_built() -> bool:
    return "avx2" in native.build_info().get("flow_kernel_copies", "")


def _cpu_has_avx2() -> bool | None:
    """AVX2 in the CPU flags of /proc/cpuinfo (None where it cannot be read)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("flags"):
            return "avx2" in line.split(":", 1)[1].split()
    return None


def _sector_mask(h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    ang = np.degrees(np.arctan2(xx - w / 2, yy + 4.0))
    return (np.abs(ang) < 38) & (np.hypot(xx - w / 2, yy + 4.0) < 0.95 * h)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Flows of every case with the default copy and with the baseline forced."""
    from ttsfast import synth

    tmp = tmp_path_factory.mktemp("flow_isa")
    clip, _ = synth.generate("tts", seed=0, n_frames=12)
    frames = np.ascontiguousarray(clip.frames)
    inp = tmp / "in.npz"
    np.savez(inp, frames=frames, mask=_sector_mask(*frames.shape[1:]))
    res = {}
    for name, isa in (("default", None), ("baseline", "baseline")):
        env = {k: v for k, v in os.environ.items() if k != "TTSFAST_FLOW_ISA"}
        if isa:
            env["TTSFAST_FLOW_ISA"] = isa
        out = tmp / f"{name}.npz"
        # cwd: not the repository root, whose source tree (without the built extension)
        # "python -c" would import instead of the installed package
        p = subprocess.run([sys.executable, "-c", _RUN, str(inp), str(out)], env=env, cwd=tmp,
                           capture_output=True, text=True, timeout=600)
        assert p.returncode == 0, p.stderr[-3000:]
        info = json.loads(p.stdout.strip().splitlines()[-1])
        with np.load(out) as z:
            res[name] = (info["isa"], {k: z[k] for k in z.files})
    return res


def test_copies_give_identical_flow(runs):
    _, base = runs["baseline"]
    _, default = runs["default"]
    assert sorted(base) == sorted(default)
    for case in base:
        assert default[case].shape == base[case].shape, case
        assert np.array_equal(default[case], base[case]), (
            f"{case}: copies differ by up to {np.abs(default[case] - base[case]).max()} px")
    # not trivially equal: the clip moves
    assert float(np.abs(base["mask_t1"]).max()) > 0.1
    # threads change nothing either
    assert np.array_equal(base["mask_t1"], base["mask_t2"])
    assert np.array_equal(base["nomask_t1"], base["nomask_t2"])


def test_default_copy_is_avx2_where_the_cpu_has_it(runs):
    assert runs["baseline"][0] == "baseline"
    isa = runs["default"][0]
    assert isa in ("avx2", "baseline")
    has = _cpu_has_avx2()
    if not _avx2_copy_built():
        assert isa == "baseline"
        pytest.skip("this build has no AVX2 copy (not x86 with GCC/Clang)")
    if has is None:
        pytest.skip("no /proc/cpuinfo: the default copy is not checked")
    assert isa == ("avx2" if has else "baseline")


def test_env_variable_values(monkeypatch):
    # read at every call: no subprocess needed for these
    monkeypatch.setenv("TTSFAST_FLOW_ISA", "baseline")
    assert native.flow_isa() == "baseline"
    for v in ("", "auto"):
        monkeypatch.setenv("TTSFAST_FLOW_ISA", v)
        assert native.flow_isa() in ("avx2", "baseline")
    monkeypatch.setenv("TTSFAST_FLOW_ISA", "sse9")
    with pytest.raises(ValueError, match="TTSFAST_FLOW_ISA"):
        native.flow_isa()
    monkeypatch.setenv("TTSFAST_FLOW_ISA", "avx2")
    if _avx2_copy_built() and _cpu_has_avx2():
        assert native.flow_isa() == "avx2"
    else:
        with pytest.raises(RuntimeError, match="no AVX2 copy"):
            native.flow_isa()


def test_bad_env_value_is_an_input_error_of_dense_flow(monkeypatch):
    from ttsfast.errors import InputError
    from ttsfast.flow import dense_flow

    monkeypatch.setenv("TTSFAST_FLOW_ISA", "sse9")
    frames = np.zeros((3, 32, 32), np.uint8)
    with pytest.raises(InputError, match="TTSFAST_FLOW_ISA"):
        dense_flow(frames)
