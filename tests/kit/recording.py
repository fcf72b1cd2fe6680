"""``Recording``: a real transport that keeps every request and the bytes of its answer, for
tests that must see what was sent to a live server (or that nothing was) and what it said."""

from __future__ import annotations

from typing import Any

import httpx


class Recording(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """Sends for real, and keeps every request with the bytes of its answer."""

    def __init__(self) -> None:
        self.sent: list[httpx.Request] = []
        self.answers: list[tuple[httpx.Request, bytes]] = []
        self._sync = httpx.HTTPTransport()
        self._async = httpx.AsyncHTTPTransport()

    def paths(self) -> list[str]:
        return [f"{r.method} {r.url.path}" for r in self.sent]

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        response = self._sync.handle_request(request)
        return self._keep(request, response, response.read())

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        response = await self._async.handle_async_request(request)
        return self._keep(request, response, await response.aread())

    def _keep(
        self, request: httpx.Request, response: httpx.Response, body: bytes
    ) -> httpx.Response:
        self.answers.append((request, body))
        return httpx.Response(
            response.status_code, headers=response.headers, content=body, request=request
        )


def assert_kept(ours: Any, theirs: Any, where: str = "") -> None:
    """Everything a server sent (``theirs``, its JSON) is in the SDK's object dumped as JSON
    (``ours``), with the same value: no field dropped or changed on the way."""
    if isinstance(theirs, dict):
        assert isinstance(ours, dict), where
        for key, value in theirs.items():
            assert key in ours, f"{where}.{key} was dropped"
            assert_kept(ours[key], value, f"{where}.{key}")
    elif isinstance(theirs, list):
        assert isinstance(ours, list) and len(ours) == len(theirs), where
        for i, (mine, value) in enumerate(zip(ours, theirs, strict=True)):
            assert_kept(mine, value, f"{where}[{i}]")
    else:
        assert ours == theirs, f"{where}: {ours!r} != {theirs!r}"
