"""Stream accumulators: fold chunks into the object a non-streaming call would have returned.

Pure state machines, usable with any byte source:

>>> acc = ChatCompletionAccumulator()
>>> for chunk in chunks:  # doctest: +SKIP
...     acc.add(chunk)
>>> acc.result().choices[0].message.content  # doctest: +SKIP

Choices are kept apart by ``index`` (``n > 1`` streams interleave them); message deltas are
merged by the rules in ``deltas`` (text concatenated, tool calls merged by index, unknown
fields kept); logprobs are concatenated; ``finish_reason``, ``usage`` and unknown chunk and
choice fields keep the last value seen.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from ..types import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionMessage,
    ChatCompletionTokenLogprob,
    Choice,
    ChoiceLogprobs,
    Completion,
    CompletionChoice,
    CompletionLogprobs,
    CompletionUsage,
)
from .deltas import finish, merge, model_items

__all__ = ["Accumulator", "ChatCompletionAccumulator", "CompletionAccumulator"]

ChunkT_contra = TypeVar("ChunkT_contra", contravariant=True)
FinalT_co = TypeVar("FinalT_co", covariant=True)
X = TypeVar("X")


class Accumulator(Protocol[ChunkT_contra, FinalT_co]):
    def add(self, chunk: ChunkT_contra) -> None: ...

    def text(self, chunk: ChunkT_contra) -> str | None:
        """The text this chunk adds to the first choice (index 0), if any."""
        ...

    def result(self) -> FinalT_co: ...


@dataclass
class _Header:
    """The fields every chunk repeats: ids from the first chunk, the rest from the last that
    has them (``usage`` comes last, alone; unknown fields a service adds are kept)."""

    id: str = ""
    created: int = 0
    model: str = ""
    system_fingerprint: str | None = None
    usage: CompletionUsage | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    seen: bool = False

    def update(self, chunk: ChatCompletionChunk | Completion) -> None:
        if not self.seen:
            self.seen = True
            self.id, self.created, self.model = chunk.id, chunk.created, chunk.model
        self.system_fingerprint = chunk.system_fingerprint or self.system_fingerprint
        self.usage = chunk.usage or self.usage
        _keep_last(self.extra, chunk.model_extra)


# Random padding OpenAI adds to each chunk against side channels; it means nothing once the
# chunks are put together.
_PER_CHUNK_ONLY = frozenset({"obfuscation"})


def _keep_last(extra: dict[str, Any], new: dict[str, Any] | None) -> None:
    for key, value in (new or {}).items():
        if value is not None and key not in _PER_CHUNK_ONLY:
            extra[key] = value


@dataclass
class _ChatChoice:
    message: dict[str, Any] = field(default_factory=dict)  # merged deltas, see .deltas
    finish_reason: str | None = None
    logprobs: list[ChatCompletionTokenLogprob] | None = None
    refusal_logprobs: list[ChatCompletionTokenLogprob] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _extended(parts: list[X] | None, more: list[X] | None) -> list[X] | None:
    """``parts`` grown in place by ``more``; ``None`` stays ``None`` until something arrives."""
    if more is None:
        return parts
    if parts is None:
        return list(more)
    parts.extend(more)
    return parts


class ChatCompletionAccumulator:
    """Builds a ``ChatCompletion`` from ``ChatCompletionChunk``s.

    Message deltas are merged by the rules in ``deltas``: text concatenated, tool calls
    merged by index, unknown fields kept, so the result equals the non-streamed reply.
    """

    def __init__(self) -> None:
        self._header = _Header()
        self._service_tier: str | None = None
        self._choices: dict[int, _ChatChoice] = {}

    def add(self, chunk: ChatCompletionChunk) -> None:
        self._header.update(chunk)
        self._service_tier = chunk.service_tier or self._service_tier
        for choice in chunk.choices:
            state = self._choices.setdefault(choice.index, _ChatChoice())
            merge(state.message, model_items(choice.delta))
            state.finish_reason = choice.finish_reason or state.finish_reason
            _keep_last(state.extra, choice.model_extra)
            if choice.logprobs is not None:
                state.logprobs = _extended(state.logprobs, choice.logprobs.content)
                state.refusal_logprobs = _extended(state.refusal_logprobs, choice.logprobs.refusal)

    def text(self, chunk: ChatCompletionChunk) -> str | None:
        return next((c.delta.content for c in chunk.choices if c.index == 0), None)

    def result(self) -> ChatCompletion:
        header = self._header
        return ChatCompletion(
            id=header.id,
            created=header.created,
            model=header.model,
            system_fingerprint=header.system_fingerprint,
            usage=header.usage,
            service_tier=self._service_tier,
            choices=[self._choice(i, s) for i, s in sorted(self._choices.items())],
            **header.extra,
        )

    @staticmethod
    def _choice(index: int, state: _ChatChoice) -> Choice:
        has_logprobs = state.logprobs is not None or state.refusal_logprobs is not None
        message = {"role": "assistant", **finish(state.message)}
        return Choice(
            index=index,
            message=ChatCompletionMessage.model_validate(message),
            finish_reason=state.finish_reason,
            logprobs=ChoiceLogprobs(content=state.logprobs, refusal=state.refusal_logprobs)
            if has_logprobs
            else None,
            **state.extra,
        )


_LOGPROB_FIELDS = ("tokens", "token_logprobs", "top_logprobs", "text_offset")


@dataclass
class _TextChoice:
    text: list[str] = field(default_factory=list)
    finish_reason: str | None = None
    logprobs: dict[str, list[Any] | None] | None = None  # CompletionLogprobs fields, growing

    def add_logprobs(self, new: CompletionLogprobs) -> None:
        fields = self.logprobs if self.logprobs is not None else dict.fromkeys(_LOGPROB_FIELDS)
        for name in _LOGPROB_FIELDS:
            fields[name] = _extended(fields[name], getattr(new, name))
        self.logprobs = fields


class CompletionAccumulator:
    """Builds a ``Completion`` from the ``Completion`` objects a text-completion stream sends."""

    def __init__(self) -> None:
        self._header = _Header()
        self._choices: dict[int, _TextChoice] = {}

    def add(self, chunk: Completion) -> None:
        self._header.update(chunk)
        for choice in chunk.choices:
            state = self._choices.setdefault(choice.index, _TextChoice())
            state.text.append(choice.text)
            state.finish_reason = choice.finish_reason or state.finish_reason
            if choice.logprobs is not None:
                state.add_logprobs(choice.logprobs)

    def text(self, chunk: Completion) -> str | None:
        return next((c.text for c in chunk.choices if c.index == 0), None)

    def result(self) -> Completion:
        header = self._header
        return Completion(
            id=header.id,
            created=header.created,
            model=header.model,
            system_fingerprint=header.system_fingerprint,
            usage=header.usage,
            **header.extra,
            choices=[
                CompletionChoice(
                    index=i,
                    text="".join(s.text),
                    finish_reason=s.finish_reason,
                    logprobs=None if s.logprobs is None else CompletionLogprobs(**s.logprobs),
                )
                for i, s in sorted(self._choices.items())
            ],
        )
