"""``POST /v1/completions``: text or token-id prompts (one or a batch) -> OpenAI's shapes.

A batch of prompts gives ``len(prompts) * n`` choices; prompt ``p``'s ``i``-th choice has index
``p * n + i``, as OpenAI numbers them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response

from sdk.types import Completion, CompletionChoice, CompletionUsage
from server_ref.api import unsupported
from server_ref.api.errors import BadRequestError
from server_ref.api.generation import ChoiceSpec, ChoiceState, Generation, until_disconnect
from server_ref.api.logprobs import completion_logprobs
from server_ref.api.openapi import errors, json_or_stream, request_body
from server_ref.api.sampling import (
    COMPLETIONS_DEFAULT_MAX_TOKENS,
    base_params,
    per_choice,
    resolve_max_tokens,
)
from server_ref.api.schemas import ServerCompletionRequest, parse_body, reject_unsupported
from server_ref.api.sse import SSEResponse, encode_event
from server_ref.api.state import ServerState, get_state, new_id, unix_now
from server_ref.api.streaming import stream_events
from server_ref.engine.types import TokenLogprob

router = APIRouter(tags=["openai"])


def tokenize_prompts(state: ServerState, prompt: Any) -> list[list[int]]:
    """The four prompt forms (str, [str], [int], [[int]]) as a list of token-id lists.

    Validation has made sure none is empty, so none is empty after tokenization either.
    """
    tokenizer = state.engine.tokenizer
    if isinstance(prompt, str):
        prompts = [tokenizer.encode(prompt, allow_special=True)]
    elif isinstance(prompt[0], str):
        prompts = [tokenizer.encode(p, allow_special=True) for p in prompt]
    elif isinstance(prompt[0], int):
        prompts = [list(prompt)]
    else:
        prompts = [list(p) for p in prompt]
    for i, ids in enumerate(prompts):
        state.check_token_ids(ids, param="prompt" if len(prompts) == 1 else f"prompt[{i}]")
    return prompts


@dataclass
class CompletionStream:
    """Chunk writer for completion streams: every event is a ``text_completion`` object."""

    id: str
    created: int
    model: str
    include_usage: bool
    logprobs: int | None
    echo: list[str] | None  # per prompt, sent in each choice's first chunk

    def __post_init__(self) -> None:
        self._offsets: dict[int, int] = {}

    def _event(
        self, choices: list[CompletionChoice], usage: CompletionUsage | None = None
    ) -> bytes:
        body = Completion(
            id=self.id, created=self.created, model=self.model, choices=choices, usage=usage
        )
        data: dict[str, Any] = body.model_dump(mode="json")
        if not self.include_usage:
            del data["usage"]
        return encode_event(data)

    def _logprobs(self, choice: ChoiceState, text: str, lps: list[TokenLogprob]) -> Any:
        offset = self._offsets.get(choice.index, 0)
        self._offsets[choice.index] = offset + len(text)
        if self.logprobs is None or not lps:
            return None
        return completion_logprobs(lps, self.logprobs, offset)

    def start(self, choice: ChoiceState) -> bytes | None:
        if not self.echo or not self.echo[choice.prompt_index]:
            return None
        text = self.echo[choice.prompt_index]
        self._offsets[choice.index] = len(text)
        return self._event([CompletionChoice(index=choice.index, text=text)])

    def delta(self, choice: ChoiceState, text: str, logprobs: list[TokenLogprob]) -> bytes:
        lps = self._logprobs(choice, text, logprobs)
        return self._event([CompletionChoice(index=choice.index, text=text, logprobs=lps)])

    def finish(self, choice: ChoiceState, logprobs: list[TokenLogprob]) -> bytes:
        lps = self._logprobs(choice, "", logprobs)
        last = CompletionChoice(
            index=choice.index, text="", finish_reason=choice.finish_reason, logprobs=lps
        )
        return self._event([last])

    def usage(self, usage: CompletionUsage) -> bytes | None:
        return self._event([], usage) if self.include_usage else None


def completion_body(
    gen: Generation,
    *,
    id: str,
    created: int,
    model: str,
    logprobs: int | None,
    echo: list[str] | None,
) -> dict[str, Any]:
    choices = []
    for c in gen.choices:
        prefix = echo[c.prompt_index] if echo else ""
        lps = None if logprobs is None else completion_logprobs(c.logprobs, logprobs, len(prefix))
        choices.append(
            CompletionChoice(
                index=c.index,
                text=prefix + "".join(c.text),
                finish_reason=c.finish_reason,
                logprobs=lps,
            )
        )
    body = Completion(id=id, created=created, model=model, choices=choices, usage=gen.usage())
    return body.model_dump(mode="json")


@router.post(
    "/v1/completions",
    summary="Create a text completion (streams SSE when stream=true)",
    openapi_extra=request_body(ServerCompletionRequest),
    response_model=None,
    responses={**json_or_stream(Completion, Completion), **errors(400, 404, 429)},
)
async def create_completion(request: Request) -> Response:
    state = get_state(request)
    req = await parse_body(request, ServerCompletionRequest)
    state.check_model(req.model)
    reject_unsupported(req, unsupported.COMPLETION)
    n = req.n or 1
    if req.echo and req.logprobs is not None:
        # Echo with logprobs asks for prompt logprobs, which the engine does not compute.
        raise BadRequestError("echo together with logprobs is not supported.", param="echo")
    engine = state.engine
    prompts = tokenize_prompts(state, req.prompt)
    base = base_params(req, logprobs=req.logprobs, vocab_size=engine.model_info.vocab_size)
    specs: list[ChoiceSpec] = []
    for p, ids in enumerate(prompts):
        max_tokens = resolve_max_tokens(
            req.max_tokens,
            len(ids),
            engine.model_info,
            what="prompt",
            default=COMPLETIONS_DEFAULT_MAX_TOKENS,
        )
        for i, params in enumerate(per_choice(base, max_tokens, n)):
            specs.append(ChoiceSpec(p * n + i, ids, params, prompt_index=p))
    echo = [engine.tokenizer.decode(ids) for ids in prompts] if req.echo else None
    id, created = new_id("cmpl"), unix_now()
    model = state.served_model_name
    gen = Generation(engine, state.metrics, id, specs, retry_after=state.retry_after)
    gen.submit()
    if req.stream:
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        writer = CompletionStream(id, created, model, include_usage, req.logprobs, echo)
        return SSEResponse(stream_events(gen, writer), on_close=gen.close)
    try:
        await until_disconnect(request, gen.drain())
    finally:
        await gen.close()
    body = completion_body(
        gen, id=id, created=created, model=model, logprobs=req.logprobs, echo=echo
    )
    return JSONResponse(body)
