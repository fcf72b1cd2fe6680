"""What every route needs: the engine, the metrics, the served model name."""

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


@dataclass
class ServerState:
    engine: EngineClient
    metrics: Metrics
    served_model_name: str
    retry_after: float
    tracer: RequestTracer | None = None  # spans of generation requests (``tracing``)

    def check_model(self, name: str | None) -> None:
        """404 ``model_not_found`` unless ``name`` is ours (or omitted)."""
        if name is None or name in (self.served_model_name, self.engine.model_info.id):
            return
        raise NotFoundError(
            f"The model '{name}' does not exist. This server serves '{self.served_model_name}'.",
            param="model",
            code="model_not_found",
        )

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
