"""The ``recforge`` command line: a thin layer that parses, calls the library and prints.

Each subcommand group lives in a module under :mod:`recforge.commands` exposing
``register(subparsers)``; this file lists those modules explicitly.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import traceback

#: Exit codes (documented in the README): 0 success, 2 a user error (one line on stderr, also
#: argparse's usage errors), 1 a bug (traceback and a request to report it), 130 interrupted.
EXIT_USER_ERROR = 2
EXIT_BUG = 1
EXIT_INTERRUPTED = 130

_COMMAND_MODULES: tuple[str, ...] = (
    "recforge.commands.core",
    "recforge.commands.compare",
    "recforge.commands.recommend",
    "recforge.commands.online",
    "recforge.commands.explain",
    "recforge.commands.serve",
    "recforge.commands.export",
    "recforge.commands.tune",
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
    except (ValueError, KeyError, OSError, RuntimeError) as exc:
        # user errors: library errors carry the file/line/column or key that went wrong;
        # OSError covers a missing, unreadable or unwritable path, a full disk, no network.
        # A KeyError's str() is the repr of its message, so take the message itself.
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"recforge: error: {_one_line(message)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("recforge: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception:
        # anything else is a bug in recforge: keep the traceback, ask for a report
        traceback.print_exc()
        print(
            "recforge: internal error (a bug in recforge, not in your input): please report it "
            "with the command and the traceback above",
            file=sys.stderr,
        )
        return EXIT_BUG


def _one_line(message: object) -> str:
    """``message`` on one line (an OSError from a library may span several); an OSError as
    ``file: reason``, without Python's ``[Errno N]``."""
    if isinstance(message, OSError) and message.strerror:
        where = [str(f) for f in (message.filename, message.filename2) if f is not None]
        message = ": ".join([" -> ".join(where), message.strerror] if where else [message.strerror])
    return " ".join(str(message).split())


if __name__ == "__main__":
    sys.exit(main())
