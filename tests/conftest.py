"""Shared fixtures. The real default model comes through the project's own registry (pull)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from server_ref.deploy.options import local_ray_env

# Before any test module imports Ray, which reads both when first imported: the Ray integration
# tests join a test server's Ray instance on 127.0.0.1 with the token Ray saved for it (under
# ~/.ray) on its first start. Set later (a unit test importing Ray first), the connection is
# refused ("Authentication token is missing").
local_ray_env()
os.environ.setdefault("RAY_AUTH_MODE", "token")

DEFAULT_MODEL = "smollm2-135m-instruct"


@pytest.fixture(scope="session")
def default_gguf() -> Path:
    """Path of the default model's GGUF, pulled into the model cache on first use."""
    from server_ref.loading.registry import pull

    return pull(DEFAULT_MODEL)


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight Llama GGUF with a byte-level vocabulary and a ChatML template."""
    from kit.tinymodel import write_tiny_gguf

    return write_tiny_gguf(tmp_path_factory.mktemp("tiny") / "tiny.gguf")


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight sentence-transformers BERT folder (WordPiece, 16-token limit)."""
    from kit.tinybert import NAME, write_tiny_bert

    return write_tiny_bert(tmp_path_factory.mktemp("tinybert") / NAME)
