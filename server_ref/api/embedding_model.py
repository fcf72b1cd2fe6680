"""What the shared routes answer for the embedding model: its card, ``/tokenize`` and
``/detokenize`` with its WordPiece tokenizer, and its tokenizer export.

The routes (``routes_misc``, ``routes_tokenizer``) ask ``ServerState.is_embedding_model``
and hand the request here, so the chat model's code paths stay as they were. The export has
format ``"hf-tokenizers"``: the model's ``tokenizer.json`` bytes travel where a chat model's
rank file does (``ranks`` inline, or ``ranks_url`` with ``ranks_sha256``), and a client reads
them with the same ``sdk.tokens.hf`` code the server does.
"""

from __future__ import annotations

from starlette.responses import Response

from sdk.tokens.export import export_hf_tokenizer
from sdk.types import DetokenizeResponse, Model, TokenizeResponse, TokenizerExport
from server_ref.api.errors import BadRequestError
from server_ref.api.schemas import ServerDetokenizeRequest, ServerTokenizeRequest
from server_ref.engine.embedder import Embedder

__all__ = ["card", "detokenize", "export", "tokenize", "tokenizer_file"]

OWNED_BY = "llm-sdk"


def card(embedder: Embedder) -> Model:
    """The embedding model's card: 384 dimensions, 256 tokens per input (all-MiniLM-L6-v2)."""
    info = embedder.info
    return Model(
        id=info.id,
        created=info.created,
        owned_by=OWNED_BY,
        max_model_len=info.max_tokens,
        capabilities=["embeddings"],
        dimensions=info.dimensions,
    )


def tokenize(embedder: Embedder, req: ServerTokenizeRequest) -> TokenizeResponse:
    """The ids the model sees for ``req.prompt``, untruncated; ``[CLS]``/``[SEP]`` unless
    ``add_special_tokens`` is false. Chat messages are a 400: the model has no template."""
    if req.messages is not None:
        raise BadRequestError(
            f"'{embedder.info.id}' is an embedding model: it has no chat template to render "
            "messages with; send a prompt.",
            param="messages",
        )
    tokenizer = embedder.tokenizer
    ids = tokenizer.encode(req.prompt or "", add_special_tokens=req.add_special_tokens is not False)
    return TokenizeResponse(tokens=ids, count=len(ids), max_model_len=embedder.info.max_tokens)


def detokenize(embedder: Embedder, req: ServerDetokenizeRequest) -> DetokenizeResponse:
    """The text of ``req.tokens`` (special tokens left out, WordPiece pieces joined)."""
    vocab = embedder.info.vocab_size
    bad = next((t for t in req.tokens if not 0 <= t < vocab), None)
    if bad is not None:
        raise BadRequestError(
            f"tokens: token id {bad} is outside the vocabulary [0, {vocab}).", param="tokens"
        )
    return DetokenizeResponse(prompt=embedder.tokenizer.decode(req.tokens))


def export(embedder: Embedder, *, inline: bool, ranks_path: str) -> TokenizerExport:
    """The ``"hf-tokenizers"`` export: ``tokenizer.json`` inline, or linked at ``ranks_path``."""
    tokenizer = embedder.tokenizer
    body, _ = export_hf_tokenizer(
        model=embedder.info.id,
        tokenizer_json=tokenizer.source,
        special_tokens=tokenizer.special_tokens,
        n_vocab=tokenizer.vocab_size,
        context_length=embedder.info.max_tokens,
    )
    if inline:
        return body.model_copy(update={"ranks": tokenizer.source.decode("utf-8")})
    return body.model_copy(update={"ranks_url": ranks_path})


def tokenizer_file(embedder: Embedder, if_none_match: str | None) -> Response:
    """``tokenizer.json`` itself, at the export's ``ranks_url`` (cacheable by its sha256)."""
    etag = f'"{embedder.tokenizer.sha256}"'
    headers = {"ETag": etag, "Cache-Control": "public, max-age=86400"}
    if if_none_match == etag:
        return Response(status_code=304, headers=headers)
    return Response(embedder.tokenizer.source, media_type="application/json", headers=headers)
