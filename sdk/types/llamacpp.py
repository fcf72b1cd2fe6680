"""llama.cpp's server extensions the SDK counts tokens with, as its servers answer them.

Not OpenAI's API, and not this project's. The SDK uses them where a server exports no
tokenizer (``sdk._policies.dialects``). llama.cpp's own ``llama-server`` (``tools/server``):

* ``POST /apply-template`` — a chat request (``messages``, ``tools``, ...) -> ``{"prompt"}``:
  the prompt text its chat completions would run, rendered by the same server function.
* ``POST /tokenize`` with ``content`` -> ``{"tokens": [ids]}`` (``[{"id", "piece"}]`` with
  ``with_pieces``); ``add_special`` adds BOS/EOS as the model asks, ``parse_special`` reads
  special-token text as special tokens — both as its completions do.
* ``GET /props`` -> ``default_generation_settings.n_ctx``: the context window of one slot.

llama-cpp-python's server: ``POST /extras/tokenize`` with ``input`` -> ``{"tokens"}``, the
ids its completions run for that prompt (it has no way to render a chat).
"""

from __future__ import annotations

from pydantic import Field

from ._base import APIObject, RequestModel
from .chat_messages import ChatMessage
from .tools import ChatCompletionTool, ChatCompletionToolChoice

__all__ = [
    "ApplyTemplateRequest",
    "ContentTokenizeRequest",
    "ContentTokens",
    "ExtrasTokenizeRequest",
    "ExtrasTokens",
    "GenerationSettings",
    "ServerProps",
    "TemplatePrompt",
    "TokenPiece",
]


class ApplyTemplateRequest(RequestModel):
    """The body of ``POST /apply-template``: the prompt-making part of a chat request."""

    model: str | None = None  # llama-server's router mode picks the model by it
    messages: list[ChatMessage] = Field(strict=False)
    tools: list[ChatCompletionTool] | None = Field(default=None, strict=False)
    tool_choice: ChatCompletionToolChoice | None = None
    parallel_tool_calls: bool | None = None


class TemplatePrompt(APIObject):
    """The answer of ``POST /apply-template``."""

    prompt: str


class ContentTokenizeRequest(RequestModel):
    """The body of llama.cpp's ``POST /tokenize``."""

    model: str | None = None
    content: str
    add_special: bool = False
    parse_special: bool = True
    with_pieces: bool = False


class TokenPiece(APIObject):
    """One token with ``with_pieces``: its text, or its bytes when they are not UTF-8."""

    id: int
    piece: str | list[int]


class ContentTokens(APIObject):
    """The answer of llama.cpp's ``POST /tokenize``."""

    tokens: list[int] | list[TokenPiece]


class GenerationSettings(APIObject):
    n_ctx: int | None = None


class ServerProps(APIObject):
    """The answer of ``GET /props`` (the fields the SDK reads; the rest are kept)."""

    default_generation_settings: GenerationSettings | None = None
    chat_template: str | None = None
    bos_token: str | None = None
    eos_token: str | None = None


class ExtrasTokenizeRequest(RequestModel):
    """The body of llama-cpp-python's ``POST /extras/tokenize``."""

    model: str | None = None
    input: str


class ExtrasTokens(APIObject):
    """The answer of llama-cpp-python's ``POST /extras/tokenize``."""

    tokens: list[int]
