"""``POST /v1/chat/completions``: messages -> chat template -> engine -> OpenAI's shapes.

Tools and ``response_format`` are planned in ``chat_request`` (prompt and grammar); a reply in
the tool-call format is shown as OpenAI's message or deltas by ``chat_tools``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response

from sdk.types import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionMessage,
    Choice,
    ChoiceDelta,
    ChoiceLogprobs,
    ChunkChoice,
    CompletionUsage,
)
from server_ref.api import unsupported
from server_ref.api.chat_request import plan_chat
from server_ref.api.chat_tools import ToolDeltas, tool_finish_reason, tool_message
from server_ref.api.errors import BadRequestError
from server_ref.api.generation import ChoiceSpec, ChoiceState, Generation, until_disconnect
from server_ref.api.logprobs import chat_logprobs
from server_ref.api.openapi import errors, json_or_stream, request_body
from server_ref.api.sampling import base_params, per_choice, resolve_max_tokens
from server_ref.api.schemas import ServerChatCompletionRequest, parse_body, reject_unsupported
from server_ref.api.sse import SSEResponse, encode_event
from server_ref.api.state import get_state, new_id, unix_now
from server_ref.api.streaming import stream_events
from server_ref.engine.types import TokenLogprob

router = APIRouter(tags=["openai"])


@dataclass
class ChatStream:
    """Chunk writer for chat streams (see ``streaming.ChunkWriter``)."""

    id: str
    created: int
    model: str
    include_usage: bool
    top_logprobs: int | None  # None: logprobs off
    tools: bool = False  # the reply is in the tool-call format (``chat_tools``)
    _tool_deltas: dict[int, ToolDeltas] = field(default_factory=dict)

    def _event(self, choices: list[ChunkChoice], usage: CompletionUsage | None = None) -> bytes:
        chunk = ChatCompletionChunk(
            id=self.id, created=self.created, model=self.model, choices=choices, usage=usage
        )
        data: dict[str, Any] = chunk.model_dump(mode="json")
        for choice, raw in zip(chunk.choices, data["choices"], strict=True):
            # OpenAI sends only the delta fields that are set ({"content": "Hi"}, {}).
            raw["delta"] = choice.delta.model_dump(mode="json", exclude_none=True)
        if not self.include_usage:
            del data["usage"]  # "usage": null appears only when include_usage is set
        return encode_event(data)

    def _logprobs(self, logprobs: list[TokenLogprob]) -> ChoiceLogprobs | None:
        if self.top_logprobs is None or not logprobs:
            return None
        return chat_logprobs(logprobs, self.top_logprobs)

    def start(self, choice: ChoiceState) -> bytes:
        if self.tools:  # content stays null unless the reply turns out to be text
            self._tool_deltas[choice.index] = ToolDeltas()
            delta = ChoiceDelta(role="assistant")
        else:
            delta = ChoiceDelta(role="assistant", content="")
        return self._event([ChunkChoice(index=choice.index, delta=delta)])

    def delta(self, choice: ChoiceState, text: str, logprobs: list[TokenLogprob]) -> bytes:
        deltas = (
            self._tool_deltas[choice.index].feed(text)
            if self.tools
            else [ChoiceDelta(content=text)]
        )
        # one chunk per delta; the step's logprobs go with the first (none: they wait)
        chunks = [ChunkChoice(index=choice.index, delta=d) for d in deltas]
        if chunks:
            chunks[0].logprobs = self._logprobs(logprobs)
        return b"".join(self._event([chunk]) for chunk in chunks)

    def finish(self, choice: ChoiceState, logprobs: list[TokenLogprob]) -> bytes:
        reason = choice.finish_reason
        if self.tools:
            reason = tool_finish_reason(reason, self._tool_deltas[choice.index].called)
        chunk_choice = ChunkChoice(
            index=choice.index,
            delta=ChoiceDelta(),
            finish_reason=reason,
            logprobs=self._logprobs(logprobs),
        )
        return self._event([chunk_choice])

    def usage(self, usage: CompletionUsage) -> bytes | None:
        return self._event([], usage) if self.include_usage else None


def _choice(c: ChoiceState, *, tools: bool, top_logprobs: int | None) -> Choice:
    text = "".join(c.text)
    reason = c.finish_reason
    if tools:
        message = tool_message(text)
        reason = tool_finish_reason(reason, bool(message.tool_calls))
    else:
        message = ChatCompletionMessage(role="assistant", content=text)
    return Choice(
        index=c.index,
        message=message,
        finish_reason=reason,
        logprobs=None if top_logprobs is None else chat_logprobs(c.logprobs, top_logprobs),
    )


def chat_completion(
    gen: Generation,
    *,
    id: str,
    created: int,
    model: str,
    top_logprobs: int | None,
    tools: bool = False,
) -> dict[str, Any]:
    choices = [_choice(c, tools=tools, top_logprobs=top_logprobs) for c in gen.choices]
    body = ChatCompletion(id=id, created=created, model=model, choices=choices, usage=gen.usage())
    return body.model_dump(mode="json")


@router.post(
    "/v1/chat/completions",
    summary="Create a chat completion (streams SSE when stream=true)",
    openapi_extra=request_body(ServerChatCompletionRequest),
    response_model=None,
    responses={**json_or_stream(ChatCompletion, ChatCompletionChunk), **errors(400, 404, 429)},
)
async def create_chat_completion(request: Request) -> Response:
    state = get_state(request)
    req = await parse_body(request, ServerChatCompletionRequest)
    state.check_model(req.model)
    reject_unsupported(req, unsupported.CHAT)
    if req.top_logprobs is not None and not req.logprobs:
        raise BadRequestError("top_logprobs requires logprobs to be true.", param="top_logprobs")
    engine = state.engine
    plan = await plan_chat(req, engine)
    prompt_ids = plan.prompt_ids
    tools = plan.tools is not None
    # max_completion_tokens is OpenAI's newer name; max_tokens the deprecated one.
    requested = req.max_completion_tokens or req.max_tokens
    max_tokens = resolve_max_tokens(requested, len(prompt_ids), engine.model_info)
    top_logprobs = (req.top_logprobs or 0) if req.logprobs else None
    vocab = engine.model_info.vocab_size
    base = base_params(req, logprobs=top_logprobs, vocab_size=vocab)
    base = replace(base, constraint=plan.constraint)
    params = per_choice(base, max_tokens, req.n or 1)
    specs = [ChoiceSpec(i, prompt_ids, p) for i, p in enumerate(params)]
    id, created = new_id("chatcmpl"), unix_now()
    gen = Generation(engine, state.metrics, id, specs, retry_after=state.retry_after)
    gen.submit()
    if req.stream:
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        writer = ChatStream(
            id, created, state.served_model_name, include_usage, top_logprobs, tools=tools
        )
        return SSEResponse(stream_events(gen, writer), on_close=gen.close)
    try:
        await until_disconnect(request, gen.drain())
    finally:
        await gen.close()
    body = chat_completion(
        gen,
        id=id,
        created=created,
        model=state.served_model_name,
        top_logprobs=top_logprobs,
        tools=tools,
    )
    return JSONResponse(body)
