"""The public surface: explicit ``__all__``, lazy imports, the wire models' contract."""

from __future__ import annotations

import importlib
import subprocess
import sys
import typing

import pytest
from pydantic import BaseModel

import sdk
from sdk import types
from sdk._policies.options import CallOptions
from sdk._resources import (
    ChatCompletionKwargs,
    ChatCompletionParseKwargs,
    CompletionKwargs,
    EmbeddingKwargs,
    TokenizeKwargs,
    ToolLoopKwargs,
)


def test_everything_in_all_is_importable() -> None:
    for name in sdk.__all__:
        assert getattr(sdk, name) is not None
    for name in types.__all__:
        assert getattr(types, name) is not None
    with pytest.raises(AttributeError):
        sdk.nothing_here  # noqa: B018


def test_import_sdk_is_light() -> None:
    code = (
        "import sys, sdk\n"
        "heavy = {'httpx', 'pydantic', 'tenacity', 'tiktoken', 'torch', 'sdk.tokens'}\n"
        "print(sorted(heavy & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_creating_a_client_or_router_loads_no_wire_models() -> None:
    # pydantic and the models load on the first call; benchmarks/bench_sdk.py measures why
    code = (
        "import sys, sdk\n"
        "sdk.Client(), sdk.AsyncClient()\n"
        "sdk.Router(['http://a/v1', 'http://b/v1'], strategy='prefix_affinity')\n"
        "sdk.AsyncRouter([sdk.Endpoint('http://a/v1', models={'m'})])\n"
        "heavy = {'pydantic', 'tenacity', 'tiktoken', 'jinja2', 'sdk.types'}\n"
        "print(sorted(heavy & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("package", ["sdk", "sdk.tokens"])
def test_lazy_exports_come_from_the_type_checking_block(package: str) -> None:
    # The one table is the package's `if TYPE_CHECKING:` imports; a name listed there that
    # does not exist, or a stale __all__, fails here.
    module = importlib.import_module(package)
    for name in module.__all__:
        assert getattr(module, name) is not None, name
    assert set(dir(module)) >= set(module.__all__) - {"__version__"}
    with pytest.raises(AttributeError, match="nothing_here"):
        module.nothing_here  # noqa: B018


@pytest.mark.parametrize(
    ("kwargs", "model", "skip"),
    [
        (ChatCompletionKwargs, types.ChatCompletionRequest, {"stream"}),
        (ChatCompletionParseKwargs, types.ChatCompletionRequest, {"stream", "response_format"}),
        (ToolLoopKwargs, types.ChatCompletionRequest, {"stream", "response_format", "tools"}),
        (CompletionKwargs, types.CompletionRequest, {"stream"}),
        (EmbeddingKwargs, types.EmbeddingRequest, set()),
        (TokenizeKwargs, types.TokenizeRequest, set()),
    ],
)
def test_keyword_arguments_match_the_wire_models(
    kwargs: type, model: type[BaseModel], skip: set[str]
) -> None:
    # The TypedDicts that type create(**kwargs) and the pydantic models that validate the
    # body are declared separately; they must list the same fields.
    keys = set(typing.get_type_hints(kwargs)) - set(typing.get_type_hints(CallOptions))
    assert keys == set(model.model_fields) - skip


def test_responses_parse_with_the_official_openai_client_types() -> None:
    from openai.types import (
        Completion as OpenAICompletion,
        CreateEmbeddingResponse as OpenAIEmbeddings,
        Model as OpenAIModel,
    )
    from openai.types.chat import ChatCompletion as OpenAIChat, ChatCompletionChunk as OpenAIChunk

    lp = types.ChatCompletionTokenLogprob(
        token="Hi",
        logprob=-0.1,
        bytes=[72, 105],
        top_logprobs=[types.TopLogprob(token="Hi", logprob=-0.1)],
    )
    usage = types.CompletionUsage(prompt_tokens=3, completion_tokens=1, total_tokens=4)
    ours: list[tuple[types.APIObject, type[BaseModel]]] = [
        (
            types.ChatCompletion(
                id="c",
                created=1,
                model="m",
                usage=usage,
                choices=[
                    types.Choice(
                        index=0,
                        message=types.ChatCompletionMessage(content="Hi"),
                        finish_reason="stop",
                        logprobs=types.ChoiceLogprobs(content=[lp]),
                    )
                ],
            ),
            OpenAIChat,
        ),
        (
            types.ChatCompletionChunk(
                id="c",
                created=1,
                model="m",
                choices=[
                    types.ChunkChoice(
                        index=0, delta=types.ChoiceDelta(role="assistant", content="")
                    )
                ],
            ),
            OpenAIChunk,
        ),
        (
            types.ChatCompletionChunk(id="c", created=1, model="m", choices=[], usage=usage),
            OpenAIChunk,
        ),
        (
            types.Completion(
                id="c",
                created=1,
                model="m",
                choices=[
                    types.CompletionChoice(
                        index=0,
                        text="x",
                        finish_reason="length",
                        logprobs=types.CompletionLogprobs(
                            tokens=["x"],
                            token_logprobs=[-1.0],
                            top_logprobs=[{"x": -1.0}],
                            text_offset=[0],
                        ),
                    )
                ],
            ),
            OpenAICompletion,
        ),
        (
            types.CreateEmbeddingResponse(
                model="e",
                data=[types.Embedding(index=0, embedding=[0.1])],
                usage=types.EmbeddingUsage(prompt_tokens=1, total_tokens=1),
            ),
            OpenAIEmbeddings,
        ),
        (types.Model(id="m", created=1, owned_by="me"), OpenAIModel),
    ]
    for obj, openai_type in ours:
        data = obj.model_dump(mode="json")
        # validating (not just constructing) checks every field the official client
        # declares; the round trip shows no value was coerced or dropped
        parsed = openai_type.model_validate(data)
        assert parsed.model_dump(mode="json", exclude_unset=True) == data


def test_unknown_response_fields_are_kept() -> None:
    model = types.Model.model_validate({"id": "m", "root": "base", "max_model_len": 2048})
    assert model.model_extra == {"root": "base"} and model.max_model_len == 2048


def test_error_response_shape() -> None:
    body = types.ErrorResponse(error=types.ErrorObject(message="m", type="invalid_request_error"))
    assert body.model_dump() == {
        "error": {"message": "m", "type": "invalid_request_error", "param": None, "code": None}
    }


def test_request_models_are_strict_and_forward_unknown_fields() -> None:
    request = types.ChatCompletionRequest.model_validate(
        {"messages": [{"role": "user", "content": [{"type": "text", "text": "x"}]}], "best_of": 2}
    )
    assert request.model_dump(exclude_unset=True)["best_of"] == 2
    with pytest.raises(ValueError):
        types.CompletionRequest.model_validate({"prompt": "x", "n": True})
