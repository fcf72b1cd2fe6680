"""``/openapi.json`` says what the server does: its errors, content types, auth and limits.

``test_openapi_fuzz.py`` holds the server to the document; these tests hold the document
to the facts a fuzzer cannot reach (a 413, a 429, a loading 503) and to OpenAPI 3.1 itself.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from kit.fake_engine import CHAT, FakeEngine
from openapi_spec_validator import validate

from server_ref.api import create_app
from server_ref.api.openapi import decimal_below

GENERATION = ("/v1/chat/completions", "/v1/completions")
PROTECTED = ("/v1/models", "/v1/chat/completions", "/tokenize", "/detokenize")
OPEN = ("/health", "/metrics")


async def document(engine: FakeEngine, **kwargs: Any) -> dict[str, Any]:
    app = create_app(engine, **kwargs)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as c:
        response = await c.get("/openapi.json")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(p, m, op) for p, item in doc["paths"].items() for m, op in item.items()]


@pytest.mark.parametrize("api_key", [None, "sk-test"])
async def test_the_document_is_valid_openapi_3_1(engine: FakeEngine, api_key: str | None) -> None:
    doc = await document(engine, api_key=api_key)
    assert doc["openapi"].startswith("3.1")
    validate(doc)


async def test_no_422_and_every_error_is_openais_shape(engine: FakeEngine) -> None:
    doc = await document(engine)
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    error = doc["components"]["schemas"]["ErrorBody"]
    assert error["required"] == ["error"]
    detail = doc["components"]["schemas"]["ErrorDetail"]
    assert sorted(detail["required"]) == ["code", "message", "param", "type"]
    for path, method, op in operations(doc):
        statuses = set(op["responses"])
        assert "422" not in statuses, (path, method)
        assert {"500", "503"} <= statuses, (path, method)  # a bug; loading or draining
        assert ("413" in statuses) == ("requestBody" in op), (path, method)
        for status, response in op["responses"].items():
            if int(status) >= 400:
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (path, status)


async def test_each_route_documents_the_errors_it_raises(engine: FakeEngine) -> None:
    doc = await document(engine)
    for path in GENERATION:
        responses = doc["paths"][path]["post"]["responses"]
        assert {"200", "400", "404", "413", "429"} <= set(responses)
        assert responses["429"]["headers"]["Retry-After"]["required"] is True
        assert "Retry-After" in responses["503"]["headers"]
    for path in ("/tokenize", "/detokenize"):
        assert {"400", "404"} <= set(doc["paths"][path]["post"]["responses"])
    ranks = doc["paths"]["/v1/models/{model_id}/tokenizer/ranks"]["get"]["responses"]
    assert {"200", "304", "404"} <= set(ranks)


async def test_an_api_key_adds_bearer_security_and_401_where_it_guards(
    engine: FakeEngine,
) -> None:
    doc = await document(engine)
    assert "securitySchemes" not in doc["components"]
    assert all("401" not in op["responses"] for _, _, op in operations(doc))
    doc = await document(engine, api_key="sk-test")
    assert doc["components"]["securitySchemes"] == {"bearer": {"type": "http", "scheme": "bearer"}}
    for path, _, op in operations(doc):
        guarded = path not in OPEN
        assert ("401" in op["responses"]) == guarded, path
        assert (op.get("security") == [{"bearer": []}]) == guarded, path
    assert {p for p, _, _ in operations(doc)} >= {*PROTECTED, *OPEN}


async def test_content_types_are_the_ones_sent(engine: FakeEngine) -> None:
    doc = await document(engine)
    metrics = doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert list(metrics) == ["text/plain"]
    for path in GENERATION:
        ok = doc["paths"][path]["post"]["responses"]["200"]["content"]
        assert set(ok) == {"application/json", "text/event-stream"}
        event = ok["text/event-stream"]["schema"]
        assert event["required"] == ["data"]
        assert {"const": "[DONE]"} in event["properties"]["data"]["anyOf"]
    health = doc["paths"]["/health"]["get"]["responses"]["200"]["content"]
    assert health["application/json"]["schema"] == {"$ref": "#/components/schemas/Health"}


async def test_the_limits_of_the_loaded_model_are_filled_in() -> None:
    engine = FakeEngine(context_length=300)  # vocabulary: 258 ids
    doc = await document(engine, served_model_name="served")
    schemas = doc["components"]["schemas"]
    completion = schemas["ServerCompletionRequest"]["properties"]
    assert completion["max_tokens"]["anyOf"][0]["maximum"] == 299  # one prompt token at least
    assert completion["model"]["anyOf"][0]["enum"] == ["served", "fake-model"]
    ids = completion["prompt"]["anyOf"][2]
    assert ids["minItems"] == 1 and ids["items"]["maximum"] == 257
    bias_keys = completion["logit_bias"]["anyOf"][0]["propertyNames"]
    assert bias_keys == {"pattern": decimal_below(258)}
    assert schemas["ServerDetokenizeRequest"]["properties"]["tokens"]["items"]["maximum"] == 257
    chat = schemas["ServerChatCompletionRequest"]["properties"]
    assert chat["max_completion_tokens"]["anyOf"][0]["maximum"] == 299
    model_id = doc["paths"]["/v1/models/{model_id}"]["get"]["parameters"][0]["schema"]
    assert model_id["enum"] == ["served", "fake-model"]
    assert "x-server-limit" not in str(doc)


async def test_the_rules_between_fields_are_in_the_schemas(engine: FakeEngine) -> None:
    schemas = (await document(engine))["components"]["schemas"]
    tokenize = schemas["ServerTokenizeRequest"]
    assert [branch["required"] for branch in tokenize["oneOf"]] == [["prompt"], ["messages"]]
    chat = schemas["ServerChatCompletionRequest"]
    assert chat["allOf"][0]["if"]["required"] == ["top_logprobs"]
    assert chat["properties"]["messages"]["minItems"] == 1
    assert chat["properties"]["functions"]["anyOf"] == [{"const": []}, {"type": "null"}]
    assert "anyOf" in chat["properties"]["tools"] and "const" not in str(
        chat["properties"]["tools"]
    )
    completion = schemas["ServerCompletionRequest"]
    assert completion["allOf"][0]["if"]["properties"] == {"echo": {"const": True}}
    assert completion["properties"]["best_of"]["anyOf"] == [{"const": 1}, {"type": "null"}]
    assert completion["properties"]["tools"]["anyOf"] == [{"const": []}, {"type": "null"}]
    message = schemas["ServerChatMessage"]["properties"]
    assert message["function_call"]["anyOf"] == [{"type": "null"}]


@pytest.mark.parametrize("n", [1, 2, 9, 10, 11, 100, 258, 1000, 49152])
def test_decimal_below_matches_exactly_the_ids_below_n(n: int) -> None:
    pattern = re.compile(decimal_below(n))
    matched = [i for i in range(10 * n + 10) if pattern.search(str(i))]
    assert matched == list(range(n))
    assert not pattern.search("01") and not pattern.search("-1") and not pattern.search("")


async def test_documented_statuses_match_what_is_sent(engine: FakeEngine) -> None:
    """The ones a fuzzer never provokes: 413, 429, 503 (engine down) and 401."""
    app = create_app(engine, api_key="k", max_body_bytes=100)
    auth = {"authorization": "Bearer k"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as c:
        big = {**CHAT, "user": "x" * 200}
        assert (await c.post("/v1/chat/completions", json=big, headers=auth)).status_code == 413
        assert (await c.post("/v1/chat/completions", json=CHAT)).status_code == 401
        engine.queue_full = True
        r = await c.post("/v1/chat/completions", json=CHAT, headers=auth)
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        engine.queue_full, engine.ready = False, False
        assert (
            await c.post("/v1/completions", json={"prompt": "a"}, headers=auth)
        ).status_code == 503
        assert (await c.get("/health")).status_code == 503
