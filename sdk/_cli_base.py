"""What both command lines (``python -m sdk`` and ``python -m server_ref``) are built from:
subcommands declared as ``Command`` entries, and an argparse parser whose errors become one
line and an exit status instead of usage text and ``SystemExit``."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NoReturn


class UsageError(ValueError):
    """Bad command-line input found after parsing; ``main`` exits with status 2."""


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
