"""Command line of the SDK: ``python -m sdk COMMAND`` (or ``llm-sdk``).

Examples::

    $ python -m sdk models                                  # the server's model ids
    $ python -m sdk chat --system "Answer in one sentence."  # interactive, streams replies
    $ printf 'Hi\\nWhat did I just say?\\n' | python -m sdk chat   # scripted: a reply per line
    $ python -m sdk complete "Once upon a time" --max-tokens 32
    $ python -m sdk count notes.txt                         # 1234 tokens (exact, ...)

The server is ``--base-url`` (env ``LLM_SDK_BASE_URL``, default the SDK's), the key
``--api-key`` (env ``LLM_SDK_API_KEY``). Without ``--model`` a command uses the first model the
server lists.

``chat`` keeps the conversation: ``/reset`` forgets it, ``/exit`` or end of input leaves.
Ctrl-C during a reply stops that reply (the stream is closed, so the server stops generating)
and returns to the prompt; the unfinished turn is forgotten. The ``>`` prompt and the notes on
stderr appear only when stdin is a terminal, so piped input gets one reply line per message.

Failure policy, as ``python -m server_ref``: one ``error: ...`` line on stderr, never a
traceback; exit status 1 for failures (server down, error statuses), 2 for bad usage, 130 when
interrupted. ``--traceback`` shows the full traceback instead, for bug reports.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from sdk._client import Client
    from sdk._exceptions import APIError
    from sdk.types import ChatMessageParam, CompletionUsage

from sdk._cli_base import ArgumentError, Command, OneLineParser, UsageError, add_subcommands

__all__ = ["build_parser", "main"]

COMMANDS_HELP = "/reset clears the history, /exit or Ctrl-D leaves, Ctrl-C stops a reply"


# -- chat ----------------------------------------------------------------------------------------


@dataclass
class _Chat:
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
            **_stream_extras(self.show_usage),
            **self.sampling,
        )
        with stream:  # leaving it early (Ctrl-C, an error) closes the connection
            reply = _echo(stream.text_stream, out)
            final = stream.get_final_completion()
        reason = final.choices[0].finish_reason if final.choices else None
        _after_reply(out, reason, final.usage if self.show_usage else None)
        self.history += [user, {"role": "assistant", "content": reply}]


def _add_chat(parser: argparse.ArgumentParser) -> None:
    _add_model(parser)
    parser.add_argument("--system", default=None, help="a system message to start with")
    _add_sampling(parser)


def _run_chat(args: argparse.Namespace) -> int:
    from sdk._exceptions import APIError

    interactive = sys.stdin.isatty()
    sampling = _sampling(args)  # bad flags fail before anything is sent
    with _client(args) as client:
        chat = _Chat(client, _pick_model(client, args.model), args.system, sampling, args.usage)
        if interactive:
            _note(f"chatting with {chat.model} at {client.base_url}; {COMMANDS_HELP}")
        for line in _user_lines(interactive):
            text = line.strip()
            if text == "/exit":
                break
            if text == "/reset":
                chat.history.clear()
                if interactive:
                    _note("(history cleared)")
                continue
            if not text:
                continue
            try:
                chat.turn(text, sys.stdout)
            except KeyboardInterrupt:
                _end_line(sys.stdout)
                _note("(reply stopped)", always=True)
            except APIError as exc:
                if not interactive:  # a script must see the failure in the exit status
                    raise
                _end_line(sys.stdout)
                _error(_describe_api_error(exc, client))
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


# -- complete ------------------------------------------------------------------------------------


def _add_complete(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("prompt", nargs="?", default="-", help="the text to continue (- : stdin)")
    _add_model(parser)
    _add_sampling(parser)


def _run_complete(args: argparse.Namespace) -> int:
    sampling = _sampling(args)
    prompt = _read_text("-") if args.prompt == "-" else args.prompt
    with _client(args) as client:
        stream = client.completions.create(
            model=_pick_model(client, args.model),
            prompt=prompt,
            stream=True,
            **_stream_extras(args.usage),
            **sampling,
        )
        with stream:
            _echo(stream.text_stream, sys.stdout)
            final = stream.get_final_completion()
    reason = final.choices[0].finish_reason if final.choices else None
    _after_reply(sys.stdout, reason, final.usage if args.usage else None)
    return 0


# -- count ---------------------------------------------------------------------------------------


def _add_count(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", nargs="?", default="-", help="the text to count (- : stdin)")
    _add_model(parser)


def _run_count(args: argparse.Namespace) -> int:
    text = _read_text(args.file)
    with _client(args) as client:
        model = _pick_model(client, args.model)
        count, how = _count_tokens(client, model, text)
    print(f"{count} tokens ({how})")
    return 0


def _count_tokens(client: Client, model: str, text: str) -> tuple[str, str]:
    """``text``'s token count for ``model`` ("~" in front of an estimate) and how it was made.

    Exact when the server exports its tokenizer (counted here, with the model's own
    vocabulary) or answers ``POST /tokenize``; otherwise an estimate, and labelled as one.
    """
    from sdk._exceptions import APIError
    from sdk.tokens import TokenCountWarning
    from sdk.tokens.remote import means_unsupported

    with warnings.catch_warnings():  # the label below says what the warning would
        warnings.simplefilter("ignore", TokenCountWarning)
        tokenizer = client.tokenizer(model)
    if tokenizer.exact:
        return str(tokenizer.count(text)), f"exact, {model}'s own tokenizer"
    try:
        return str(client.tokenize(model=model, prompt=text).count), "exact, counted by the server"
    except APIError as exc:
        if not means_unsupported(exc):  # "no such endpoint" falls back; other errors don't
            raise
    if tokenizer.source == "hosted":
        how = f"estimate: the public encoding of hosted model {model}"
    else:
        how = f"estimate: the server exports no tokenizer for {model}"
    return f"~{tokenizer.count(text)}", how


# -- models --------------------------------------------------------------------------------------


def _add_models(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-l", "--long", action="store_true", help="also show context length and owner"
    )


def _run_models(args: argparse.Namespace) -> int:
    with _client(args) as client:
        models = client.models.list().data
    for model in models:
        if args.long:
            context = str(model.max_model_len) if model.max_model_len else "-"
            print(f"{model.id}\t{context}\t{model.owned_by or '-'}")
        else:
            print(model.id)
    return 0


# -- shared pieces -------------------------------------------------------------------------------


def _add_model(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", "-m", default=None, help="model id (default: the first listed)")


def _add_sampling(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--temperature", "-t", type=float, default=None, help="0 = greedy")
    parser.add_argument("--max-tokens", type=int, default=None, help="cap on the reply length")
    parser.add_argument(
        "--usage", action="store_true", help="print token usage after each reply (on stderr)"
    )


def _sampling(args: argparse.Namespace) -> dict[str, Any]:
    if args.max_tokens is not None and args.max_tokens <= 0:
        raise UsageError("--max-tokens must be positive")
    if args.temperature is not None and args.temperature < 0:
        raise UsageError("--temperature must be >= 0")
    sampling = {"temperature": args.temperature, "max_tokens": args.max_tokens}
    return {name: value for name, value in sampling.items() if value is not None}


def _stream_extras(show_usage: bool) -> dict[str, Any]:
    # Asked for only when shown: a server that does not know stream_options may refuse it.
    return {"stream_options": {"include_usage": True}} if show_usage else {}


def _client(args: argparse.Namespace) -> Client:
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


def _pick_model(client: Client, model: str | None) -> str:
    if model:
        return model
    models = client.models.list().data
    if not models:
        raise RuntimeError("the server lists no models; pass --model")
    return models[0].id


def _read_text(file: str) -> str:
    """The text of a file, or of stdin for ``-``; UTF-8 either way."""
    if file == "-":
        raw = getattr(sys.stdin, "buffer", None)  # bytes, whatever the locale says
        return sys.stdin.read() if raw is None else raw.read().decode("utf-8")
    return Path(file).read_text(encoding="utf-8")


def _echo(texts: Iterator[str], out: TextIO) -> str:
    """Write each piece of text as it arrives; return all of it."""
    parts = []
    for text in texts:
        out.write(text)
        out.flush()
        parts.append(text)
    return "".join(parts)


def _after_reply(out: TextIO, reason: str | None, usage: CompletionUsage | None) -> None:
    out.write("\n")
    out.flush()
    if reason == "length":
        _note("(reply cut off at the token limit)")
    if usage is not None:
        _note(
            f"[usage] prompt_tokens={usage.prompt_tokens} "
            f"completion_tokens={usage.completion_tokens}",
            always=True,
        )


def _end_line(out: TextIO) -> None:
    out.write("\n")
    out.flush()


def _note(text: str, *, always: bool = False) -> None:
    """A remark for the person at the terminal; kept out of scripted runs unless ``always``."""
    if always or sys.stdin.isatty():
        print(text, file=sys.stderr, flush=True)


# -- errors --------------------------------------------------------------------------------------


def _describe_api_error(exc: APIError, client: Client | None = None) -> str:
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


# -- registration --------------------------------------------------------------------------------


COMMANDS: list[Command] = [
    Command("chat", "talk with a model (streams; keeps the conversation)", _add_chat, _run_chat),
    Command(
        "complete",
        "continue a text prompt (streams a raw completion)",
        _add_complete,
        _run_complete,
    ),
    Command("count", "count the tokens of a file or stdin for a model", _add_count, _run_count),
    Command("models", "list the server's models", _add_models, _run_models),
]


def _add_connection(parser: argparse.ArgumentParser, default: Any) -> None:
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


def build_parser() -> argparse.ArgumentParser:
    """The argparse tree. Connection options work before or after the subcommand."""
    parser = OneLineParser(
        prog=_prog(),
        description="Talk to an OpenAI-compatible LLM server from the command line.",
    )
    _add_connection(parser, None)
    # Repeated on each subcommand with SUPPRESS, so `chat --base-url URL` works and an
    # option given before the subcommand is not reset by the subparser's default.
    common = OneLineParser(add_help=False)
    _add_connection(common, argparse.SUPPRESS)
    add_subcommands(parser, COMMANDS, parents=[common])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), run the subcommand, return the exit status."""
    from sdk._exceptions import APIError, InvalidRequestParamsError, SDKError

    try:
        args = build_parser().parse_args(argv)
    except ArgumentError as exc:
        return _fail(str(exc), 2)
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except KeyboardInterrupt:
        _end_line(sys.stdout)
        return _fail("interrupted", 130)
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except (SDKError, OSError, ValueError, RuntimeError) as exc:
        if args.traceback:
            raise
        if isinstance(exc, APIError):
            return _fail(_describe_api_error(exc), 1)
        usage = isinstance(exc, UsageError | InvalidRequestParamsError)
        return _fail(_describe(exc), 2 if usage else 1)
    except Exception as exc:  # a bug: still one line, with the way to the details
        if args.traceback:
            raise
        return _fail(f"internal error: {type(exc).__name__}: {exc} (rerun with --traceback)", 1)


def _prog() -> str:
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    return "python -m sdk" if name in ("", "__main__.py", "-c") else name


def _fail(message: str, status: int) -> int:
    _error(message)
    return status


def _error(message: str) -> None:
    print(f"error: {' '.join(message.split())}", file=sys.stderr, flush=True)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror and exc.filename is not None:
        return f"{exc.strerror}: {exc.filename}"  # not "[Errno 2] ..."
    if isinstance(exc, UnicodeDecodeError):
        return f"the input is not UTF-8 text ({exc.reason} at byte {exc.start})"
    return str(exc) or type(exc).__name__


def _quiet_broken_pipe() -> int:
    # The reader went away (`llm-sdk models | head -1`): not worth a message. Point stdout at
    # devnull so the interpreter's final flush does not complain either.
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 1
