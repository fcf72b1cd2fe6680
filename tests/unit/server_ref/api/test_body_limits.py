"""``BodyLimitMiddleware``'s deadline: it bounds the body, not what comes after it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from server_ref.api.errors import RequestTimeoutError
from server_ref.api.middleware import BodyLimitMiddleware

SCOPE = {"type": "http", "headers": []}


def messages(*items: tuple[float, dict[str, Any]]) -> Any:
    """A ``receive`` that returns each message after its delay."""
    queue = list(items)

    async def receive() -> dict[str, Any]:
        delay, message = queue.pop(0)
        await asyncio.sleep(delay)
        return message

    return receive


async def run(receive: Any, reads: int) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        for _ in range(reads):
            seen.append(await receive())

    async def send(message: Any) -> None:
        pass

    await BodyLimitMiddleware(app, max_body_bytes=100, body_timeout_s=0.2)(SCOPE, receive, send)
    return seen


async def test_a_body_still_coming_at_the_deadline_is_408() -> None:
    receive = messages(
        (0.0, {"type": "http.request", "body": b"{", "more_body": True}),
        (1.0, {"type": "http.request", "body": b"}", "more_body": False}),
    )
    with pytest.raises(RequestTimeoutError) as info:
        await run(receive, reads=2)
    assert info.value.status_code == 408
    assert info.value.headers["Connection"] == "close"


async def test_waiting_for_a_disconnect_after_the_body_is_not_timed() -> None:
    receive = messages(
        (0.0, {"type": "http.request", "body": b"{}", "more_body": False}),
        (0.5, {"type": "http.disconnect"}),  # a stream watching its client, past the deadline
    )
    seen = await run(receive, reads=2)
    assert [m["type"] for m in seen] == ["http.request", "http.disconnect"]
