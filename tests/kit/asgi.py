"""An HTTP request as raw ASGI, for tests that drive an app without a server or transport
(to make its client leave at a chosen moment)."""

from __future__ import annotations

from typing import Any


def post_scope(path: str, *headers: tuple[bytes, bytes]) -> dict[str, Any]:
    """The ASGI scope of ``POST path`` with a JSON body and these extra headers.

    >>> post_scope("/v1/chat/completions")["method"]
    'POST'
    """
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json"), *headers],
        "client": ("127.0.0.1", 5000),
        "server": ("testserver", 80),
    }
