"""The peer suite: the SDK's public surface against one OpenAI-compatible server.

The server is named by environment variables, so any peer can be checked (vLLM, llama.cpp's
``llama-server``, llama-cpp-python, a hosted API)::

    LLM_SDK_PEER_BASE_URL=http://127.0.0.1:8080/v1   its base URL, with /v1
    LLM_SDK_PEER_MODEL=smollm2-135m-instruct          the model to call
    LLM_SDK_PEER_API_KEY=...                          the key it was started with, if any
    LLM_SDK_PEER_GGUF=/path/to/model.gguf             the GGUF it serves, if any: exact
                                                      counts from the file are checked too
    LLM_SDK_PEER_CONTEXT=2048                         its context window, if it reports none
    LLM_SDK_PEER_COUNTS=tokenize                      how count_tokens must count a chat
                                                      there without a file (a TokenCount
                                                      source); unset: any way, exact or not
    LLM_SDK_PEER_NAME=llama-server                    a name for messages

``scripts/run_peer_suite.py`` starts llama.cpp's two servers and sets these. With no
``LLM_SDK_PEER_BASE_URL`` the suite runs against our own ``server_ref`` on the tiny
random-weight model (started here with an API key), as CI does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from kit.live_server import live_server
from kit.peer import Peer, peer_from_environment
from kit.tinymodel import write_tiny_gguf

import sdk

PEER_KEY = "sk-peer-suite"


@pytest.fixture(scope="session")
def peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peer]:
    named = peer_from_environment()
    if named is not None:
        yield named
        return
    # the tiny model with a window for the longest chat of kit.peer_chats in its byte-level
    # vocabulary (a few thousand tokens)
    folder = tmp_path_factory.mktemp("peer")
    tiny_gguf = write_tiny_gguf(folder / "tiny-peer.gguf", context_length=8192)
    args = ["--model", str(tiny_gguf), "--device", "cpu", "--kv-cache-mib", "32"]
    args += ["--api-key", PEER_KEY]
    with live_server(args, log_dir=folder, env={"OMP_NUM_THREADS": "1"}) as server:
        headers = {"authorization": f"Bearer {PEER_KEY}"}
        models = httpx.get(f"{server.base_url}/v1/models", headers=headers).json()["data"]
        yield Peer(
            name="server_ref (tiny model)",
            base_url=f"{server.base_url}/v1",
            model=str(models[0]["id"]),
            api_key=PEER_KEY,
            gguf=tiny_gguf,
            context=None,
            counts="server",
        )


@pytest.fixture
def client(peer: Peer) -> Iterator[sdk.Client]:
    with peer.client() as client:
        yield client


@pytest.fixture
async def async_client(peer: Peer) -> AsyncIterator[sdk.AsyncClient]:
    async with peer.async_client() as client:
        yield client
