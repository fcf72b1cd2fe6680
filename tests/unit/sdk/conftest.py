"""Fixtures for every SDK test: ``api`` runs a test once per client flavour (sync, async),
and no test touches the user's cache or the network for an encoding."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kit.clients import Api

from sdk.tokens import hosted


@pytest.fixture(params=["sync", "async"])
def api(request: pytest.FixtureRequest) -> Iterator[Api]:
    api = Api(request.param == "async")
    yield api
    api.close()


@pytest.fixture(autouse=True)
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own rank cache (LLM_SDK_CACHE_DIR)."""
    monkeypatch.setenv("LLM_SDK_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "tokenizers"


@pytest.fixture(autouse=True)
def offline_encodings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """tiktoken never downloads in unit tests: only locally bundled encodings load."""

    def load(name: str):  # type: ignore[no-untyped-def]
        import tiktoken

        if not name.endswith("_offline"):
            raise ValueError(f"{name} would need the network")
        return tiktoken.get_encoding(name)

    monkeypatch.setattr(hosted, "encoding_loader", load)
    monkeypatch.setattr(hosted, "_loaded", {})
    yield
