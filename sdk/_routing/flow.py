"""The flows a ``Router`` runs: each attempt of a call placed on an endpoint, through that
endpoint's policies, failing over to another when the endpoint is the problem.

One call, in order (decisions from ``sdk._protocol.routing``, I/O from the driver):

1. The endpoints that serve the call's model (``NoEndpointError`` if none: nothing sent).
2. Pick one (the strategy), rename the model (``Endpoint.aliases``) and plan the call with
   *that* endpoint's policies (``_policies.guard.plan_call``: its own tokenizer counts the
   prompt, its token budget applies). If its rate limiter has no room now and another
   endpoint may, try that one first; only when every endpoint is full does the call wait.
3. One attempt (``_protocol.flow``'s call or stream flow, no retries of its own), with the
   call's one idempotency key and its attempt number in ``X-Retry-Count``.
4. A failure: the endpoint's health is updated, then ``routing.next_attempt`` says whether
   and where to go next (another endpoint at once, or a backoff). A stream fails over before
   its first event; after it, the chunks are the caller's, so a broken stream is only
   resumed if its output is reproducible (``_protocol.resume``): the same steps again, with
   the call's key and what is left of its retries, on any endpoint.

A stream stays counted in flight on its endpoint until it ends (``StreamStart.observers``);
a resumed one moves to the endpoint that took it over.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any, TypeVar
from urllib.parse import quote, unquote

from sdk._exceptions import APIError, APIStatusError
from sdk._policies.counting import TokenCount, count_flow
from sdk._policies.guard import plan_call
from sdk._policies.options import PolicyOptions
from sdk._policies.remote import tokenizer_flow
from sdk._protocol.actions import Flow, Sleep
from sdk._protocol.failover import NextAttempt, moves_on, next_attempt
from sdk._protocol.flow import AttemptHooks, StreamStart, call_flow, stream_flow
from sdk._protocol.options import RequestOptions, RetryPolicy
from sdk._protocol.prefix import PrefixKey, prefix_key
from sdk._protocol.request import RETRY_COUNT_HEADER, APICall
from sdk._protocol.resume import Resume, resumes
from sdk._protocol.routing import Routing
from sdk.tokens.tokenizer import Tokenizer
from sdk.types import APIObject, Model, ModelList

from .endpoint import Endpoint
from .table import Route, RouteTable

__all__ = [
    "routed_call_flow",
    "routed_count_flow",
    "routed_stream_flow",
    "routed_tokenizer_flow",
]

T = TypeVar("T", bound=APIObject)
R = TypeVar("R")
Send = Callable[..., Flow[R]]  # call_flow / stream_flow: (config, call, options, hooks=)


def routed_call_flow(
    table: RouteTable, call: APICall[T], options: RequestOptions, policy: PolicyOptions
) -> Flow[T]:
    """``call`` on the table's endpoints, failing over; its result names the endpoint."""

    def finish(i: int, result: T, retries: int) -> T:
        table.routing.release(i)
        route = table.routes[i]
        info = result.response_info
        assert info is not None  # parse_response sets it
        result._response_info = replace(info, retries_taken=retries, endpoint=route.endpoint.name)
        return _public_names(result, route.endpoint)

    result: T = yield from _routed(table, call, options, policy, call_flow, finish)
    return result


def routed_stream_flow(
    table: RouteTable, call: APICall[T], options: RequestOptions, policy: PolicyOptions
) -> Flow[StreamStart[T, Any]]:
    """``call`` opened as a stream on the table's endpoints, failing over before its first
    event (resumed after it if reproducible); an endpoint counts it in flight until it ends."""
    flight: _InFlight | None = None  # where the stream is open

    def finish(i: int, start: StreamStart[T, Any], retries: int) -> StreamStart[T, Any]:
        nonlocal flight
        name = table.routes[i].endpoint.name
        info = replace(start.info, retries_taken=retries, endpoint=name)
        start = replace(start, info=info, resume=None)  # the attempt's own has no retries
        if flight is not None:  # resumed: the stream moved to endpoint i
            flight.move(i)
            return start
        flight = _InFlight(table.routing, i)
        return start.observed_by(flight)

    retry = _call_policy(table, options)
    if not resumes(retry, call.body, options):
        return (yield from _routed(table, call, options, policy, stream_flow, finish))
    key = _idempotency_key(call, options)  # the replay is the same call
    options = {**options, "idempotency_key": key} if key is not None else options

    def reopen(error: APIError, retries_used: int, _: int) -> Flow[StreamStart[T, Any]]:
        assert flight is not None  # set when the stream first opened
        flight.broke(error)
        return _routed(table, call, options, policy, stream_flow, finish, retries_used)

    start = yield from _routed(table, call, options, policy, stream_flow, finish)
    return replace(start, resume=Resume(retry, reopen, start.info.retries_taken))


class _InFlight:
    """Releases a stream's endpoint when the stream ends; a broken stream is a failure."""

    def __init__(self, routing: Routing, i: int) -> None:
        self._routing, self._i = routing, i
        self._open = True

    def chunk(self, chunk: Any) -> None:
        pass

    def broke(self, error: APIError) -> None:
        """The stream broke and is being resumed: its endpoint is free and failed."""
        self.end(error)
        self._open = False

    def move(self, i: int) -> None:
        """The resumed stream is open on endpoint ``i`` (``_routed`` took it)."""
        self._i, self._open = i, True

    def end(self, error: BaseException | None) -> None:
        if not self._open:  # broken, and resuming it failed: released already
            return
        self._routing.release(self._i)
        if error is not None and moves_on(error):
            self._routing.failed(self._i)


def _routed(
    table: RouteTable,
    call: APICall[T],
    options: RequestOptions,
    policy_options: PolicyOptions,
    send: Send[R],
    finish: Callable[[int, R, int], R],
    retries: int = 0,  # taken before: a resumed stream's
) -> Flow[R]:
    routing = table.routing
    pool = routing.candidates(_model_of(call), table.only)
    key: PrefixKey = ()
    if routing.strategy == "prefix_affinity":
        key = prefix_key(call.body, routing.affinity.block_size)
    policy = _call_policy(table, options)
    idempotency_key = _idempotency_key(call, options)
    tried: set[int] = set()  # endpoints this call failed on (in this round)
    deferred: dict[int, float] = {}  # endpoint -> seconds until its rate limiter has room
    same: int | None = None  # retry on this endpoint (409)
    while True:
        placed = _pick(routing, pool, key, tried, deferred, same)
        if placed is None:  # every endpoint is full: wait for the first room, then choose again
            yield Sleep(min(deferred.values()))
            deferred.clear()
            continue
        i, forced = placed
        route = table.routes[i]
        try:
            planned = yield from plan_call(
                route.config, route.policies, _for_endpoint(call, route.endpoint), policy_options
            )
            wait = planned.reserve()
            if wait > 0 and not forced:
                deferred[i] = wait  # full now: maybe another endpoint has room
                routing.release(i)
                continue
            attempt = _attempt_options(options, idempotency_key, retries)
            hooks: AttemptHooks | None = planned.hooks()
            result = yield from send(route.config, planned.call, attempt, hooks=hooks)
        except APIError as exc:
            step = _after_failure(routing, i, exc, pool, tried, retries, policy)
            if step is None:
                raise
            if step.delay > 0:
                yield Sleep(step.delay)
            same = i if step.same_endpoint else None
            deferred.clear()
            retries += 1
            continue
        except BaseException:
            routing.release(i)
            raise
        routing.succeeded(i)
        return finish(i, result, retries)


def _call_policy(table: RouteTable, options: RequestOptions) -> RetryPolicy:
    policy = table.retry_config.retry
    if "max_retries" in options:
        policy = replace(policy, max_retries=options["max_retries"])
    return policy


def _idempotency_key(call: APICall[Any], options: RequestOptions) -> str | None:
    """One key for every attempt on every endpoint: a server that saw an earlier attempt (or
    a proxy in front of several) can recognise the call. GET is idempotent and gets none."""
    key = options.get("idempotency_key")
    if key is None and call.method != "GET":
        key = f"llm-sdk-{uuid.uuid4().hex}"
    return key


def _after_failure(
    routing: Routing,
    i: int,
    error: APIError,
    pool: list[int],
    tried: set[int],
    retries: int,
    policy: RetryPolicy,
) -> NextAttempt | None:
    """Record a failed attempt on endpoint ``i`` and say what comes next."""
    routing.release(i)
    if moves_on(error):
        routing.failed(i, error.retry_after if isinstance(error, APIStatusError) else None)
    else:
        routing.succeeded(i)  # it answered: alive
    tried.add(i)
    untried = bool(set(pool) - tried)
    step = next_attempt(error, retries, policy, untried=untried, rand=random.random())
    if step is not None and not untried:
        tried.clear()  # every endpoint failed once: a new round, after the backoff
    return step


def _pick(
    routing: Routing,
    pool: list[int],
    key: PrefixKey,
    tried: set[int],
    deferred: dict[int, float],
    same: int | None,
) -> tuple[int, bool] | None:
    """The endpoint of the next attempt, and whether it must take it even if its rate limiter
    is full (a retry on the same endpoint); ``None`` when every endpoint is full."""
    if same is not None:
        return routing.take(same, key), True
    chosen = routing.pick(pool, key, avoid=tried | deferred.keys())
    if chosen is None and tried:  # the others are full: one that failed may have room
        chosen = routing.pick(pool, key, avoid=deferred.keys())
    return None if chosen is None else (chosen, False)


def _attempt_options(options: RequestOptions, key: str | None, retries: int) -> RequestOptions:
    """One attempt's options: no retries of its own, the call's key, its attempt number."""
    attempt = RequestOptions(**options)
    attempt["max_retries"] = 0
    if key is not None:
        attempt["idempotency_key"] = key
    attempt["extra_headers"] = {
        **options.get("extra_headers", {}),
        RETRY_COUNT_HEADER: str(retries),
    }
    return attempt


_MODELS = "/models/"


def _model_of(call: APICall[Any]) -> str | None:
    """The public model a call asks for: its body's ``model``, or ``models.retrieve``'s id."""
    if call.body is not None:
        model = call.body.get("model")
        return model if isinstance(model, str) else None
    if call.method == "GET" and call.path.startswith(_MODELS):
        return unquote(call.path.removeprefix(_MODELS))
    return None


def _for_endpoint(call: APICall[T], endpoint: Endpoint) -> APICall[T]:
    """``call`` with the model renamed as ``endpoint`` calls it."""
    model = _model_of(call)
    if model is None or endpoint.model_name(model) == model:
        return call
    own = endpoint.model_name(model)
    if call.body is not None:
        return replace(call, body={**call.body, "model": own})
    return replace(call, path=_MODELS + quote(own, safe=""))


def _public_names(result: T, endpoint: Endpoint) -> T:
    """Model ids in a model listing as the router's callers name them."""
    if isinstance(result, Model):
        result.id = endpoint.public_name(result.id)
    elif isinstance(result, ModelList):
        for model in result.data:
            model.id = endpoint.public_name(model.id)
    return result


# --- tokenizers and counts: the first endpoint serving the model that answers ---------------


def routed_tokenizer_flow(table: RouteTable, model: str) -> Flow[Tokenizer]:
    """The tokenizer of ``model`` on the first endpoint (in order, ready ones first) that
    serves it and answers; ``router.pin(name).tokenizer(model)`` asks one endpoint."""

    def fetch(route: Route) -> Flow[Tokenizer]:
        own = route.endpoint.model_name(model)
        return (yield from tokenizer_flow(route.config, route.policies.tokenizers, own))

    return (yield from _first_answer(table, model, fetch))


def routed_count_flow(
    table: RouteTable, model: str, request: Any, options: Mapping[str, Any] | None = None
) -> Flow[TokenCount]:
    """``count_tokens`` on the first endpoint that serves ``model`` and answers."""

    def count(route: Route) -> Flow[TokenCount]:
        own = route.endpoint.model_name(model)
        registry = route.policies.tokenizers
        return (yield from count_flow(route.config, registry, own, request, options))

    return (yield from _first_answer(table, model, count))


def _first_answer(table: RouteTable, model: str, ask: Callable[[Route], Flow[R]]) -> Flow[R]:
    routing = table.routing
    order = routing.by_readiness(routing.candidates(model, table.only))
    for n, i in enumerate(order):
        try:
            return (yield from ask(table.routes[i]))
        except APIError as exc:
            if not moves_on(exc) or n == len(order) - 1:
                raise
            routing.failed(i, exc.retry_after if isinstance(exc, APIStatusError) else None)
    raise AssertionError("candidates() is never empty")  # pragma: no cover
