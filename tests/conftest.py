"""Shared fixtures. The real default model comes through the project's own registry (pull)."""

from __future__ import annotations

from pathlib import Path

import pytest

DEFAULT_MODEL = "smollm2-135m-instruct"


@pytest.fixture(scope="session")
def default_gguf() -> Path:
    """Path of the default model's GGUF, pulled into the model cache on first use."""
    from server_ref.loading.registry import pull

    return pull(DEFAULT_MODEL)
