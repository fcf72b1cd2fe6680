"""``python -m sdk complete``: continue a text prompt, streaming the raw completion as it
comes. Without ``--max-tokens`` it asks for ``DEFAULT_MAX_TOKENS``: a completion endpoint's
own default is 16 (OpenAI, vLLM, server_ref) or the whole context (some servers), neither
what someone continuing a text at a terminal wants."""

from __future__ import annotations

import argparse
import sys

from . import common
from .base import Command

__all__ = ["COMMAND", "DEFAULT_MAX_TOKENS"]

DEFAULT_MAX_TOKENS = 128


def _add(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("prompt", nargs="?", default="-", help="the text to continue (- : stdin)")
    common.add_model(parser)
    common.add_sampling(parser, max_tokens=DEFAULT_MAX_TOKENS)


def _run(args: argparse.Namespace) -> int:
    sampling = common.sampling(args)
    prompt = common.read_text("-") if args.prompt == "-" else args.prompt
    with common.make_client(args) as client:
        stream = client.completions.create(
            model=common.pick_model(client, args.model),
            prompt=prompt,
            stream=True,
            **common.stream_extras(args.usage),
            **sampling,
        )
        with stream:
            common.echo(stream.text_stream, sys.stdout)
            final = stream.get_final_completion()
    reason = final.choices[0].finish_reason if final.choices else None
    common.after_reply(sys.stdout, reason, final.usage if args.usage else None)
    return 0


COMMAND = Command("complete", "continue a text prompt (streams a raw completion)", _add, _run)
