"""``python -m sdk models``: the server's model ids (``-l``: with context length and owner)."""

from __future__ import annotations

import argparse

from . import common
from .base import Command

__all__ = ["COMMAND"]


def _add(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-l", "--long", action="store_true", help="also show context length and owner"
    )


def _run(args: argparse.Namespace) -> int:
    with common.make_client(args) as client:
        models = client.models.list().data
    for model in models:
        if args.long:
            context = str(model.max_model_len) if model.max_model_len else "-"
            print(f"{model.id}\t{context}\t{model.owned_by or '-'}")
        else:
            print(model.id)
    return 0


COMMAND = Command("models", "list the server's models", _add, _run)
