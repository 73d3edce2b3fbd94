"""The ``ttsfast`` command line. Each subcommand is a pair of small functions:
``_add_<name>(subparsers)`` declares it and ``_cmd_<name>(args) -> int`` runs it."""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Callable

from . import __version__
from .errors import TTSFastError


def _add_info(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="versions, native build flags, threads, ONNX Runtime providers")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=_cmd_info)


def collect_info() -> dict:
    """Versions of ttsfast and its dependencies, native build flags, threads and providers."""
    import platform

    import numpy as np

    info: dict = {"ttsfast": __version__, "python": platform.python_version(),
                  "platform": platform.platform(), "numpy": np.__version__,
                  "cpu_count": os.cpu_count()}
    from ._nativelib import native

    info["native"] = dict(native.build_info())
    for mod in ("cv2", "numba", "onnx", "onnxruntime", "torch", "pydicom"):
        try:
            m = __import__(mod)
            info[mod] = getattr(m, "__version__", "?")
        except Exception as exc:  # noqa: BLE001 - report, never crash `info`
            info[mod] = f"unavailable ({type(exc).__name__}: {exc})"
    try:
        import onnxruntime as ort

        info["onnxruntime_providers"] = ort.get_available_providers()
    except Exception:  # noqa: BLE001
        info["onnxruntime_providers"] = []
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
    except Exception:  # noqa: BLE001
        pass
    try:
        import numba

        info["numba_threads"] = numba.config.NUMBA_NUM_THREADS
    except Exception:  # noqa: BLE001
        pass
    return info


def _cmd_info(args: argparse.Namespace) -> int:
    info = collect_info()
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        for k, v in info.items():
            print(f"{k:22s} {v}")
    return 0


#: Subcommand declarers, in the order `ttsfast --help` lists them.
_SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [_add_info]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ttsfast",
        description="Takotsubo syndrome vs anterior STEMI on apical echo clips, with saliency and mechanics.",
    )
    parser.add_argument("--version", action="version", version=f"ttsfast {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in _SUBCOMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except TTSFastError as exc:
        print(f"ttsfast: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
