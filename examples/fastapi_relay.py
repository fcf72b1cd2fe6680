"""A FastAPI app that relays a stream from the LLM server to its own clients over SSE.

``GET /relay?q=QUESTION`` asks the LLM server (through ``AsyncClient``) and passes the answer
on as it arrives, one Server-Sent Event per piece of text::

    data: {"text": "The"}
    data: {"text": " capital"}
    ...
    event: done
    data: {"finish_reason": "stop"}

A failure before the answer starts is an HTTP error (502 when the LLM server is down); one
in the middle is an ``event: error``. When a client hangs up, the relay closes its upstream
stream, so the LLM server stops generating for nobody. Run it against a running server::

    python -m server_ref serve                    # the LLM server, port 8000
    python examples/fastapi_relay.py [PORT]       # or RELAY_PORT; default 8080
    curl -N 'http://127.0.0.1:8080/relay?q=What+is+the+capital+of+France%3F'

``LLM_SDK_BASE_URL`` points the relay at another LLM server (default
``http://127.0.0.1:8000/v1``). Needs ``fastapi`` and ``uvicorn`` (``pip install
'llm-sdk[server]'``).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import StreamingResponse

import sdk
from sdk import AsyncClient

llm = AsyncClient()  # base URL from LLM_SDK_BASE_URL; one connection pool for all requests


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    await llm.close()


app = FastAPI(title="LLM relay", lifespan=lifespan)


def sse(data: object, event: str | None = None) -> str:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data)}\n\n"


@app.get("/relay")
async def relay(
    q: str = Query(min_length=1, max_length=4000),
    max_tokens: int = Query(128, ge=1, le=1024),
    temperature: float = Query(0.0, ge=0.0, le=2.0),  # greedy unless asked otherwise
) -> StreamingResponse:
    try:
        model = (await llm.models.list()).data[0].id
        stream = await llm.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": q}],
            max_tokens=max_tokens,
            temperature=temperature,
            stream=True,
        )
    except sdk.APIStatusError as exc:  # the LLM server said no: pass on what it said
        raise HTTPException(502, f"LLM server answered {exc.status_code}: {exc.message}") from exc
    except sdk.APIError as exc:  # unreachable, timed out
        raise HTTPException(502, f"LLM server unavailable: {exc}") from exc

    async def events() -> AsyncIterator[str]:
        # Starlette cancels this generator when the client disconnects; leaving `async with`
        # then closes the upstream connection, which makes the LLM server abort the request.
        async with stream:
            try:
                async for text in stream.text_stream:
                    yield sse({"text": text})
                final = await stream.get_final_completion()
            except sdk.APIError as exc:  # headers are sent: report the failure in-band
                yield sse({"message": str(exc)}, event="error")
                return
        yield sse({"finish_reason": final.choices[0].finish_reason}, event="done")

    return StreamingResponse(
        events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
    )


def main() -> None:
    port = int(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("RELAY_PORT", "8080"))
    uvicorn.run(app, host="127.0.0.1", port=port)


if __name__ == "__main__":
    main()
