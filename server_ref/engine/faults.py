"""Where one engine step can fail, and who pays for it.

A step works on a batch, but most of its work is per request: building a row's sampling
state, its grammar mask, sampling it, its logprobs, detokenizing, stop checks. An exception
there is charged to that request alone: it ends with ``finish_reason="error"`` and
``INTERNAL_ERROR``, its KV blocks are freed, the traceback is logged, and the rest of the
batch goes on. Only the forward pass (and the scheduling and KV bookkeeping around it) is
shared by the whole batch; its failure ends every request of the batch with ``BATCH_FAILED``
and the engine carries on with the next step.

``FaultHook`` is the seam tests use to raise at a chosen stage for a chosen request (the
engine's ``faults`` attribute; ``None`` in production). It is not reachable from the API.
"""

from __future__ import annotations

from typing import Literal, Protocol

Stage = Literal["forward", "prepare", "grammar", "sample", "logprobs", "detokenize", "stop_check"]
# the stages every request passes through; "grammar" (its token mask) only a constrained one
STAGES: tuple[Stage, ...] = ("forward", "prepare", "sample", "logprobs", "detokenize", "stop_check")

INTERNAL_ERROR = (
    "An internal error occurred while generating this request (engine request id {request_id}); "
    "it was stopped and the error was logged on the server. Other requests were not affected."
)
BATCH_FAILED = (
    "The model's forward pass failed for the batch this request was in (engine request id "
    "{request_id}); the request was stopped and the server recovered. Retry it."
)


class FaultHook(Protocol):
    """Raise to make the engine fail at ``stage`` while it handles ``request_id``.

    >>> class FailSampling:
    ...     def check(self, stage: Stage, request_id: str) -> None:
    ...         if stage == "sample" and request_id == "req-3":
    ...             raise RuntimeError("injected")
    >>> engine.faults = FailSampling()  # doctest: +SKIP
    """

    def check(self, stage: Stage, request_id: str) -> None: ...
