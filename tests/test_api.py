"""The README's Python API as a newcomer types it: after a bare ``import ttsfast`` in a fresh
interpreter, every ``ttsfast.<name>`` the README shows resolves, and the ones it calls are
callable. (``ttsfast.analyze`` once resolved only to the module of that name.)"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"

_RESOLVE = r"""
import functools, json, sys
import ttsfast
out = {}
for dotted, called in json.loads(sys.argv[1]):
    try:
        obj = functools.reduce(getattr, dotted.split(".")[1:], ttsfast)
    except AttributeError as exc:
        out[dotted] = f"missing ({exc})"
        continue
    if called and not callable(obj):
        out[dotted] = f"not callable ({type(obj).__name__})"
print(json.dumps(out))
"""


def _readme_names() -> list[tuple[str, bool]]:
    text = README.read_text(encoding="utf-8")
    found: dict[str, bool] = {}
    for m in re.finditer(r"\bttsfast((?:\.[A-Za-z]\w*)+)(\()?", text):
        name = "ttsfast" + m.group(1)
        found[name] = found.get(name, False) or m.group(2) is not None
    return sorted(found.items())


def test_readme_names_resolve_after_a_bare_import():
    names = _readme_names()
    assert ("ttsfast.analyze", True) in names  # the README's first example
    res = subprocess.run([sys.executable, "-c", _RESOLVE, json.dumps(names)], capture_output=True, text=True,
                         timeout=300, cwd=str(README.parent.parent))
    assert res.returncode == 0, res.stderr
    problems = json.loads(res.stdout.strip().splitlines()[-1])
    assert problems == {}, problems


def test_analyze_is_the_function_and_the_module_still_imports():
    import ttsfast
    from ttsfast.analyze import analyze

    assert ttsfast.analyze is analyze
    assert "analyze" in ttsfast.__all__


def test_unknown_attribute_is_a_plain_attribute_error():
    import ttsfast

    try:
        ttsfast.no_such_thing  # noqa: B018
    except AttributeError as exc:
        assert "no_such_thing" in str(exc)
    else:
        raise AssertionError("ttsfast.no_such_thing resolved")
