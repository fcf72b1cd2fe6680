"""``GET /v1/models/{model}/tokenizer``: the model's exact tokenizer, for clients to rebuild.

The body (``sdk.types.TokenizerExport``) carries the pre-tokenizer regex, the special tokens,
the chat template, BOS/EOS and the context window the engine enforces; the mergeable ranks
(tiktoken's file format) are linked at ``tokenizer/ranks`` (relative to the export's URL)
with their sha256, or inlined with ``?ranks=inline``. Both are built once per tokenizer by
``sdk.tokens.export_tokenizer``, the code the client rebuilds them with.

An engine whose tokenizer is not a byte-level BPE vocabulary (the test suite's fake engine)
answers 404, as a server without this extension would, and clients fall back to estimates.
The embedding model's export (format ``"hf-tokenizers"``, its ``tokenizer.json`` in the rank
file's place) comes from ``embedding_model``.
"""

from __future__ import annotations

import weakref
from typing import Annotated, Any, Literal, Protocol, runtime_checkable

from fastapi import APIRouter, Header, Request
from fastapi.responses import PlainTextResponse
from starlette.responses import JSONResponse, Response

from sdk.tokens import export_tokenizer
from sdk.types import TokenizerExport
from server_ref.api import embedding_model
from server_ref.api.errors import NotFoundError
from server_ref.api.openapi import errors
from server_ref.api.schemas import ModelPath
from server_ref.api.state import ServerState, get_state

router = APIRouter(tags=["extensions"])

RANKS_PATH = "tokenizer/ranks"  # relative to .../models/{model}/tokenizer


@runtime_checkable
class ExportableTokenizer(Protocol):
    """What ``sdk.tokens.ModelTokenizer`` offers beyond a ``PromptTokenizer``."""

    pattern: str
    mergeable_ranks: dict[bytes, int]
    special_tokens: dict[str, int]
    user_defined_tokens: frozenset[str]
    n_vocab: int
    bos_token_id: int | None
    eos_token_id: int | None
    bos_token: str
    eos_token: str
    add_bos: bool
    chat_template: str | None
    pre_tokenizer: str


# tokenizer -> (its export, rank file): built on first request, once per tokenizer object
_exports: weakref.WeakKeyDictionary[Any, tuple[TokenizerExport, bytes]] = (
    weakref.WeakKeyDictionary()
)


def _export(state: ServerState) -> tuple[TokenizerExport, bytes]:
    """The export for this app: its served name and the context window its engine enforces."""
    tokenizer = state.engine.tokenizer
    if not isinstance(tokenizer, ExportableTokenizer):
        raise NotFoundError(
            f"The tokenizer of '{state.served_model_name}' cannot be exported.",
            code="tokenizer_not_exportable",
        )
    cached = _exports.get(tokenizer)
    if cached is None:
        cached = export_tokenizer(
            model="",
            pattern=tokenizer.pattern,
            mergeable_ranks=tokenizer.mergeable_ranks,
            special_tokens=tokenizer.special_tokens,
            n_vocab=tokenizer.n_vocab,
            user_defined_tokens=tokenizer.user_defined_tokens,
            chat_template=tokenizer.chat_template,
            bos_token=tokenizer.bos_token,
            eos_token=tokenizer.eos_token,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            add_bos=tokenizer.add_bos,
            pre_tokenizer=tokenizer.pre_tokenizer,
        )
        _exports[tokenizer] = cached
    export, ranks_file = cached
    update = {
        "model": state.served_model_name,
        # what the engine accepts (the model's window capped by the KV cache), not the file's
        "context_length": state.engine.model_info.context_length,
    }
    return export.model_copy(update=update), ranks_file


_ETAG = {"description": "The rank file's sha256, quoted.", "schema": {"type": "string"}}


@router.get(
    "/v1/models/{model_id:path}/tokenizer/ranks",
    summary="The model's mergeable ranks in tiktoken's file format (or its tokenizer.json)",
    response_class=PlainTextResponse,
    responses={
        200: {
            "content": {
                "text/plain": {"schema": {"type": "string"}},
                "application/json": {"schema": {"type": "object"}},
            },
            "headers": {"ETag": {**_ETAG, "required": True}},
        },
        304: {"description": "If-None-Match named this file's ETag", "headers": {"ETag": _ETAG}},
        **errors(404),
    },
)
async def tokenizer_ranks(
    model_id: ModelPath,
    request: Request,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    state = get_state(request)
    if (embedder := state.embedder_named(model_id)) is not None:  # its tokenizer.json
        return embedding_model.tokenizer_file(embedder, request.headers.get("if-none-match"))
    state.check_model(model_id)
    export, ranks_file = _export(state)
    etag = f'"{export.ranks_sha256}"'
    headers = {"ETag": etag, "Cache-Control": "public, max-age=86400"}
    if if_none_match == etag:
        return Response(status_code=304, headers=headers)
    return Response(ranks_file, media_type="text/plain; charset=us-ascii", headers=headers)


@router.get(
    "/v1/models/{model_id:path}/tokenizer",
    summary="Everything a client needs to rebuild the model's tokenizer and chat template",
    response_model=TokenizerExport,
    responses=errors(400, 404),
)
async def tokenizer_export(
    model_id: ModelPath, request: Request, ranks: Literal["url", "inline"] = "url"
) -> JSONResponse:
    """The export; ``?ranks=inline`` puts the rank file in the body instead of linking it.

    A tokenizer that is not a byte-level BPE vocabulary is a 404 (code
    tokenizer_not_exportable), as on a server without this extension.
    """
    state = get_state(request)
    if (embedder := state.embedder_named(model_id)) is not None:
        body = embedding_model.export(embedder, inline=ranks == "inline", ranks_path=RANKS_PATH)
        return JSONResponse(body.model_dump(mode="json"))
    state.check_model(model_id)
    export, ranks_file = _export(state)
    if ranks == "inline":
        body = export.model_copy(update={"ranks": ranks_file.decode("ascii")})
    else:
        body = export.model_copy(update={"ranks_url": RANKS_PATH})
    return JSONResponse(body.model_dump(mode="json"))
