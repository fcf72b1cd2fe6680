"""What the SDK's commands share: connection and sampling options, the client, output."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from .base import UsageError

if TYPE_CHECKING:
    from sdk._client import Client
    from sdk._exceptions import APIError
    from sdk.types import CompletionUsage

__all__ = [
    "add_connection",
    "add_model",
    "add_sampling",
    "after_reply",
    "describe_api_error",
    "echo",
    "end_line",
    "make_client",
    "note",
    "pick_model",
    "read_text",
    "sampling",
    "stream_extras",
]


def add_connection(parser: argparse.ArgumentParser, default: Any) -> None:
    parser.add_argument(
        "--base-url",
        default=default,
        help="server URL, e.g. http://127.0.0.1:8000/v1 (env LLM_SDK_BASE_URL)",
    )
    parser.add_argument("--api-key", default=default, help="Bearer key (env LLM_SDK_API_KEY)")
    parser.add_argument("--timeout", type=float, default=default, help="seconds per network step")
    parser.add_argument("--max-retries", type=int, default=default, help="retries of a failed call")
    parser.add_argument(
        "--traceback",
        action="store_true",
        default=False if default is None else default,
        help="show full tracebacks instead of one-line errors",
    )


def add_model(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", "-m", default=None, help="model id (default: the first listed)")


def add_sampling(parser: argparse.ArgumentParser, max_tokens: int | None = None) -> None:
    parser.add_argument("--temperature", "-t", type=float, default=None, help="0 = greedy")
    default = f" (default: {max_tokens})" if max_tokens is not None else ""
    parser.add_argument(
        "--max-tokens", type=int, default=max_tokens, help=f"cap on the reply length{default}"
    )
    parser.add_argument(
        "--usage", action="store_true", help="print token usage after each reply (on stderr)"
    )


def sampling(args: argparse.Namespace) -> dict[str, Any]:
    if args.max_tokens is not None and args.max_tokens <= 0:
        raise UsageError("--max-tokens must be positive")
    if args.temperature is not None and args.temperature < 0:
        raise UsageError("--temperature must be >= 0")
    chosen = {"temperature": args.temperature, "max_tokens": args.max_tokens}
    return {name: value for name, value in chosen.items() if value is not None}


def stream_extras(show_usage: bool) -> dict[str, Any]:
    # Asked for only when shown: a server that does not know stream_options may refuse it.
    return {"stream_options": {"include_usage": True}} if show_usage else {}


def make_client(args: argparse.Namespace) -> Client:
    from sdk._client import Client

    if args.timeout is not None and args.timeout <= 0:
        raise UsageError("--timeout must be positive")
    if args.max_retries is not None and args.max_retries < 0:
        raise UsageError("--max-retries must be >= 0")
    options: dict[str, Any] = {"base_url": args.base_url, "api_key": args.api_key}
    if args.timeout is not None:
        options["timeout"] = args.timeout
    try:
        return Client(max_retries=args.max_retries, **options)
    except ValueError as exc:  # a malformed base URL
        raise UsageError(str(exc)) from None


def pick_model(client: Client, model: str | None) -> str:
    """``model``, else the first model the server lists that chats (a card without
    ``capabilities`` may: servers other than ours do not say)."""
    if model:
        return model
    models = client.models.list().data
    chat = [m for m in models if m.capabilities is None or "chat" in m.capabilities]
    if not chat:
        what = "models" if not models else "chat models"
        raise RuntimeError(f"the server lists no {what}; pass --model")
    return chat[0].id


def read_text(file: str) -> str:
    """The text of a file, or of stdin for ``-``; UTF-8 either way."""
    if file == "-":
        raw = getattr(sys.stdin, "buffer", None)  # bytes, whatever the locale says
        return sys.stdin.read() if raw is None else raw.read().decode("utf-8")
    return Path(file).read_text(encoding="utf-8")


def echo(texts: Iterator[str], out: TextIO) -> str:
    """Write each piece of text as it arrives; return all of it."""
    parts = []
    for text in texts:
        out.write(text)
        out.flush()
        parts.append(text)
    return "".join(parts)


def after_reply(out: TextIO, reason: str | None, usage: CompletionUsage | None) -> None:
    out.write("\n")
    out.flush()
    if reason == "length":
        note("(reply cut off at the token limit)")
    if usage is not None:
        note(
            f"[usage] prompt_tokens={usage.prompt_tokens} "
            f"completion_tokens={usage.completion_tokens}",
            always=True,
        )


def end_line(out: TextIO) -> None:
    out.write("\n")
    out.flush()


def note(text: str, *, always: bool = False) -> None:
    """A remark for the person at the terminal; kept out of scripted runs unless ``always``."""
    if always or sys.stdin.isatty():
        print(text, file=sys.stderr, flush=True)


def describe_api_error(exc: APIError, client: Client | None = None) -> str:
    """One readable line for any SDK error: what failed, where, and what to try."""
    from sdk._exceptions import (
        APIConnectionError,
        APIStatusError,
        APITimeoutError,
        AuthenticationError,
    )

    where = str(client.base_url) if client is not None else "the server"
    if exc.request is not None:
        where = str(exc.request.url.copy_with(query=None))
    if isinstance(exc, APITimeoutError):
        return f"no answer from {where} in time (raise --timeout?)"
    if isinstance(exc, APIConnectionError):
        cause = re.sub(r"^\[Errno -?\d+\]\s*", "", str(exc.__cause__ or "")) or exc.message
        hint = " (is the server running? set --base-url or LLM_SDK_BASE_URL)"
        return f"cannot reach {where}: {cause}{hint}"
    if isinstance(exc, APIStatusError):
        text = re.sub(r"^Error code: \d+ - ", "", exc.message)
        hint = (
            " (pass --api-key or set LLM_SDK_API_KEY)"
            if isinstance(exc, AuthenticationError)
            else ""
        )
        return f"{where} answered {exc.status_code}: {text}{hint}"
    return f"{where}: {exc.message}"
