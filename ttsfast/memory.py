"""Reusing freed memory instead of having the kernel map and zero it again on every call.

A clip's analysis allocates several arrays of tens to hundreds of MB (the decoded frames, the
flow, the model's inputs). The C allocator (glibc) maps each block over 32 MB freshly from the
kernel and gives it back when it is freed, so every call pays for the kernel zeroing the pages
again on first touch, which on a small virtual machine is a sizeable part of a warm call
(docs/performance.md). :func:`reuse_freed_memory` tells glibc to serve such blocks from its heap
and keep freed memory for the next call.

It changes the whole process's allocator, so it is the caller's choice: the command-line tools
(``ttsfast analyze``, ``cohort``, ``live``) make it, a program that embeds ttsfast may. The cost
is that the process keeps its peak memory after a call instead of returning it to the system.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import sys

__all__ = ["reuse_freed_memory", "MMAP_THRESHOLD_BYTES", "TRIM_THRESHOLD_BYTES"]

#: Blocks up to this size come from the heap instead of their own kernel mapping (glibc's
#: M_MMAP_THRESHOLD; its default grows to at most 32 MB).
MMAP_THRESHOLD_BYTES = 1 << 30
#: Free memory at the top of the heap is returned to the system only beyond this (M_TRIM_THRESHOLD).
TRIM_THRESHOLD_BYTES = (1 << 31) - 1
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def reuse_freed_memory() -> bool:
    """Make glibc keep freed memory for reuse (process-wide; see the module's docstring).

    Returns
    -------
    bool
        True when the allocator took both settings (Linux with glibc); False elsewhere (macOS,
        Windows, musl), where nothing is changed.
    """
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c") or "libc.so.6"
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok_mmap = mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
    ok_trim = mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1
    return ok_mmap and ok_trim
