"""Fixtures for the policy tests: clients that do not retry (a scripted server answers each
request once), and that scripted server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kit.clients import Api
from kit.tokenizer_server import FakeServer

import sdk


@pytest.fixture(params=["sync", "async"])
def api(request: pytest.FixtureRequest) -> Iterator[Api]:
    api = Api(request.param == "async", retry_policy=sdk.RetryPolicy(max_retries=0))
    yield api
    api.close()


@pytest.fixture
def server() -> FakeServer:
    return FakeServer()
