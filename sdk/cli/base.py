"""What both command lines (``python -m sdk`` and ``python -m server_ref``) are built from.

* subcommands declared as ``Command`` entries (``add_subcommands``);
* an argparse parser whose errors become one line and an exit status instead of usage text
  and ``SystemExit`` (``OneLineParser``);
* ``run_main``: parse, run the subcommand, and turn every failure into one ``error: ...``
  line on stderr — status 2 for bad usage (argparse's complaints, ``UsageError``), 130 when
  interrupted, 1 otherwise; a bug is still one line, pointing at ``--traceback``, which shows
  the full traceback instead (for bug reports). Never a traceback by default.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

__all__ = [
    "ArgumentError",
    "Command",
    "OneLineParser",
    "UsageError",
    "add_subcommands",
    "describe",
    "fail",
    "program_name",
    "run_main",
]


class UsageError(ValueError):
    """Bad command-line input found after parsing; the command exits with status 2."""


class ArgumentError(Exception):
    """Raised by ``OneLineParser`` instead of printing usage and exiting."""


class OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise ArgumentError(f"{message} (see '{self.prog} --help')")


@dataclass(frozen=True)
class Command:
    """One subcommand: its name, one-line help, argument declarations and body."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def add_subcommands(
    parser: argparse.ArgumentParser,
    commands: Sequence[Command],
    parents: Sequence[argparse.ArgumentParser] = (),
) -> None:
    """One subparser per command; the chosen one's ``run`` lands in ``args.run``."""
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in commands:
        sub_parser = sub.add_parser(
            command.name, help=command.help, description=command.help, parents=list(parents)
        )
        command.add_arguments(sub_parser)
        sub_parser.set_defaults(run=command.run)


def program_name(module_form: str) -> str:
    """How the user started us, for usage lines: ``module_form`` (``python -m pkg``) when run
    as a module, else the script's name (``llm-sdk``)."""
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    return module_form if name in ("", "__main__.py", "-c") else name


def describe(exc: BaseException) -> str:
    """An expected failure as one line: the message, without Python's decorations."""
    if isinstance(exc, OSError) and exc.strerror and exc.filename is not None:
        text = f"{exc.strerror}: {exc.filename}"  # not "[Errno 2] ..."
    elif isinstance(exc, UnicodeDecodeError):
        text = f"the input is not UTF-8 text ({exc.reason} at byte {exc.start})"
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())


def fail(message: str, status: int) -> int:
    """Print ``error: message`` (one line) on stderr and return ``status``."""
    print(f"error: {' '.join(message.split())}", file=sys.stderr, flush=True)
    return status


def run_main(
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None,
    *,
    expected: tuple[type[BaseException], ...],
    explain: Callable[[BaseException], tuple[str, int]] | None = None,
    interrupted: Callable[[], None] | None = None,
) -> int:
    """Parse ``argv``, run the chosen command and return the exit status.

    ``expected``: the failures a user can cause (a bad file, a server that is down); they
    become one line, from ``explain`` (message and status) or ``describe`` (status 1, 2 for
    ``UsageError``). ``interrupted`` runs on Ctrl-C before the "interrupted" line.

    >>> raise SystemExit(run_main(build_parser(), None, expected=(OSError,)))  # doctest: +SKIP
    """
    try:
        args = parser.parse_args(argv)
    except ArgumentError as exc:
        return fail(str(exc), 2)
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except KeyboardInterrupt:
        if interrupted is not None:
            interrupted()
        return fail("interrupted", 130)
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except expected as exc:
        if args.traceback:
            raise
        if explain is not None:
            return fail(*explain(exc))
        return fail(describe(exc), 2 if isinstance(exc, UsageError) else 1)
    except Exception as exc:  # a bug: still one line, with the way to the details
        if args.traceback:
            raise
        return fail(f"internal error: {type(exc).__name__}: {exc} (rerun with --traceback)", 1)


def _quiet_broken_pipe() -> int:
    # The reader went away (`llm-sdk models | head -1`): not worth a message. Point stdout at
    # devnull so the interpreter's final flush does not complain either.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 1
