"""Bearer API-key check, as a pure ASGI middleware.

Only the API proper is guarded (``/v1/...``, ``/tokenize``, ``/detokenize``). ``/health`` and
``/metrics`` stay open for load balancers and scrapers (as in vLLM and TGI), and so do the docs
and the static web page; the page's own API calls carry the key.

Keys are compared as SHA-256 digests with ``hmac.compare_digest``: constant time, and the
comparison does not reveal the key's length either.
"""

from __future__ import annotations

import hashlib
import hmac

from starlette.types import ASGIApp, Receive, Scope, Send

from server_ref.api.errors import AuthenticationError

PROTECTED_PREFIXES = ("/v1/", "/tokenize", "/detokenize")


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "surrogateescape")).digest()


def is_protected(path: str) -> bool:
    return path == "/v1" or path.startswith(PROTECTED_PREFIXES)


class APIKeyMiddleware:
    """Answer 401 (OpenAI shape) unless ``Authorization: Bearer <api_key>`` is present."""

    def __init__(self, app: ASGIApp, api_key: str) -> None:
        self.app = app
        self._digest = _digest(api_key)

    def check(self, authorization: str | None) -> bool:
        if not authorization:
            return False
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(_digest(token.strip()), self._digest)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") == "OPTIONS":
            await self.app(scope, receive, send)
            return
        if not is_protected(scope["path"]):
            await self.app(scope, receive, send)
            return
        authorization: str | None = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
                break
        if self.check(authorization):
            await self.app(scope, receive, send)
            return
        message = (
            "Missing API key: send it as 'Authorization: Bearer <key>'."
            if authorization is None
            else "Incorrect API key provided."
        )
        error = AuthenticationError(message, headers={"WWW-Authenticate": "Bearer"})
        await error.response()(scope, receive, send)
