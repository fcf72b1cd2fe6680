"""Fuzz the HTTP layer with schemathesis, driven by the server's own ``/openapi.json``.

Every operation, every phase schemathesis runs under pytest (explicit examples, boundary
coverage, random fuzzing; positive and negative cases) and every check it has: status
codes, content types, headers and bodies as documented, schema-invalid requests refused
and schema-valid ones accepted, no 5xx, 405 with Allow for other methods, auth enforced. On
top, every error body must be OpenAI's (undocumented statuses such as 405 included).

The app runs in-process over the scripted engine with the tiny GGUF's real tokenizer, so the
chat template, the tokenizer export and token-id limits are the real ones. The long run
against a real ``serve`` process is ``scripts/fuzz_openapi.py``.

The two checks of ``kit.openapi_checks`` come on top: every error in OpenAI's shape, and
a schema-valid request refused only for the one rule no schema can state (the prompt plus
``max_tokens`` over the context window).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from kit.fake_engine import FakeEngine
from kit.openapi_checks import CONFIG

from sdk.tokens import tokenizer_from_gguf
from server_ref.api import create_app

API_KEY = "sk-fuzz"
MAX_EXAMPLES = 50  # per operation and phase; the coverage phase adds its boundary cases


@pytest.fixture(scope="module", params=[None, API_KEY], ids=["open", "api-key"])
def api_schema(request: pytest.FixtureRequest, tiny_gguf: Path) -> Any:
    tokenizer = tokenizer_from_gguf(tiny_gguf)
    engine = FakeEngine(tokenizer=tokenizer, context_length=512)  # the real one for the bytes
    engine.model_info = dataclasses.replace(engine.model_info, vocab_size=tokenizer.n_vocab)
    app = create_app(engine, api_key=request.param)
    options = dict(CONFIG)
    if request.param:
        # sent where the document asks for it, left out by the cases that test the 401
        options["auth"] = {"openapi": {"bearer": {"bearer": request.param}}}
    config = schemathesis.Config.from_dict(options)
    return schemathesis.openapi.from_asgi("/openapi.json", app, config=config)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,  # the same cases on every run: a failure here is never a flake
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_conforms_to_the_document(case: Any) -> None:
    case.call_and_validate()  # every check enabled in the config, kit's two included
