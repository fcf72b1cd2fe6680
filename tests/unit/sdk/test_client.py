"""Client behaviour: requests on the wire, configuration, error mapping, bad input."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from kit.clients import MESSAGES, Api, completion_body

import sdk
from sdk.types import ChatCompletion, ChatMessage

NO_RETRY = sdk.RetryPolicy(max_retries=0)


def recorder(response: httpx.Response | None = None) -> tuple[Any, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return response if response is not None else httpx.Response(200, json=completion_body())

    return handler, seen


# --- what goes on the wire -----------------------------------------------------------------


def test_chat_request_on_the_wire(api: Api) -> None:
    handler, seen = recorder()
    client = api.client(handler, api_key="sk-test", default_headers={"X-App": "demo"})
    result = api.run(
        lambda c: c.chat.completions.create(
            model="m",
            messages=[*MESSAGES, ChatMessage(role="assistant", content="Hello")],
            temperature=0.5,
            stop=["\n"],
            extra_headers={"X-Trace": "t1"},
            extra_query={"debug": "1"},
            extra_body={"repetition_penalty": 1.1},
        ),
        client,
    )
    assert isinstance(result, ChatCompletion)
    request = seen[0]
    assert request.method == "POST"
    assert str(request.url) == "http://127.0.0.1:8000/v1/chat/completions?debug=1"
    assert request.headers["Authorization"] == "Bearer sk-test"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Accept"] == "application/json"
    assert request.headers["X-App"] == "demo" and request.headers["X-Trace"] == "t1"
    assert request.headers["User-Agent"].startswith("llm-sdk/")
    # only what the caller set is sent (no nulls for unset fields), extras included
    assert json.loads(request.content) == {
        "model": "m",
        "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello"},
        ],
        "temperature": 0.5,
        "stop": ["\n"],
        "repetition_penalty": 1.1,
    }


def test_no_api_key_means_no_authorization_header(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LLM_SDK_API_KEY", raising=False)
    handler, seen = recorder(httpx.Response(200, json={"object": "list", "data": []}))
    api.run(lambda c: c.models.list(), api.client(handler))
    assert "Authorization" not in seen[0].headers


def test_environment_configures_base_url_and_key(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_SDK_BASE_URL", "https://llm.example/api/v1/")
    monkeypatch.setenv("LLM_SDK_API_KEY", "env-key")
    handler, seen = recorder(httpx.Response(200, json={"object": "list", "data": []}))
    api.run(lambda c: c.models.list(), api.client(handler))
    assert str(seen[0].url) == "https://llm.example/api/v1/models"
    assert seen[0].headers["Authorization"] == "Bearer env-key"


@pytest.mark.parametrize(
    ("base_url", "expected"),
    [
        ("http://h:9/v1", "http://h:9/tokenize"),
        ("http://h:9/v1/", "http://h:9/tokenize"),
        ("http://h/proxy/v1", "http://h/proxy/tokenize"),
        ("http://h/openai", "http://h/openai/tokenize"),
    ],
)
def test_tokenize_goes_to_the_server_root(api: Api, base_url: str, expected: str) -> None:
    handler, seen = recorder(httpx.Response(200, json={"tokens": [1, 2], "count": 2}))
    client = api.client(handler, base_url=base_url)
    result = api.run(lambda c: c.tokenize(prompt="Hello world"), client)
    assert (result.tokens, result.count) == ([1, 2], 2)
    assert str(seen[0].url) == expected
    assert json.loads(seen[0].content) == {"prompt": "Hello world"}


def test_tokenize_messages_and_detokenize(api: Api) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/detokenize":
            return httpx.Response(200, json={"prompt": "Hi"})
        return httpx.Response(200, json={"tokens": [5], "count": 1, "max_model_len": 8192})

    client = api.client(handler)
    tokens = api.run(lambda c: c.tokenize(messages=MESSAGES, add_generation_prompt=True), client)
    assert tokens.max_model_len == 8192
    assert api.run(lambda c: c.detokenize((5,), model="m"), client).prompt == "Hi"


def test_models_list_and_retrieve(api: Api) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/models":
            return httpx.Response(
                200, json={"object": "list", "data": [{"id": "a/b", "owned_by": "me"}]}
            )
        assert request.url.raw_path == b"/v1/models/a%2Fb"
        return httpx.Response(
            200, json={"id": "a/b", "object": "model", "created": 1, "owned_by": "me"}
        )

    client = api.client(handler)
    models = api.run(lambda c: c.models.list(), client)
    assert [m.id for m in models.data] == ["a/b"]
    assert api.run(lambda c: c.models.retrieve("a/b"), client).owned_by == "me"


def test_embeddings_and_completions(api: Api) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/embeddings":
            return httpx.Response(
                200,
                json={
                    "object": "list",
                    "model": "e",
                    "data": [{"index": 0, "embedding": [0.5, 1.0]}],
                    "usage": {"prompt_tokens": 2, "total_tokens": 2},
                },
            )
        return httpx.Response(
            200,
            json={
                "id": "cmpl-1",
                "object": "text_completion",
                "created": 1,
                "model": "m",
                "choices": [{"index": 0, "text": " there", "finish_reason": "length"}],
            },
        )

    client = api.client(handler)
    embedding = api.run(lambda c: c.embeddings.create(input=["hi"], model="e"), client)
    assert embedding.data[0].embedding == [0.5, 1.0]
    completion = api.run(lambda c: c.completions.create(prompt=[1, 2, 3], max_tokens=2), client)
    assert completion.choices[0].text == " there"


def test_timeouts_default_client_and_per_call(api: Api) -> None:
    handler, seen = recorder()
    client = api.client(handler)
    api.run(lambda c: c.chat.completions.create(messages=MESSAGES), client)
    api.run(lambda c: c.chat.completions.create(messages=MESSAGES, timeout=2.5), client)
    api.run(lambda c: c.chat.completions.create(messages=MESSAGES, timeout=None), client)
    custom = httpx.Timeout(1.0, read=30.0)
    api.run(
        lambda c: c.with_options(timeout=custom).chat.completions.create(messages=MESSAGES), client
    )
    timeouts = [r.extensions["timeout"] for r in seen]
    assert timeouts[0] == {"connect": 5.0, "read": 600.0, "write": 600.0, "pool": 600.0}
    assert timeouts[1] == dict.fromkeys(("connect", "read", "write", "pool"), 2.5)
    assert timeouts[2] == dict.fromkeys(("connect", "read", "write", "pool"))
    assert timeouts[3] == {"connect": 1.0, "read": 30.0, "write": 1.0, "pool": 1.0}


def test_with_options_copies_and_shares_the_pool(api: Api) -> None:
    handler, seen = recorder()
    client = api.client(handler, api_key="a", default_headers={"X-A": "1"})
    other = client.with_options(
        api_key="b", base_url="http://other:1/v1", max_retries=5, default_headers={"X-B": "2"}
    )
    assert other._http is client._http
    assert (other.max_retries, client.max_retries) == (5, 2)
    api.run(lambda c: c.chat.completions.create(messages=MESSAGES), other)
    assert str(seen[0].url) == "http://other:1/v1/chat/completions"
    assert seen[0].headers["Authorization"] == "Bearer b"
    assert (seen[0].headers["X-A"], seen[0].headers["X-B"]) == ("1", "2")
    assert str(client.base_url) == "http://127.0.0.1:8000/v1"
    policy = client.with_options(retry_policy=sdk.RetryPolicy(max_retries=4)).max_retries
    assert policy == 4


def test_close_and_context_managers(api: Api) -> None:
    handler, _ = recorder()
    client = api.client(handler)
    copy = client.with_options(timeout=1.0)

    async def async_lifecycle() -> None:
        async with client as entered:
            assert entered is client
            await copy.close()  # a copy never closes the shared pool
            assert not client._http.is_closed
        assert client._http.is_closed

    if api.is_async:
        api.run(lambda _: async_lifecycle(), client)
        return
    with client as entered:
        assert entered is client
        copy.close()
        assert not client._http.is_closed
    assert client._http.is_closed


def test_injected_http_client_is_used_and_not_closed(api: Api) -> None:
    handler, seen = recorder()
    transport = httpx.MockTransport(handler)
    http: Any = (
        httpx.AsyncClient(transport=transport)
        if api.is_async
        else httpx.Client(transport=transport)
    )
    cls = sdk.AsyncClient if api.is_async else sdk.Client
    client = cls(http_client=http)
    api.run(lambda c: c.chat.completions.create(messages=MESSAGES), client)
    api.run(lambda c: c.close(), client)
    assert len(seen) == 1 and not http.is_closed


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "error_class"),
    [
        (400, sdk.BadRequestError),
        (401, sdk.AuthenticationError),
        (403, sdk.PermissionDeniedError),
        (404, sdk.NotFoundError),
        (409, sdk.ConflictError),
        (413, sdk.APIStatusError),
        (422, sdk.UnprocessableEntityError),
        (429, sdk.RateLimitError),
        (500, sdk.InternalServerError),
        (503, sdk.InternalServerError),
    ],
)
def test_status_errors_carry_data(
    api: Api, code: int, error_class: type[sdk.APIStatusError]
) -> None:
    body = {"error": {"message": "it broke", "type": "some_type", "param": "messages", "code": 7}}
    response = httpx.Response(
        code, json=body, headers={"x-request-id": "req-9", "retry-after": "1"}
    )
    handler, _ = recorder(response)
    with pytest.raises(error_class) as info:
        api.run(
            lambda c: c.chat.completions.create(messages=MESSAGES),
            api.client(handler, retry_policy=NO_RETRY),
        )
    error = info.value
    assert type(error) is error_class
    assert (error.status_code, error.request_id, error.retry_after) == (code, "req-9", 1.0)
    assert (error.type, error.param, error.code) == ("some_type", "messages", "7")
    assert error.body == body
    assert error.headers["x-request-id"] == "req-9"
    assert str(error) == f"Error code: {code} - it broke"
    assert error.request is not None and error.request.url.path == "/v1/chat/completions"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"error": "Unauthorized"}', "Unauthorized"),  # vLLM's 401, TGI
        (b'{"detail": "Not authenticated"}', "Not authenticated"),  # FastAPI
        (b'{"object": "error", "message": "old vLLM"}', "old vLLM"),
        (b"<html><body>Bad gateway</body></html>", "<html><body>Bad gateway</body></html>"),
        (b"", "Bad Gateway"),
        (b"[1, 2]", "[1, 2]"),
    ],
)
def test_error_messages_from_foreign_bodies(api: Api, body: bytes, message: str) -> None:
    handler, _ = recorder(httpx.Response(502, content=body))
    with pytest.raises(sdk.InternalServerError) as info:
        api.run(lambda c: c.models.list(), api.client(handler, retry_policy=NO_RETRY))
    assert str(info.value) == f"Error code: 502 - {message}"


@pytest.mark.parametrize(
    ("content", "headers"),
    [
        (b"<html>Welcome to nginx</html>", {"content-type": "text/html"}),
        (b"\xff\xfe garbage", {}),
        (b'{"unexpected": true}', {"content-type": "application/json"}),
    ],
)
def test_2xx_that_is_not_the_expected_json(
    api: Api, content: bytes, headers: dict[str, str]
) -> None:
    handler, seen = recorder(httpx.Response(200, content=content, headers=headers))
    with pytest.raises(sdk.APIResponseValidationError) as info:
        api.run(lambda c: c.chat.completions.create(messages=MESSAGES), api.client(handler))
    assert info.value.status_code == 200
    assert len(seen) == 1  # not retried


@pytest.mark.parametrize(
    "kwargs",
    [
        {"messages": "hi"},
        {"messages": [{"role": "robot", "content": "hi"}]},
        {"messages": MESSAGES, "temperature": "hot"},
        {"messages": MESSAGES, "max_tokens": "5"},
        {"messages": MESSAGES, "stream_options": {"include_usage": "yes"}},
        {},
    ],
)
def test_wrong_parameters_fail_before_sending(api: Api, kwargs: dict[str, Any]) -> None:
    handler, seen = recorder()
    with pytest.raises(sdk.InvalidRequestParamsError) as info:
        api.run(lambda c: c.chat.completions.create(**kwargs), api.client(handler))
    assert info.value.errors  # pydantic's list, for programs; it is also a ValueError
    assert seen == []


def test_other_bad_inputs_fail_before_sending(api: Api) -> None:
    handler, seen = recorder()
    client = api.client(handler)
    with pytest.raises(
        sdk.InvalidRequestParamsError, match="exactly one of 'prompt' or 'messages'"
    ):
        api.run(lambda c: c.tokenize(), client)
    with pytest.raises(sdk.InvalidRequestParamsError):
        api.run(lambda c: c.detokenize(["a"]), client)
    with pytest.raises(sdk.InvalidRequestParamsError):
        api.run(lambda c: c.detokenize(5), client)
    with pytest.raises(sdk.InvalidRequestParamsError):
        api.run(lambda c: c.models.retrieve(""), client)
    with pytest.raises(sdk.InvalidRequestParamsError):
        api.run(lambda c: c.completions.create(prompt=[1, "a"]), client)
    assert seen == []


@pytest.mark.parametrize(
    "base_url", ["not a url", "ftp://host/v1", "http://", "localhost:8000", "http://[::1"]
)
def test_invalid_base_url_fails_at_construction(api: Api, base_url: str) -> None:
    handler, _ = recorder()
    with pytest.raises(ValueError, match="invalid base_url"):
        api.client(handler, base_url=base_url)


def test_invalid_client_arguments(api: Api) -> None:
    handler, _ = recorder()
    with pytest.raises(ValueError, match="max_retries"):
        api.client(handler, max_retries=-1)
    with pytest.raises(ValueError, match="either http_client or transport"):
        cls = sdk.AsyncClient if api.is_async else sdk.Client
        http: Any = httpx.AsyncClient() if api.is_async else httpx.Client()
        cls(http_client=http, transport=httpx.MockTransport(handler))


def test_api_key_never_shown(api: Api) -> None:
    secret = "sk-live-0123456789"
    response = httpx.Response(401, json={"error": {"message": "bad key"}})
    handler, _ = recorder(response)
    client = api.client(handler, api_key=secret)
    with pytest.raises(sdk.AuthenticationError) as info:
        api.run(lambda c: c.models.list(), client)
    error = info.value
    shown = [
        repr(client),
        str(client),
        str(error),
        repr(error),
        repr(error.request),
        repr(client._config),
    ]
    shown.append(repr(error.request.headers) if error.request else "")
    assert all(secret not in text for text in shown)
    assert (
        error.request is not None and error.request.headers["Authorization"] == f"Bearer {secret}"
    )
