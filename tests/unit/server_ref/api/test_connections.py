"""The request-head byte count of ``BoundedH11Protocol`` (no socket), and the default cap."""

from __future__ import annotations

import resource

import pytest

from server_ref.api.connections import (
    FD_RESERVE,
    BoundedH11Protocol,
    ConnectionLimits,
    default_max_connections,
)

HEAD = b"POST /v1/completions HTTP/1.1\r\nHost: t\r\nContent-Length: 102400\r\n\r\n"
BODY = b"x" * 102400


def counter(limit: int = 1024) -> BoundedH11Protocol:
    protocol = object.__new__(BoundedH11Protocol)  # only the counting state, no connection
    protocol.LIMITS = ConnectionLimits(max_head_bytes=limit)
    protocol._head_bytes, protocol._head_tail = 0, b""
    return protocol


def test_a_body_that_follows_the_head_in_the_same_read_is_not_counted() -> None:
    assert not counter()._head_too_big(HEAD + BODY)


@pytest.mark.parametrize("split", range(len(HEAD) - 3, len(HEAD)))
def test_the_blank_line_may_span_two_reads(split: int) -> None:
    protocol = counter()
    data = HEAD + BODY
    assert not protocol._head_too_big(data[:split])  # the head is not complete yet
    assert not protocol._head_too_big(data[split:])


def test_a_head_over_the_limit_is_too_big_even_in_small_pieces() -> None:
    protocol = counter(limit=100)
    pieces = [b"GET / HTTP/1.1\r\n"] + [b"X-Pad: " + b"a" * 20 + b"\r\n"] * 3  # 16 + 29 each
    assert [protocol._head_too_big(p) for p in pieces] == [False, False, False, True]


def test_the_connection_cap_leaves_file_descriptors_for_the_rest() -> None:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert default_max_connections() == max(16, soft - FD_RESERVE)
