"""What every route needs: the engine (and the embedder), the metrics, the served model name."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from starlette.requests import Request

from server_ref.api.errors import BadRequestError, NotFoundError
from server_ref.api.metrics import Metrics
from server_ref.engine.types import EngineClient

if TYPE_CHECKING:  # tracing reads this state: a runtime import would be a cycle
    from server_ref.api.tracing import RequestTracer
    from server_ref.engine.embedder import Embedder


@dataclass
class ServerState:
    engine: EngineClient
    metrics: Metrics
    served_model_name: str
    retry_after: float
    tracer: RequestTracer | None = None  # spans of generation requests (``tracing``)
    embedder: Embedder | None = None  # the embedding model, when the server has one

    def is_ready(self) -> bool:
        """Both models loaded and running (``/health``)."""
        return self.engine.is_ready() and (self.embedder is None or self.embedder.is_ready())

    def embedder_named(self, name: str | None) -> Embedder | None:
        """The embedder, if ``name`` is the embedding model's id (routes shared by both
        models hand such requests to ``embedding_model``)."""
        embedder = self.embedder
        return embedder if embedder is not None and name == embedder.info.id else None

    def check_model(self, name: str | None) -> None:
        """For the chat model's routes: 400 for the embedding model's name (saying which
        model does what), 404 ``model_not_found`` unless ``name`` is ours (or omitted)."""
        if name is None or name in (self.served_model_name, self.engine.model_info.id):
            return
        if self.embedder_named(name) is not None:
            raise BadRequestError(
                f"'{name}' is an embedding model: it serves /v1/embeddings only. Chat and "
                f"completions on this server come from '{self.served_model_name}'.",
                param="model",
                code="operation_not_supported",
            )
        raise NotFoundError(
            f"The model '{name}' does not exist. This server serves {self._names()}.",
            param="model",
            code="model_not_found",
        )

    def check_embedding_model(self, name: str | None) -> Embedder:
        """The embedder for ``/v1/embeddings`` (``name`` its id, or omitted); 400 for the chat
        model's name, 404 for other names or when the server has no embedding model."""
        embedder = self.embedder
        if embedder is not None and name in (None, embedder.info.id):
            return embedder
        where = (
            f"Embeddings on this server come from '{embedder.info.id}'."
            if embedder is not None
            else "This server has no embedding model (it was started with --embedding-model none)."
        )
        if name in (self.served_model_name, self.engine.model_info.id):
            raise BadRequestError(
                f"'{name}' is a chat model: it serves /v1/chat/completions and "
                f"/v1/completions. {where}",
                param="model",
                code="operation_not_supported",
            )
        if name is None:
            raise NotFoundError(where, param="model", code="model_not_found")
        raise NotFoundError(
            f"The model '{name}' does not exist. {where}", param="model", code="model_not_found"
        )

    def _names(self) -> str:
        names = [self.served_model_name]
        if self.embedder is not None:
            names.append(self.embedder.info.id)
        return " and ".join(f"'{n}'" for n in names)

    def check_token_ids(self, ids: list[int], *, param: str) -> None:
        """400 for ids outside the vocabulary (when the engine told us its size)."""
        vocab = self.engine.model_info.vocab_size
        if vocab and any(not 0 <= t < vocab for t in ids):
            bad = next(t for t in ids if not 0 <= t < vocab)
            raise BadRequestError(
                f"{param}: token id {bad} is outside the vocabulary [0, {vocab}).", param=param
            )


def get_state(request: Request) -> ServerState:
    state = request.app.state.server
    assert isinstance(state, ServerState)
    return state


def new_id(prefix: str) -> str:
    """``chatcmpl-<32 hex>``, ``cmpl-<32 hex>``."""
    return f"{prefix}-{uuid.uuid4().hex}"


def unix_now() -> int:
    return int(time.time())
