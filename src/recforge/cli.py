"""The ``recforge`` command line: a thin layer that parses, calls the library and prints.

Each subcommand group lives in a module under :mod:`recforge.commands` exposing
``register(subparsers)``; this file lists those modules explicitly.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

_COMMAND_MODULES: tuple[str, ...] = (
    "recforge.commands.core",
    "recforge.commands.compare",
    "recforge.commands.recommend",
    "recforge.commands.online",
    "recforge.commands.explain",
    "recforge.commands.serve",
    "recforge.commands.export",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="recforge", description="Deep recommendation models of the classic lineage."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for module_name in _COMMAND_MODULES:
        importlib.import_module(module_name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.handler(args) or 0)
    except (ValueError, KeyError, FileNotFoundError, RuntimeError) as exc:
        # library errors carry the file/line/column or key that went wrong; a KeyError's str()
        # is the repr of its message, so take the message itself
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"recforge: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
