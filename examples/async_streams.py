"""Many streams at once with ``AsyncClient``: one task per question, all in flight together.

Each task streams its own answer; a server with continuous batching (``server_ref``, vLLM)
generates them side by side, so the whole batch takes about as long as the longest answer
rather than the sum of all of them. Run it against a running server::

    python -m server_ref serve
    python examples/async_streams.py [N]      # N concurrent streams, default 8

``LLM_SDK_BASE_URL`` points it at another server (default ``http://127.0.0.1:8000/v1``).
"""

from __future__ import annotations

import asyncio
import sys
import time

from sdk import AsyncClient

TOPICS = ["the sea", "mountains", "a cat", "the moon", "bread", "rain", "a library", "autumn"]


async def ask(client: AsyncClient, model: str, index: int, topic: str) -> tuple[str, float]:
    """Stream one answer; return its text and when its first token arrived."""
    started = time.monotonic()
    first_token_at = 0.0
    parts: list[str] = []
    stream = await client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": f"Write one sentence about {topic}."}],
        max_tokens=32,
        temperature=0,
        stream=True,
    )
    async with stream:  # closes the connection even if this task is cancelled
        async for text in stream.text_stream:
            if not parts:
                first_token_at = time.monotonic() - started
            parts.append(text)
    answer = "".join(parts).strip()
    print(f"[{index}] {topic}: {answer}", flush=True)  # printed as each stream finishes
    return answer, first_token_at


async def main(n: int) -> None:
    async with AsyncClient() as client:  # base URL from LLM_SDK_BASE_URL
        model = (await client.models.list()).data[0].id
        topics = [TOPICS[i % len(TOPICS)] for i in range(n)]
        started = time.monotonic()
        results = await asyncio.gather(
            *(ask(client, model, i, topic) for i, topic in enumerate(topics))
        )
        elapsed = time.monotonic() - started
    first = [t for _, t in results]
    print(
        f"{n} streams finished in {elapsed:.1f} s; first tokens after "
        f"{min(first):.2f}-{max(first):.2f} s"
    )


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 8))
