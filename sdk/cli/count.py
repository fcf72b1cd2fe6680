"""``python -m sdk count``: the tokens of a file (or stdin) for a model, and how they were
counted — exact when the server exports its tokenizer or answers ``/tokenize``, otherwise an
estimate shown with a "~" and labelled as one (``Client.count_tokens`` makes the choice)."""

from __future__ import annotations

import argparse
import warnings

from . import common
from .base import Command

__all__ = ["COMMAND"]


def _add(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", nargs="?", default="-", help="the text to count (- : stdin)")
    common.add_model(parser)


def _run(args: argparse.Namespace) -> int:
    from sdk.tokens.hosted import TokenCountWarning

    text = common.read_text(args.file)
    with common.make_client(args) as client:
        model = common.pick_model(client, args.model)
        with warnings.catch_warnings():  # the label below says what the warning would
            warnings.simplefilter("ignore", TokenCountWarning)
            counted = client.count_tokens(model, prompt=text)
    how = {
        "server": f"exact, {model}'s own tokenizer",
        "tokenize": "exact, counted by the server",
        "hosted": f"estimate: the public encoding of hosted model {model}",
    }.get(counted.source, f"estimate: the server exports no tokenizer for {model}")
    print(f"{'' if counted.exact else '~'}{counted.tokens} tokens ({how})")
    return 0


COMMAND = Command("count", "count the tokens of a file or stdin for a model", _add, _run)
