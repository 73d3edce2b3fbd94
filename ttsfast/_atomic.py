"""Atomic output files: written beside their target and renamed into place only when complete,
so an error never leaves a half-written file behind."""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import InputError


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[tuple[Path, str]]:
    """Yield ``(path, tmp)``: write to ``tmp`` (a file beside ``path``, readable as a normal
    new file would be); on success it is renamed to ``path``, on any error it is removed."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"output path {path} is a directory; give a file name")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"output folder {parent} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        yield path, tmp
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as (final, tmp):
        Path(tmp).write_text(text, encoding="utf-8")
    return final
