"""The ``llmbo`` command line: each subcommand lives in its own module with ``register()``."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from typing import NoReturn

from llmbo.errors import LlmboError

#: Modules under ``llmbo.cli`` that define ``register(subparsers)``.
COMMAND_MODULES = ("run", "study", "bench", "hpo", "catalyst", "presets", "report")


class _Parser(argparse.ArgumentParser):
    """argparse, with its error messages made safe to print (they echo what was typed)."""

    def error(self, message: str) -> NoReturn:
        from llmbo.cli.common import safe_text

        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {safe_text(message)}\n")


def build_parser() -> argparse.ArgumentParser:
    from llmbo import __version__

    parser = _Parser(
        prog="llmbo",
        description="Bayesian optimisation over text-described candidates with LLM deep kernels.",
    )
    parser.add_argument("--version", action="version", version=f"llmbo {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"llmbo.cli.{name}")
        except ModuleNotFoundError as exc:  # a command module not written yet
            if exc.name == f"llmbo.cli.{name}":
                continue
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code (0 ok, 2 bad input, 1 other llmbo error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    # `--study=--` gives a one-value option the empty list on Python 3.11 (its type never
    # runs): refuse it as argparse refuses a missing value.
    command = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for action in command.choices[args.command]._actions:
        if (
            type(action) is argparse._StoreAction
            and action.nargs is None
            and getattr(args, action.dest, None) == []
        ):
            parser.error(f"argument {action.option_strings[0]}: expected one value, got '--'")
    from llmbo.cli.common import SafeWriter

    stdout = sys.stdout
    sys.stdout = SafeWriter(stdout)  # type: ignore[assignment]
    try:
        return _run(args)
    finally:
        sys.stdout = stdout


def _run(args: argparse.Namespace) -> int:
    from llmbo.cli.common import SafeFormatter

    handler = logging.StreamHandler()
    handler.setFormatter(SafeFormatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, handlers=[handler])
    try:
        return int(args.func(args) or 0)
    except LlmboError as exc:
        from llmbo.cli.common import safe_text
        from llmbo.errors import InputError

        print(f"llmbo {args.command}: error: {safe_text(exc)}", file=sys.stderr)
        return 2 if isinstance(exc, InputError) else 1
    except KeyboardInterrupt:
        note = getattr(args, "interrupted", "everything measured so far is saved.")
        print(f"llmbo {args.command}: interrupted; {note}", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`llmbo status | head`): stop quietly, as other tools do.
        # Point stdout at /dev/null so the interpreter's final flush cannot fail again.
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
