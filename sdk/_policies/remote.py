"""Getting a model's tokenizer from its server, once: the flows behind ``client.tokenizer()``.

``tokenizer_flow`` (a sans-I/O flow, driven by ``Client`` and ``AsyncClient`` alike):

1. the client's registry already has it -> done, no request;
2. ``GET {base_url}/models/{model}/tokenizer`` -> the export (pattern, special tokens,
   template, context length, the rank file's sha256);
3. the rank file (or an embedding model's ``tokenizer.json``): inline in the export, else
   from the disk cache (verified against the sha256 on every load; a corrupt file is
   deleted), else ``GET ranks_url`` (same server only, verified, then cached);
4. an export in ``tokenizer.json`` form (``"hf-tokenizers"``, an embedding model's) without
   the ``tokenizers`` package to read it: an estimate, with a ``TokenCountWarning`` naming
   the extra (``llm-sdk[hf]``); counts made through the client then ask ``/tokenize``;
5. a server without the endpoint (404/405/501..., as llama.cpp, vLLM and hosted APIs answer):
   a well-known hosted model name gets its public tiktoken encoding, anything else the best
   estimate, with a ``TokenCountWarning``; both ``exact=False``. The estimate's context window
   is the one the server reports: vLLM's model card (``max_model_len``), else llama.cpp's
   ``GET /props`` (``n_ctx``).

A server without the export may still count exactly with its own endpoints
(``dialects.server_count_flow``); budgets use them when the local count is an estimate.
"""

from __future__ import annotations

import warnings
from typing import Any
from urllib.parse import quote

import httpx

from sdk._exceptions import (
    APIResponseValidationError,
    APIStatusError,
    InvalidRequestParamsError,
)
from sdk._protocol.flow import Flow, ReadBody, Send, call_flow, make_status_error
from sdk._protocol.options import ClientConfig, RequestOptions
from sdk._protocol.request import APICall, build_request, model_retrieve_call, props_call
from sdk.tokens.errors import TokenizerError
from sdk.tokens.hf import HF_EXTRA, hf_available
from sdk.tokens.hosted import TokenCountWarning, estimate_tokenizer, hosted_tokenizer
from sdk.tokens.tokenizer import Tokenizer
from sdk.types import TokenizerExport

from .registry import TokenizerRegistry

__all__ = ["means_unsupported", "tokenizer_flow"]

# Statuses with which servers say "no such endpoint here" (FastAPI, vLLM, llama.cpp, proxies).
_UNSUPPORTED = frozenset({400, 404, 405, 406, 410, 415, 422, 501})


def means_unsupported(exc: Exception) -> bool:
    """Did the server answer "I don't have this endpoint" (rather than "no such model")?"""
    if isinstance(exc, APIResponseValidationError):
        return True  # a 2xx that is not our JSON: some other endpoint, or a web page
    if isinstance(exc, APIStatusError):
        return exc.status_code in _UNSUPPORTED and exc.code != "model_not_found"
    return False


def tokenizer_flow(
    config: ClientConfig, registry: TokenizerRegistry, model: str
) -> Flow[Tokenizer]:
    """The tokenizer of ``model`` on ``config``'s server (fetched once per client)."""
    if not isinstance(model, str) or not model:
        raise InvalidRequestParamsError(f"model must be a non-empty string, got {model!r}")
    server = str(config.root_url)
    known = registry.get(server, model)
    if known is not None:
        return known
    tokenizer = yield from _fetch(config, registry, model)
    return registry.put(server, model, tokenizer)


def _fetch(config: ClientConfig, registry: TokenizerRegistry, model: str) -> Flow[Tokenizer]:
    path = f"/models/{quote(model, safe='')}/tokenizer"
    call = APICall("GET", path, TokenizerExport.model_validate)
    try:
        export = yield from call_flow(config, call, RequestOptions())
    except (APIStatusError, APIResponseValidationError) as exc:
        if not means_unsupported(exc):
            raise
        return (yield from _without_export(config, model, exc))

    from sdk.tokens.export import HF_FORMAT, check_export, tokenizer_from_export, verify_ranks

    check_export(export)
    if export.format == HF_FORMAT and not hf_available():
        return _without_hf(config, model, export)
    if export.ranks is not None:
        ranks_file = export.ranks.encode("utf-8")
    else:
        assert export.ranks_url is not None  # check_export
        cache = registry.cache
        cached = cache.load(export.ranks_sha256)
        if cached is None:
            url = _export_url(config, call).join(export.ranks_url)
            ranks_file = yield from _download(config, url)
            verify_ranks(export, ranks_file)
            cache.store(export.ranks_sha256, ranks_file)
        else:
            ranks_file = cached
    return tokenizer_from_export(export, ranks_file, model=model)


def _export_url(config: ClientConfig, call: APICall[Any]) -> httpx.URL:
    request = build_request(config, call, RequestOptions(), retries_taken=0, idempotency_key=None)
    return request.url


def _download(config: ClientConfig, url: httpx.URL) -> Flow[bytes]:
    """GET ``url`` (on the client's own server: it carries the API key) as bytes."""
    base = config.base_url
    if (url.scheme, url.host, url.port) != (base.scheme, base.host, base.port):
        raise TokenizerError(
            f"the tokenizer's ranks_url points to another server ({url.scheme}://{url.host}); "
            "only the server's own URLs are followed"
        )
    template = build_request(
        config,
        APICall("GET", "/", TokenizerExport.model_validate),
        RequestOptions(),
        retries_taken=0,
        idempotency_key=None,
    )
    headers = {k: v for k, v in template.headers.items() if k.lower() != "accept"}
    request = httpx.Request(
        "GET", url, headers={**headers, "Accept": "text/plain"}, extensions=template.extensions
    )
    sent = yield Send(request)
    content: bytes = yield ReadBody(sent.response)
    if sent.response.status_code >= 400:
        raise make_status_error(sent.response, content, 0.0)
    return content


def _without_export(config: ClientConfig, model: str, exc: Exception) -> Flow[Tokenizer]:
    hosted = hosted_tokenizer(model)
    if hosted is not None:
        return hosted
    status = getattr(exc, "status_code", "?")
    warnings.warn(
        f"{config.root_url} has no tokenizer export for {model!r} (status {status}); local "
        "token counts for it are estimates (exact=False); count_tokens and token budgets ask "
        "the server's own tokenize endpoints where it has them",
        TokenCountWarning,
        stacklevel=2,
    )
    return estimate_tokenizer(model, context_length=(yield from _context_length(config, model)))


def _without_hf(config: ClientConfig, model: str, export: TokenizerExport) -> Tokenizer:
    """A ``tokenizer.json`` export without the ``tokenizers`` package to read it: an
    estimate (counts through ``Counter`` then ask the server's ``/tokenize``, exact)."""
    warnings.warn(
        f"{model!r} on {config.root_url} exports a tokenizer.json; reading it needs the "
        f"tokenizers package (pip install '{HF_EXTRA}'). Until then client.count_tokens and "
        "token budgets ask the server's /tokenize (exact, one request per count), and "
        "client.tokenizer() estimates (exact=False)",
        TokenCountWarning,
        stacklevel=2,
    )
    return estimate_tokenizer(model, context_length=export.context_length)


def _context_length(config: ClientConfig, model: str) -> Flow[int | None]:
    """The context window the server reports: ``max_model_len`` on the model card (vLLM,
    server_ref), else llama.cpp's ``n_ctx`` (``GET /props``: one slot's window), if any."""
    try:
        card = yield from call_flow(config, *model_retrieve_call(model, {}))
        value = card.max_model_len
    except (APIStatusError, APIResponseValidationError):
        value = None
    if value is None:
        try:
            props = yield from call_flow(config, props_call(), RequestOptions())
        except (APIStatusError, APIResponseValidationError):
            return None
        settings = props.default_generation_settings
        value = settings.n_ctx if settings is not None else None
    return value if value is not None and value > 0 else None
