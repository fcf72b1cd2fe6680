"""Fuzz the HTTP layer with schemathesis, driven by the server's own ``/openapi.json``.

Every operation, every phase schemathesis runs under pytest (explicit examples, boundary
coverage, random fuzzing; positive and negative cases) and every check it has: status
codes, content types, headers and bodies as documented, schema-invalid requests refused
and schema-valid ones accepted, no 5xx, 405 with Allow for other methods, auth enforced. On
top, every error body must be OpenAI's (undocumented statuses such as 405 included).

The app runs in-process over the scripted engine with the tiny GGUF's real tokenizer, so the
chat template, the tokenizer export and token-id limits are the real ones. The long run
against a real ``serve`` process is ``scripts/fuzz_openapi.py``.

One rule cannot be a schema: a prompt plus ``max_tokens`` must fit the context window. A
schema-valid request may therefore get a 400, but only with code
``context_length_exceeded``; ``accepted_or_context_full`` allows exactly that.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from kit.fake_engine import FakeEngine
from schemathesis.specs.openapi.checks import positive_data_acceptance

from server_ref.api import create_app
from server_ref.loading.gguf_tokenizer import load_gguf_tokenizer

API_KEY = "sk-fuzz"
MAX_EXAMPLES = 50  # per operation and phase; the coverage phase adds its boundary cases


@pytest.fixture(scope="module", params=[None, API_KEY], ids=["open", "api-key"])
def api_schema(request: pytest.FixtureRequest, tiny_gguf: Path) -> Any:
    tokenizer = load_gguf_tokenizer(tiny_gguf)
    engine = FakeEngine(tokenizer=tokenizer, context_length=512)  # the real one for the bytes
    engine.model_info = dataclasses.replace(engine.model_info, vocab_size=tokenizer.n_vocab)
    app = create_app(engine, api_key=request.param)
    options: dict[str, Any] = {
        # unknown query parameters are ignored (HTTP's custom), so not a negative case
        "generation": {"allow-extra-parameters": False},
        # show max_tokens and tokens in failure reports (their names look like secrets)
        "output": {"sanitization": {"enabled": False}},
    }
    if request.param:
        # sent where the document asks for it, left out by the cases that test the 401
        options["auth"] = {"openapi": {"bearer": {"bearer": request.param}}}
    config = schemathesis.Config.from_dict(options)
    return schemathesis.openapi.from_asgi("/openapi.json", app, config=config)


schema = schemathesis.pytest.from_fixture("api_schema")


def openai_error_shape(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every status >= 400 carries ``{"error": {message, type, param, code}}``."""
    if response.status_code < 400:
        return None
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert isinstance(error["message"], str) and error["message"], error
    return None


def accepted_or_context_full(ctx: Any, response: Any, case: Any) -> bool | None:
    """``positive_data_acceptance``, except for the one rule no schema can state."""
    if response.status_code == 400 and response.json()["error"]["code"] == (
        "context_length_exceeded"
    ):
        return None
    return positive_data_acceptance(ctx, response, case)


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,  # the same cases on every run: a failure here is never a flake
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_conforms_to_the_document(case: Any) -> None:
    case.call_and_validate(
        excluded_checks=[positive_data_acceptance],
        additional_checks=[accepted_or_context_full, openai_error_shape],
    )
