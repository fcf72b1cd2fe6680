"""Command line of the SDK: ``python -m sdk COMMAND`` (or ``llm-sdk``), one module a command.

Examples::

    $ python -m sdk models                                  # the server's model ids
    $ python -m sdk chat --system "Answer in one sentence."  # interactive, streams replies
    $ printf 'Hi\\nWhat did I just say?\\n' | python -m sdk chat   # scripted: a reply per line
    $ python -m sdk complete "Once upon a time" --max-tokens 32
    $ python -m sdk count notes.txt                         # 1234 tokens (exact, ...)

The server is ``--base-url`` (env ``LLM_SDK_BASE_URL``, default the SDK's), the key
``--api-key`` (env ``LLM_SDK_API_KEY``). Without ``--model`` a command uses the first chat model
the server lists. Adding a command: a module with ``COMMAND = Command(name, help, add, run)``,
listed in ``COMMANDS`` below.

Failure policy (``base.run_main``, shared with ``python -m server_ref``): one ``error: ...``
line on stderr, never a traceback; exit status 1 for failures (server down, error statuses),
2 for bad usage, 130 when interrupted. ``--traceback`` shows the full traceback instead.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import chat, common, complete, count, models
from .base import (
    Command,
    OneLineParser,
    UsageError,
    add_subcommands,
    describe,
    program_name,
    run_main,
)

__all__ = ["COMMANDS", "build_parser", "main"]

COMMANDS: list[Command] = [chat.COMMAND, complete.COMMAND, count.COMMAND, models.COMMAND]


def build_parser() -> argparse.ArgumentParser:
    """The argparse tree. Connection options work before or after the subcommand."""
    parser = OneLineParser(
        prog=program_name("python -m sdk"),
        description="Talk to an OpenAI-compatible LLM server from the command line.",
    )
    common.add_connection(parser, None)
    # Repeated on each subcommand with SUPPRESS, so `chat --base-url URL` works and an
    # option given before the subcommand is not reset by the subparser's default.
    shared = OneLineParser(add_help=False)
    common.add_connection(shared, argparse.SUPPRESS)
    add_subcommands(parser, COMMANDS, parents=[shared])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), run the subcommand, return the exit status."""
    from sdk._exceptions import APIError, InvalidRequestParamsError, SDKError

    def explain(exc: BaseException) -> tuple[str, int]:
        if isinstance(exc, APIError):
            return common.describe_api_error(exc), 1
        usage = isinstance(exc, UsageError | InvalidRequestParamsError)
        return describe(exc), 2 if usage else 1

    return run_main(
        build_parser(),
        argv,
        expected=(SDKError, OSError, ValueError, RuntimeError),
        explain=explain,
        interrupted=lambda: common.end_line(sys.stdout),
    )
