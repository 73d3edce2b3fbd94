"""ttsfast.reuse_freed_memory(): freed blocks are reused instead of being mapped and zeroed anew."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

_CHILD = textwrap.dedent("""
    import resource, sys
    import numpy as np
    import ttsfast

    def faults():
        r0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        a = np.empty(200 * 2**20, np.uint8)
        a.fill(1)
        del a
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - r0

    applied = ttsfast.reuse_freed_memory() if sys.argv[1] == "reuse" else None
    print(applied, *[faults() for _ in range(3)])
""")


def _run(mode: str, cwd: Path) -> list[str]:
    # cwd: not the repository root, whose source tree "python -c" would import
    out = subprocess.run([sys.executable, "-c", _CHILD, mode], capture_output=True, text=True, timeout=120, cwd=cwd)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.split()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator only")
def test_second_allocation_reuses_the_first(tmp_path):
    plain = _run("plain", tmp_path)
    reuse = _run("reuse", tmp_path)
    assert reuse[0] == "True"
    # without: every 200 MB allocation is a fresh mapping, faulted in again (hundreds of faults
    # with huge pages, ~51,000 without); with: the freed block is reused, nothing to fault in
    assert min(int(v) for v in plain[2:]) > 100
    assert max(int(v) for v in reuse[2:]) < 0.05 * int(reuse[1])


def test_elsewhere_it_changes_nothing(monkeypatch):
    import ttsfast.memory as memory

    monkeypatch.setattr(memory.sys, "platform", "darwin")
    assert memory.reuse_freed_memory() is False
