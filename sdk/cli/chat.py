"""``python -m sdk chat``: talk with a model; streams replies and keeps the conversation.

``/reset`` forgets the conversation, ``/exit`` or end of input leaves. Ctrl-C during a reply
stops that reply (the stream is closed, so the server stops generating) and returns to the
prompt; the unfinished turn is forgotten. The ``>`` prompt and the notes on stderr appear
only when stdin is a terminal, so piped input gets one reply line per message.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

from . import common
from .base import Command

if TYPE_CHECKING:
    from sdk._client import Client
    from sdk.types import ChatMessageParam

__all__ = ["COMMAND"]

COMMANDS_HELP = "/reset clears the history, /exit or Ctrl-D leaves, Ctrl-C stops a reply"


@dataclass
class Chat:
    """A conversation with one model; ``history`` holds the finished turns only."""

    client: Client
    model: str
    system: str | None
    sampling: dict[str, Any]
    show_usage: bool
    history: list[ChatMessageParam] = field(default_factory=list)

    def turn(self, text: str, out: TextIO) -> None:
        """Send ``text`` with the history and stream the reply; keep both once it finished."""
        user: ChatMessageParam = {"role": "user", "content": text}
        system: list[ChatMessageParam] = (
            [{"role": "system", "content": self.system}] if self.system else []
        )
        stream = self.client.chat.completions.create(
            model=self.model,
            messages=[*system, *self.history, user],
            stream=True,
            **common.stream_extras(self.show_usage),
            **self.sampling,
        )
        with stream:  # leaving it early (Ctrl-C, an error) closes the connection
            reply = common.echo(stream.text_stream, out)
            final = stream.get_final_completion()
        reason = final.choices[0].finish_reason if final.choices else None
        common.after_reply(out, reason, final.usage if self.show_usage else None)
        self.history += [user, {"role": "assistant", "content": reply}]


def _add(parser: argparse.ArgumentParser) -> None:
    common.add_model(parser)
    parser.add_argument("--system", default=None, help="a system message to start with")
    common.add_sampling(parser)


def _run(args: argparse.Namespace) -> int:
    from sdk._exceptions import APIError

    interactive = sys.stdin.isatty()
    sampling = common.sampling(args)  # bad flags fail before anything is sent
    with common.make_client(args) as client:
        model = common.pick_model(client, args.model)
        chat = Chat(client, model, args.system, sampling, args.usage)
        if interactive:
            common.note(f"chatting with {chat.model} at {client.base_url}; {COMMANDS_HELP}")
        for line in _user_lines(interactive):
            text = line.strip()
            if text == "/exit":
                break
            if text == "/reset":
                chat.history.clear()
                if interactive:
                    common.note("(history cleared)")
                continue
            if not text:
                continue
            try:
                chat.turn(text, sys.stdout)
            except KeyboardInterrupt:
                common.end_line(sys.stdout)
                common.note("(reply stopped)", always=True)
            except APIError as exc:
                if not interactive:  # a script must see the failure in the exit status
                    raise
                common.end_line(sys.stdout)
                print(f"error: {common.describe_api_error(exc, client)}", file=sys.stderr)
    return 0


def _user_lines(interactive: bool) -> Iterator[str]:
    """Lines typed or piped in, until EOF; Ctrl-C while waiting just asks again."""
    if interactive:
        with contextlib.suppress(ImportError):
            import readline  # noqa: F401  (line editing and history for input())
    while True:
        try:
            if interactive:
                if sys.stdout.isatty():
                    line = input("> ")
                else:  # stdout is a file or pipe: keep the prompt out of it
                    print("> ", end="", file=sys.stderr, flush=True)
                    line = input()
            else:
                line = sys.stdin.readline()
                if not line:
                    return
        except EOFError:
            if interactive:
                print(file=sys.stderr)
            return
        except KeyboardInterrupt:
            if interactive:
                print(file=sys.stderr)
            continue
        yield line


COMMAND = Command("chat", "talk with a model (streams; keeps the conversation)", _add, _run)
