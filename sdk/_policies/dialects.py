"""Exact counts from a server that exports no tokenizer: its own tokenize endpoints.

Three dialects are spoken:

* ``"vllm"`` — ``POST /tokenize`` with ``prompt``, or with ``messages`` (and the chat's
  tools) and ``add_generation_prompt`` -> ``{"count", "tokens", "max_model_len"}`` (vLLM;
  ``server_ref`` too).
* ``"llamacpp"`` — llama.cpp's ``llama-server`` (``sdk.types.llamacpp``): ``POST
  /apply-template`` turns a chat request into the prompt text its chat completions run
  (tools included: one server function makes both), and ``POST /tokenize`` with ``content``,
  ``add_special`` and ``parse_special`` counts text as its completions do.
* ``"llama-cpp-python"`` — its ``POST /extras/tokenize`` with ``input``: completion prompts
  only (it renders no chat for a client; a GGUF tokenizer counts those).

For each server and kind of count (a completion prompt, a chat) the dialects are tried in
that order the first time, and the first whose answer makes sense is remembered
(``TokenizerRegistry``). One is ruled out when the server says it has no such endpoint, or
answers something that is not an answer to the question asked: ``{"tokens": []}`` for
non-empty text (what llama.cpp's ``/tokenize`` makes of vLLM's fields), a ``count`` that is
not the number of ``tokens``, a shape this client does not know. So a dialect never yields a
count marked exact that the client cannot trust. A server left with none counts nothing
(remembered, warned about once): its counts are estimates. Once a dialect has counted for a
server, an error status is the server's verdict on that request and is raised; a senseless
answer makes that one count an estimate.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any

from sdk._exceptions import APIResponseValidationError, APIStatusError
from sdk._protocol.flow import Flow, call_flow
from sdk._protocol.options import ClientConfig, RequestOptions
from sdk._protocol.request import (
    apply_template_call,
    content_tokenize_call,
    extras_tokenize_call,
    tokenize_call,
)
from sdk.tokens.hosted import TokenCountWarning

from .registry import CountKind, Dialect, TokenizerRegistry
from .remote import means_unsupported

__all__ = ["server_count_flow"]

CountRequest = list[dict[str, Any]] | str  # chat messages, or a completion prompt
Counted = tuple[int, int | None]  # tokens, and the context window if the answer says


_ENDPOINTS = {
    "prompt": "vLLM's or llama.cpp's /tokenize, llama-cpp-python's /extras/tokenize",
    "chat": "vLLM's /tokenize, llama.cpp's /apply-template",
}


class _NotUnderstood(Exception):
    """The server answered, but not the question that was asked."""


def server_count_flow(
    config: ClientConfig,
    registry: TokenizerRegistry,
    model: str,
    request: CountRequest,
    chat_options: Mapping[str, Any] | None = None,
) -> Flow[Counted | None]:
    """(tokens, the server's context window or ``None``) counted by the server itself, or
    ``None`` when it has no endpoint this client can count ``request``'s kind with."""
    server = str(config.root_url)
    kind: CountKind = "prompt" if isinstance(request, str) else "chat"
    confirmed = registry.confirmed(server, kind)
    for dialect in registry.dialects(server, kind):
        try:
            counted = yield from _COUNT[dialect](config, model, request, chat_options or {})
        except (APIStatusError, APIResponseValidationError) as exc:
            # once a dialect has counted here, an error is about this request (llama.cpp
            # answers 400 for a chat its template refuses): the call would get it too
            if dialect == confirmed or not means_unsupported(exc):
                raise
        except _NotUnderstood:
            if dialect == confirmed:
                return None  # this answer makes no sense; the next one may
        else:
            registry.confirm(server, kind, dialect)
            return counted
        if registry.rule_out(server, kind, dialect):
            warnings.warn(
                f"{config.root_url} has no endpoint this client can count {kind}s with "
                f"({_ENDPOINTS[kind]}); token counts for {model!r} are estimates (exact=False)",
                TokenCountWarning,
                stacklevel=2,
            )
    return None


def _vllm(
    config: ClientConfig, model: str, request: CountRequest, chat_options: Mapping[str, Any]
) -> Flow[Counted]:
    params: dict[str, Any] = {"model": model}
    if isinstance(request, str):
        params["prompt"] = request
    else:
        params.update(messages=request, add_generation_prompt=True, **chat_options)
    answer = yield from call_flow(config, *tokenize_call(params))
    if answer.count != len(answer.tokens) or (answer.count == 0 and request != ""):
        raise _NotUnderstood
    return answer.count, answer.max_model_len


def _llamacpp(
    config: ClientConfig, model: str, request: CountRequest, chat_options: Mapping[str, Any]
) -> Flow[Counted]:
    if isinstance(request, str):
        text = request
    else:
        call = apply_template_call({"model": model, "messages": request, **chat_options})
        text = (yield from call_flow(config, call, RequestOptions())).prompt
        if not text:
            raise _NotUnderstood
    # BOS/EOS and special-token text exactly as llama.cpp's completions tokenize a prompt
    params = {"model": model, "content": text, "add_special": True, "parse_special": True}
    answer = yield from call_flow(config, content_tokenize_call(params), RequestOptions())
    said = (answer.model_extra or {}).get("count", len(answer.tokens))
    if (text and not answer.tokens) or said != len(answer.tokens):
        raise _NotUnderstood
    return len(answer.tokens), None


def _llama_cpp_python(
    config: ClientConfig, model: str, request: CountRequest, chat_options: Mapping[str, Any]
) -> Flow[Counted]:
    assert isinstance(request, str)  # DIALECTS: prompts only
    call = extras_tokenize_call({"model": model, "input": request})
    answer = yield from call_flow(config, call, RequestOptions())
    if request and not answer.tokens:
        raise _NotUnderstood
    return len(answer.tokens), None


_COUNT: dict[Dialect, Callable[..., Flow[Counted]]] = {
    "vllm": _vllm,
    "llamacpp": _llamacpp,
    "llama-cpp-python": _llama_cpp_python,
}
