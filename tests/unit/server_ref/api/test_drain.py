"""``EngineServer``'s drain, driven tick by tick without a socket: the first signal drains,
the deadline stops what is left, a second signal stops at once."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from server_ref.api import serve
from server_ref.api.serve import EngineServer, ServeOptions


class Engine:
    def __init__(self) -> None:
        self.stopped: list[str] = []

    def abort_all(self, reason: str = "shutting down") -> None:
        self.stopped.append(reason)


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> EngineServer:
    monkeypatch.setattr(serve, "FLUSH_S", 0.05)
    server = EngineServer(ServeOptions(str(tmp_path / "model.gguf"), drain_timeout_s=0.1))
    server.gate.app = lambda scope, receive, send: None  # type: ignore[assignment,return-value]
    server.engine = Engine()  # type: ignore[assignment]
    return server


async def tick(server: EngineServer) -> bool:
    return await server.on_tick(1)  # not a multiple of 10: no date header refresh


async def test_drain_ends_when_the_last_request_is_done(server: EngineServer) -> None:
    server.gate.in_flight = 2
    server.handle_exit(signal.SIGTERM, None)
    assert server.gate.draining and not server.should_exit
    assert not await tick(server)
    server.gate.in_flight = 0
    assert await tick(server)
    assert server.engine.stopped == []  # type: ignore[union-attr]


async def test_the_deadline_stops_what_is_left_then_flushes(server: EngineServer) -> None:
    server.gate.in_flight = 1
    server.handle_exit(signal.SIGINT, None)
    assert not await tick(server)
    time.sleep(0.1)  # past the deadline
    assert not await tick(server)  # stops the rest, gives them FLUSH_S to be written
    assert server.engine.stopped == ["shutting down"]  # type: ignore[union-attr]
    time.sleep(0.06)
    assert await tick(server)  # a client that does not read is not waited for


async def test_a_second_signal_stops_at_once(server: EngineServer) -> None:
    server.gate.in_flight = 1
    server.handle_exit(signal.SIGTERM, None)
    server.handle_exit(signal.SIGTERM, None)
    assert server.should_exit and server.force_exit
    assert await tick(server)


def test_a_signal_while_loading_stops_without_draining(server: EngineServer) -> None:
    server.gate.app = None
    server.handle_exit(signal.SIGTERM, None)
    assert server.should_exit and not server.gate.draining
    assert server._captured_signals == []  # not re-raised after shutdown: exit status 0
