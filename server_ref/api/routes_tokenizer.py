"""``GET /v1/models/{model}/tokenizer``: the model's exact tokenizer, for clients to rebuild.

The body (``sdk.types.TokenizerExport``) carries the pre-tokenizer regex, the special tokens,
the chat template, BOS/EOS and the context window the engine enforces; the mergeable ranks
(tiktoken's file format) are linked at ``tokenizer/ranks`` (relative to the export's URL)
with their sha256, or inlined with ``?ranks=inline``. Both are built once per tokenizer by
``sdk.tokens.export_tokenizer``, the code the client rebuilds them with.

An engine whose tokenizer is not a byte-level BPE vocabulary (the test suite's fake engine)
answers 404, as a server without this extension would, and clients fall back to estimates.
"""

from __future__ import annotations

import weakref
from typing import Any, Protocol, runtime_checkable

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response

from sdk.tokens import export_tokenizer
from sdk.types import TokenizerExport
from server_ref.api.errors import BadRequestError, NotFoundError
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


@router.get(
    "/v1/models/{model_id:path}/tokenizer/ranks",
    summary="The model's mergeable ranks in tiktoken's file format",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}}},
)
async def tokenizer_ranks(model_id: str, request: Request) -> Response:
    state = get_state(request)
    state.check_model(model_id)
    export, ranks_file = _export(state)
    etag = f'"{export.ranks_sha256}"'
    headers = {"ETag": etag, "Cache-Control": "public, max-age=86400"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(ranks_file, media_type="text/plain; charset=us-ascii", headers=headers)


@router.get(
    "/v1/models/{model_id:path}/tokenizer",
    summary="Everything a client needs to rebuild the model's tokenizer and chat template",
    response_model=TokenizerExport,
)
async def tokenizer_export(model_id: str, request: Request) -> JSONResponse:
    state = get_state(request)
    state.check_model(model_id)
    mode = request.query_params.get("ranks", "url")
    if mode not in ("url", "inline"):
        raise BadRequestError(f"ranks must be 'url' or 'inline', got {mode!r}.", param="ranks")
    export, ranks_file = _export(state)
    if mode == "inline":
        body = export.model_copy(update={"ranks": ranks_file.decode("ascii")})
    else:
        body = export.model_copy(update={"ranks_url": RANKS_PATH})
    return JSONResponse(body.model_dump(mode="json"))
