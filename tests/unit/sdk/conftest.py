"""The ``api`` fixture: every test that takes it runs once per client flavour."""

from __future__ import annotations

import pytest
from sdk_testkit import Api


@pytest.fixture(params=["sync", "async"])
def api(request: pytest.FixtureRequest) -> Api:
    return Api(request.param == "async")
