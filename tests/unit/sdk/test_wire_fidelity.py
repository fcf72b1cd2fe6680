"""Wire fidelity against the official ``openai`` package, with no server: the same bytes through
our client and through openai's must give the same objects, and the same call must send the
same JSON body.

Replies and streams are hosted-style (``kit.hosted``): parallel tool calls, annotations,
usage details, reasoning fields, a refusal, audio, the legacy function call, and unknown
fields at every level.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest
from kit.clients import MESSAGES, Api
from kit.hosted import REPLIES, sse_body, stream_of, without_nulls

from sdk.types import ChatCompletion, ChatCompletionMessageFunctionToolCall


def serve(body: bytes, stream: bool, seen: list[httpx.Request] | None = None) -> Any:
    def handler(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        media = "text/event-stream" if stream else "application/json"
        return httpx.Response(200, content=body, headers={"content-type": media})

    return handler


def official(handler: Any) -> openai.OpenAI:
    http = httpx.Client(transport=httpx.MockTransport(handler))
    return openai.OpenAI(api_key="sk-test", base_url="http://test/v1", http_client=http)


@pytest.mark.parametrize("name", sorted(REPLIES))
def test_a_reply_parses_as_the_official_client_parses_it(api: Api, name: str) -> None:
    raw = json.dumps(REPLIES[name]).encode()
    ours = api.run(
        lambda c: c.chat.completions.create(model="m", messages=MESSAGES),
        api.client(serve(raw, stream=False)),
    )
    theirs = official(serve(raw, stream=False)).chat.completions.create(
        model="m", messages=[{"role": "user", "content": "Hi"}]
    )
    dumped = ours.model_dump(mode="json", exclude_none=True)
    assert dumped == theirs.model_dump(mode="json", exclude_none=True)
    assert dumped == without_nulls(REPLIES[name])  # nothing dropped, nothing renamed


def test_typed_access_to_every_reply_field(api: Api) -> None:
    def get(name: str) -> ChatCompletion:
        raw = json.dumps(REPLIES[name]).encode()
        return api.run(  # type: ignore[no-any-return]
            lambda c: c.chat.completions.create(model="m", messages=MESSAGES),
            api.client(serve(raw, stream=False)),
        )

    calls = get("parallel-tool-calls").choices[0].message.tool_calls or []
    assert [type(c) for c in calls] == [ChatCompletionMessageFunctionToolCall] * 2
    first = calls[0]
    assert isinstance(first, ChatCompletionMessageFunctionToolCall)
    assert (first.id, first.function.name) == ("call_paris", "get_weather")
    assert json.loads(first.function.arguments) == {"city": "Paris", "unit": "C"}
    assert first.model_extra == {"extra_content": {"google": {"thought_signature": "c2ln"}}}

    usage = get("parallel-tool-calls").usage
    assert usage is not None and usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 64
    assert usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == 12
    assert get("parallel-tool-calls").service_tier == "default"

    annotations = get("annotations").choices[0].message.annotations or []
    assert annotations[0].url_citation is not None
    assert annotations[0].url_citation.url == "https://example.org/olympics"
    reasoning = get("reasoning").choices[0]
    assert reasoning.message.reasoning_content == "2 plus 2 is 4; say so briefly."
    assert reasoning.message.reasoning == reasoning.message.reasoning_content
    assert reasoning.model_extra == {"stop_reason": 128009}
    assert get("refusal").choices[0].message.refusal == "I can't help with that."
    audio = get("audio").choices[0].message.audio
    assert audio is not None and audio.transcript.startswith("Hello")
    legacy = get("legacy-function-call").choices[0].message.function_call
    assert legacy is not None and legacy.name == "get_weather"


def _official_stream_final(raw: bytes) -> dict[str, Any]:
    client = official(serve(raw, stream=True))
    with client.chat.completions.stream(
        model="m", messages=[{"role": "user", "content": "Hi"}]
    ) as stream:
        final = stream.get_final_completion().model_dump(mode="json", exclude_none=True)
    for choice in final["choices"]:
        # openai leaves the stream's "index" on each tool call and adds "parsed"; a
        # non-streamed reply has neither, and our accumulated one neither.
        choice["message"].pop("parsed", None)
        for call in choice["message"].get("tool_calls", []):
            call.pop("index")
    return final


@pytest.mark.parametrize("name", sorted(REPLIES))
def test_a_stream_accumulates_to_the_reply_and_to_what_openai_accumulates(
    api: Api, name: str
) -> None:
    raw = sse_body(stream_of(REPLIES[name]))
    client = api.client(serve(raw, stream=True))
    final = api.run(
        lambda c: api.final(c.chat.completions.create(model="m", messages=MESSAGES, stream=True)),
        client,
    )
    dumped = final.model_dump(mode="json", exclude_none=True)
    assert dumped == without_nulls(REPLIES[name])
    assert dumped == _official_stream_final(raw)


def test_streamed_tool_calls_keep_their_order_and_split_arguments(api: Api) -> None:
    chunks = stream_of(REPLIES["parallel-tool-calls"])
    # interleave the two calls' argument pieces, as services streaming in parallel do
    calls = [c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("tool_calls")]
    assert len(calls) > 4
    first, second = calls[: len(calls) // 2], calls[len(calls) // 2 :]
    rest = [c for c in chunks if c not in calls]
    mixed = [rest[0], *[x for pair in zip(first, second, strict=False) for x in pair], *rest[1:]]
    raw = sse_body(mixed)
    final = api.run(
        lambda c: api.final(c.chat.completions.create(model="m", messages=MESSAGES, stream=True)),
        api.client(serve(raw, stream=True)),
    )
    assert final.model_dump(mode="json", exclude_none=True) == without_nulls(
        REPLIES["parallel-tool-calls"]
    )


# --- requests ------------------------------------------------------------------------------

IMAGE = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"

FULL_REQUEST: dict[str, Any] = {
    "model": "gpt-4o",
    "messages": [
        {"role": "developer", "content": "Answer in JSON."},
        {"role": "system", "content": [{"type": "text", "text": "Be brief."}], "name": "sys"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in these?"},
                {"type": "image_url", "image_url": {"url": "https://example.org/cat.png"}},
                {"type": "image_url", "image_url": {"url": IMAGE, "detail": "high"}},
                {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
                {
                    "type": "file",
                    "file": {"file_data": "data:application/pdf;base64,JVBE", "filename": "a.pdf"},
                },
                {"type": "file", "file": {"file_id": "file-abc123"}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                },
                {"id": "call_2", "type": "custom", "custom": {"name": "sql", "input": "SELECT 1"}},
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "1"}]},
        {
            "role": "assistant",
            "content": [{"type": "refusal", "refusal": "No."}],
            "refusal": "No.",
            "audio": {"id": "audio_1"},
        },
        {"role": "function", "name": "legacy", "content": "ok"},
    ],
    "tools": [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather in a city.",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                    "additionalProperties": False,
                },
                "strict": True,
            },
        },
        {
            "type": "custom",
            "custom": {
                "name": "sql",
                "description": "Run SQL.",
                "format": {"type": "grammar", "grammar": {"syntax": "lark", "definition": "s"}},
            },
        },
    ],
    "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
    "parallel_tool_calls": False,
    "response_format": {
        "type": "json_schema",
        "json_schema": {
            "name": "answer",
            "description": "The answer.",
            "schema": {"type": "object", "properties": {}, "additionalProperties": False},
            "strict": True,
        },
    },
    "max_completion_tokens": 256,
    "temperature": 0.2,
    "top_p": 0.9,
    "n": 1,
    "stop": ["\n\n"],
    "seed": 7,
    "logit_bias": {"50256": -100},
    "logprobs": True,
    "top_logprobs": 2,
    "presence_penalty": 0.5,
    "frequency_penalty": 0.25,
    "user": "user-1",
    "safety_identifier": "hash-1",
    "prompt_cache_key": "k1",
    "store": True,
    "metadata": {"app": "test"},
    "modalities": ["text", "audio"],
    "audio": {"format": "wav", "voice": "alloy"},
    "prediction": {"type": "content", "content": "{}"},
    "reasoning_effort": "low",
    "verbosity": "low",
    "service_tier": "flex",
    "web_search_options": {"search_context_size": "low"},
}


def test_a_full_hosted_request_goes_out_as_the_official_client_sends_it(api: Api) -> None:
    raw = json.dumps(REPLIES["annotations"]).encode()
    ours: list[httpx.Request] = []
    theirs: list[httpx.Request] = []
    extra = {"extra_body": {"x_vendor_flag": True}}
    api.run(
        lambda c: c.chat.completions.create(**FULL_REQUEST, **extra),
        api.client(serve(raw, stream=False, seen=ours)),
    )
    official(serve(raw, stream=False, seen=theirs)).chat.completions.create(**FULL_REQUEST, **extra)
    sent = json.loads(ours[0].content)
    assert sent == json.loads(theirs[0].content)
    assert sent == {**FULL_REQUEST, "x_vendor_flag": True}


def test_unknown_content_parts_tools_and_formats_are_sent_as_given(api: Api) -> None:
    raw = json.dumps(REPLIES["annotations"]).encode()
    seen: list[httpx.Request] = []
    request = {
        "model": "m",
        "messages": [
            {"role": "user", "content": [{"type": "input_video", "video": {"url": "v.mp4"}}]}
        ],
        "tools": [{"type": "web_search", "search": {"depth": 2}}],
        "tool_choice": {"type": "mcp", "server": "x"},
        "response_format": {"type": "regex", "regex": "[a-z]+"},
    }
    api.run(lambda c: c.chat.completions.create(**request), api.client(serve(raw, False, seen)))
    assert json.loads(seen[0].content) == request


@pytest.mark.parametrize(
    ("kwargs", "where"),
    [
        ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "image_url"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
            "url",
        ),
        ({"messages": MESSAGES, "tools": [{"type": "function"}]}, "function"),
        ({"messages": MESSAGES, "tools": [{"type": "function", "function": {}}]}, "name"),
        ({"messages": MESSAGES, "tool_choice": "sometimes"}, "tool_choice"),
        ({"messages": MESSAGES, "response_format": {"type": "json_schema"}}, "json_schema"),
        ({"messages": [{"role": "tool", "content": 5}]}, "content"),
        (
            {"messages": [{"role": "assistant", "tool_calls": [{"id": "c", "function": {}}]}]},
            "tool_calls",
        ),
        ({"messages": MESSAGES, "parallel_tool_calls": "yes"}, "parallel_tool_calls"),
    ],
)
def test_real_mistakes_in_the_new_fields_fail_before_sending(
    api: Api, kwargs: dict[str, Any], where: str
) -> None:
    seen: list[httpx.Request] = []
    client = api.client(serve(b"{}", False, seen))
    with pytest.raises(Exception) as info:
        api.run(lambda c: c.chat.completions.create(**kwargs), client)
    assert type(info.value).__name__ == "InvalidRequestParamsError"
    assert where in str(info.value)
    assert seen == []


def test_a_reply_message_can_be_sent_back_as_history(api: Api) -> None:
    raw = json.dumps(REPLIES["parallel-tool-calls"]).encode()
    seen: list[httpx.Request] = []
    client = api.client(serve(raw, False, seen))
    reply = api.run(lambda c: c.chat.completions.create(model="m", messages=MESSAGES), client)
    message = reply.choices[0].message
    history = [*MESSAGES, message, {"role": "tool", "tool_call_id": "call_paris", "content": "9"}]
    api.run(lambda c: c.chat.completions.create(model="m", messages=history), client)
    sent = json.loads(seen[1].content)["messages"][1]
    # the calls go back exactly as they came (extra fields too); annotations do not
    assert sent == {
        "role": "assistant",
        "content": None,
        "tool_calls": REPLIES["parallel-tool-calls"]["choices"][0]["message"]["tool_calls"],
    }
