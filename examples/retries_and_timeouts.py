"""Retries, timeouts and typed errors.

Shows how to configure a client's retry policy and timeouts, override them for one call, and
tell failures apart by their exception class (``sdk.NotFoundError``, ``sdk.APITimeoutError``,
``sdk.APIConnectionError``, ... drawn in ``sdk._exceptions``). Run it against a running
server::

    python -m server_ref serve
    python examples/retries_and_timeouts.py

``LLM_SDK_BASE_URL`` points it at another server (default ``http://127.0.0.1:8000/v1``).
"""

from __future__ import annotations

import socket
import time

import httpx

import sdk
from sdk import Client, RetryPolicy


def noisy_sleep(seconds: float) -> None:
    """What the client waits with between attempts; printing shows each retry happen."""
    print(f"    (attempt failed; retrying in {seconds:.2f} s)")
    time.sleep(seconds)


def port_nobody_listens_on() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    # Connection errors, timeouts, 408/409/429 and 5xx are retried with exponential backoff
    # (or as long as the server's Retry-After asks). Connecting gets 3 s, every read 60 s.
    policy = RetryPolicy(max_retries=3, initial_delay=0.2, max_delay=2.0)
    timeout = httpx.Timeout(60.0, connect=3.0)
    with Client(retry_policy=policy, timeout=timeout, sleep=noisy_sleep) as client:
        model = client.models.list().data[0].id
        print(f"client: {client!r}, model: {model}")

        # 1. A 4xx is not retried: the typed error carries status, request id and body.
        print("1. unknown model")
        try:
            client.chat.completions.create(
                model="no-such-model", messages=[{"role": "user", "content": "Hi"}]
            )
        except sdk.NotFoundError as exc:
            print(
                f"   {type(exc).__name__}: status={exc.status_code} "
                f"request_id={exc.request_id} message={exc.message!r}"
            )

        # 2. A per-call timeout far shorter than the generation takes. Per-call options
        #    override the client's; max_retries=0 gives up at once.
        print("2. a 50 ms read timeout on a long answer")
        try:
            client.chat.completions.create(
                model=model,
                messages=[{"role": "user", "content": "Tell me a long story."}],
                max_tokens=200,
                timeout=httpx.Timeout(30.0, read=0.05),
                max_retries=0,
            )
        except sdk.APITimeoutError as exc:
            print(f"   {type(exc).__name__}: {exc}")

        # 3. Nothing listens there: each attempt fails to connect and is retried, then the
        #    error reaches us. with_options copies the client with a few settings changed.
        print("3. a server that is not running")
        down = client.with_options(base_url=f"http://127.0.0.1:{port_nobody_listens_on()}/v1")
        try:
            down.models.list()
        except sdk.APIConnectionError as exc:
            print(f"   {type(exc).__name__} after {down.max_retries} retries: {exc}")

        # Every error above is an sdk.APIError, and every SDK error an sdk.SDKError: one
        # `except sdk.APIError` catches them all when the difference does not matter.
        print("done")


if __name__ == "__main__":
    main()
