"""The gate ``serve`` puts in front of the app while the model loads and while it drains."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from server_ref.api.readiness import DeferredApp


@pytest.mark.parametrize("path", ["/health", "/v1/models", "/v1/chat/completions"])
async def test_503_in_openai_shape_while_loading(path: str) -> None:
    gate = DeferredApp()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(gate), base_url="http://t") as c:
        r = await c.post(path, json={}) if "chat" in path else await c.get(path)
    assert r.status_code == 503
    assert r.headers["retry-after"] == "2"
    assert r.json()["error"]["code"] == "model_loading"
    assert "not ready" in r.json()["error"]["message"]


async def test_hands_over_once_loaded() -> None:
    gate = DeferredApp()
    real = FastAPI()
    real.get("/health")(lambda: {"status": "ok"})
    gate.app = real
    async with httpx.AsyncClient(transport=httpx.ASGITransport(gate), base_url="http://t") as c:
        r = await c.get("/health")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


async def test_draining_refuses_new_requests_but_not_metrics() -> None:
    gate = DeferredApp()
    real = FastAPI()
    real.get("/metrics")(lambda: {"metrics": True})
    real.get("/v1/models")(lambda: {"data": []})
    gate.app = real
    gate.start_draining()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(gate), base_url="http://t") as c:
        for path in ("/health", "/v1/models"):
            r = await c.get(path)
            assert r.status_code == 503
            assert r.headers["retry-after"] == "2"
            assert r.headers["connection"] == "close"  # keep-alive clients go elsewhere
            error = r.json()["error"]
            assert (error["type"], error["code"]) == ("service_unavailable_error", "draining")
            assert "shutting down" in error["message"]
        assert (await c.get("/metrics")).status_code == 200
    assert gate.in_flight == 0


async def test_in_flight_counts_the_requests_let_through() -> None:
    gate = DeferredApp()
    seen: list[int] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(gate.in_flight)
        await JSONResponse({})(scope, receive, send)

    gate.app = app
    async with httpx.AsyncClient(transport=httpx.ASGITransport(gate), base_url="http://t") as c:
        await c.get("/anything")
    assert (seen, gate.in_flight) == ([1], 0)
