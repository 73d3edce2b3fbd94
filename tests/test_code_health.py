"""Code a newcomer can live in (issue 23): a README that is a guide, short functions, short
comments on constants, one frames-per-beat constant. Static checks of the source tree."""
from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "ttsfast"

#: The longest function the package may hold, in lines of code (no blank, comment or docstring lines).
MAX_FUNCTION_LINES = 100
#: The longest comment block right above a module-level constant, in lines.
MAX_CONSTANT_COMMENT_LINES = 3


def _sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def code_lines(lines: list[str], node: ast.AST) -> int:
    """Lines of code of a function: its lines without blanks, comments and its docstring."""
    doc = None
    body = getattr(node, "body", [])
    if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
            and isinstance(body[0].value.value, str):
        doc = (body[0].lineno, body[0].end_lineno)
    n = 0
    for i in range(node.lineno, node.end_lineno + 1):
        if doc and doc[0] <= i <= doc[1]:
            continue
        s = lines[i - 1].strip()
        if s and not s.startswith("#"):
            n += 1
    return n


def test_code_lines_counts_what_it_should():
    src = 'def f(x):\n    """Doc.\n\n    More doc.\n    """\n    # a comment\n\n    y = x + 1\n    return y\n'
    node = ast.parse(src).body[0]
    assert code_lines(src.splitlines(), node) == 3  # def, y = ..., return


def test_readme_is_a_guide_of_at_most_200_lines():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 200
    for section in ("## Install", "## Python API", "## Command line", "## The report", "## Errors", "## Accuracy",
                    "## Performance"):
        assert section in text, section
    assert (REPO / "CHANGELOG.md").is_file()


def test_readme_links_resolve():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    for target in re.findall(r"\]\(((?:docs/|CHANGELOG)[^)#]+)\)", text):
        assert (REPO / target).is_file(), target


def test_no_function_in_the_package_is_longer_than_100_lines():
    long = []
    for p in _sources():
        src = p.read_text(encoding="utf-8")
        lines = src.splitlines()
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = code_lines(lines, node)
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{p.relative_to(REPO)}:{node.lineno} {node.name} {n}")
    assert not long, long


def test_constants_carry_at_most_three_comment_lines():
    long = []
    for p in _sources():
        src = p.read_text(encoding="utf-8")
        lines = src.splitlines()
        for node in ast.parse(src).body:
            if isinstance(node, (ast.Assign, ast.AnnAssign)):
                i, n = node.lineno - 2, 0
                while i >= 0 and lines[i].lstrip().startswith("#"):
                    n, i = n + 1, i - 1
                if n > MAX_CONSTANT_COMMENT_LINES:
                    long.append(f"{p.relative_to(REPO)}:{node.lineno} ({n} lines)")
    assert not long, long


def test_one_constant_for_the_frames_per_beat():
    """No default of 32 frames written as a literal: they all read ttsfast.constants.FRAMES_PER_BEAT."""
    pattern = re.compile(r"(\bn_resample|\bn|\bt|\bMODEL_T|\bN_BEAT)\s*(:\s*int\s*)?=\s*32\b|\(32, 128, 176\)")
    hits = [f"{p.relative_to(REPO)}:{i}" for p in _sources() if "synth" not in p.parts
            for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
            if pattern.search(line) and not line.lstrip().startswith("#")]
    assert not hits, hits
