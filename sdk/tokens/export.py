"""The tokenizer export: a model's tokenizer as data, and back.

The server calls :func:`export_tokenizer` with what it read from the model file; the client
calls :func:`tokenizer_from_export` with the JSON body and the rank file it downloaded. Both
ends use ``build_encoding`` with the same pattern, ranks and special tokens, so they encode
identically, placeholder ids for missing bytes included.

Two formats travel in the same body: ``"tiktoken-bpe"`` (a GGUF chat model's byte-level
BPE: pattern, special tokens, and tiktoken's rank file) and ``"hf-tokenizers"``
(:func:`export_hf_tokenizer`: an embedding model's ``tokenizer.json``, whose bytes take the
rank file's place: ``ranks`` / ``ranks_url`` / ``ranks_sha256``; read with the
``tokenizers`` library, ``sdk.tokens.hf``).

    >>> export, ranks_file = export_tokenizer(  # doctest: +SKIP
    ...     model="m", pattern=pat, mergeable_ranks=ranks, special_tokens=specials, n_vocab=n
    ... )
    >>> tokenizer_from_export(export, ranks_file).count("Hello")  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping

from sdk.tokens.encoding import dump_ranks, parse_ranks
from sdk.tokens.errors import TokenizerError
from sdk.tokens.tokenizer import ModelTokenizer, Tokenizer
from sdk.types import TokenizerExport

__all__ = [
    "HF_FORMAT",
    "SUPPORTED_FORMAT",
    "SUPPORTED_FORMATS",
    "check_export",
    "export_hf_tokenizer",
    "export_tokenizer",
    "sha256_hex",
    "tokenizer_from_export",
    "verify_ranks",
]

SUPPORTED_FORMAT = "tiktoken-bpe"
HF_FORMAT = "hf-tokenizers"
SUPPORTED_FORMATS = (SUPPORTED_FORMAT, HF_FORMAT)
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def export_tokenizer(
    *,
    model: str,
    pattern: str,
    mergeable_ranks: Mapping[bytes, int],
    special_tokens: Mapping[str, int],
    n_vocab: int,
    user_defined_tokens: Iterable[str] = (),
    chat_template: str | None = None,
    bos_token: str = "",
    eos_token: str = "",
    bos_token_id: int | None = None,
    eos_token_id: int | None = None,
    add_bos: bool = False,
    context_length: int | None = None,
    pre_tokenizer: str | None = None,
) -> tuple[TokenizerExport, bytes]:
    """The export body (ranks neither inline nor linked yet) and the rank file it describes."""
    ranks_file = dump_ranks(mergeable_ranks)
    export = TokenizerExport(
        model=model,
        format=SUPPORTED_FORMAT,
        pattern=pattern,
        special_tokens=dict(special_tokens),
        user_defined_tokens=sorted(user_defined_tokens),
        n_vocab=n_vocab,
        ranks_sha256=sha256_hex(ranks_file),
        chat_template=chat_template,
        bos_token=bos_token,
        eos_token=eos_token,
        bos_token_id=bos_token_id,
        eos_token_id=eos_token_id,
        add_bos=add_bos,
        context_length=context_length,
        pre_tokenizer=pre_tokenizer,
    )
    return export, ranks_file


def export_hf_tokenizer(
    *,
    model: str,
    tokenizer_json: bytes,
    special_tokens: Mapping[str, int],
    n_vocab: int,
    context_length: int | None = None,
) -> tuple[TokenizerExport, bytes]:
    """The export of a ``tokenizer.json`` model (format ``"hf-tokenizers"``) and the file it
    links: the ``tokenizer.json`` bytes themselves. ``special_tokens`` and ``n_vocab`` are
    informational (the file has them); ``context_length``: the longest input the model takes.
    """
    export = TokenizerExport(
        model=model,
        format=HF_FORMAT,
        special_tokens=dict(special_tokens),
        n_vocab=n_vocab,
        ranks_sha256=sha256_hex(tokenizer_json),
        context_length=context_length,
    )
    return export, tokenizer_json


def check_export(export: TokenizerExport) -> None:
    """Refuse an export this client cannot use, before downloading anything more."""
    _check_format(export)
    if export.ranks is None and not export.ranks_url:
        raise TokenizerError("the tokenizer export has neither 'ranks' nor 'ranks_url'")


def _check_format(export: TokenizerExport) -> None:
    if export.format not in SUPPORTED_FORMATS:
        raise TokenizerError(
            f"tokenizer format {export.format!r} of {export.model!r} is not supported "
            f"(this client reads {' and '.join(map(repr, SUPPORTED_FORMATS))})"
        )
    if export.format == SUPPORTED_FORMAT and not export.pattern:
        raise TokenizerError(f"the {SUPPORTED_FORMAT} export of {export.model!r} has no pattern")
    if not _SHA256_HEX.fullmatch(export.ranks_sha256):
        raise TokenizerError(f"ranks_sha256 {export.ranks_sha256!r} is not a hex sha256")
    if export.context_length is not None and export.context_length <= 0:
        raise TokenizerError(f"context_length must be positive, got {export.context_length}")


def verify_ranks(export: TokenizerExport, ranks_file: bytes) -> None:
    """``TokenizerError`` unless ``ranks_file`` hashes to the export's ``ranks_sha256``."""
    actual = sha256_hex(ranks_file)
    if actual != export.ranks_sha256:
        raise TokenizerError(
            f"the rank file of {export.model!r} is corrupt or was changed in transit: its "
            f"sha256 is {actual}, the tokenizer export says {export.ranks_sha256}"
        )


def tokenizer_from_export(
    export: TokenizerExport, ranks_file: bytes, *, model: str | None = None
) -> Tokenizer:
    """Rebuild the exact tokenizer from an export and its (sha256-verified) rank file: a
    ``ModelTokenizer``, or for ``"hf-tokenizers"`` an ``HFTokenizer`` (which needs the
    ``tokenizers`` package: ``TokenizerError`` naming the extra without it)."""
    _check_format(export)
    verify_ranks(export, ranks_file)
    if export.format == HF_FORMAT:
        from sdk.tokens.hf import HFTokenizer

        name = model or export.model
        return HFTokenizer.from_json(ranks_file, model=name, context_length=export.context_length)
    # add_bos is left off: the server's own templates write BOS text (see TokenizerExport)
    return ModelTokenizer(
        model=model or export.model,
        pattern=export.pattern,
        mergeable_ranks=parse_ranks(ranks_file),
        special_tokens=export.special_tokens,
        n_vocab=export.n_vocab,
        user_defined_tokens=export.user_defined_tokens,
        chat_template=export.chat_template,
        bos_token=export.bos_token,
        eos_token=export.eos_token,
        bos_token_id=export.bos_token_id,
        eos_token_id=export.eos_token_id,
        context_length=export.context_length,
        pre_tokenizer=export.pre_tokenizer,
    )
