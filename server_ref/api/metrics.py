"""Prometheus metrics, one ``CollectorRegistry`` per app.

A registry per app (not prometheus-client's global one) lets several apps live in one process
(tests) without "Duplicated timeseries" errors. Names follow vLLM's ``vllm:*`` family with our
own prefix, so dashboards written for vLLM map over by renaming the prefix.

Gauges (running/waiting requests, KV cache usage) and the prefix cache's counters are read
from ``engine.stats()`` at scrape time by a custom collector; the other counters and the
histograms are fed by ``RequestMetrics`` as the API layer sees outputs go by.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from server_ref.engine.types import EngineStats, StepOutput

PREFIX = "server_ref"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_LATENCY_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75,
    1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0,
)  # fmt: skip
_ITL_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.015, 0.02, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2,
    0.3, 0.4, 0.5, 0.75, 1.0, 2.5,
)  # fmt: skip


class _EngineStatsCollector(Collector):
    """Reads the engine's gauges when Prometheus scrapes, so they are never stale."""

    def __init__(self, stats: Callable[[], EngineStats], model_name: str) -> None:
        self._stats = stats
        self._model_name = model_name

    def collect(self) -> Iterator[Metric]:
        try:
            stats = self._stats()
        except Exception:
            return  # a dead engine has no gauges; /health reports it
        for name, doc, value in (
            ("num_requests_running", "Requests currently in a running batch.", stats.running),
            ("num_requests_waiting", "Requests waiting to be scheduled.", stats.waiting),
            ("kv_cache_usage_perc", "Fraction of KV cache blocks in use (0..1).", stats.kv_usage),
        ):
            gauge = GaugeMetricFamily(f"{PREFIX}:{name}", doc, labels=["model_name"])
            gauge.add_metric([self._model_name], float(value))
            yield gauge
        # vLLM's prefix_cache_queries / prefix_cache_hits: hits / queries is the hit rate
        for name, doc, value in (
            (
                "prefix_cache_queries",
                "Prompt tokens looked up in the prefix cache.",
                stats.prefix_cache_queries,
            ),
            (
                "prefix_cache_hits",
                "Prompt tokens found in the prefix cache.",
                stats.prefix_cache_hits,
            ),
        ):
            counter = CounterMetricFamily(f"{PREFIX}:{name}", doc, labels=["model_name"])
            counter.add_metric([self._model_name], float(value))
            yield counter


class Metrics:
    """The app's metrics. ``render()`` is the body of ``GET /metrics``."""

    def __init__(self, stats: Callable[[], EngineStats], model_name: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.model_name = model_name
        self.registry.register(_EngineStatsCollector(stats, model_name))
        labels = ["model_name"]
        self.prompt_tokens = Counter(
            f"{PREFIX}:prompt_tokens", "Prompt tokens processed.", labels, registry=self.registry
        )
        self.generation_tokens = Counter(
            f"{PREFIX}:generation_tokens", "Tokens generated.", labels, registry=self.registry
        )
        self.request_finished = Counter(
            f"{PREFIX}:request_success",
            "Finished engine requests by finish reason (stop, length, abort, error).",
            [*labels, "finished_reason"],
            registry=self.registry,
        )
        self.time_to_first_token = Histogram(
            f"{PREFIX}:time_to_first_token_seconds",
            "Time from submitting a request to its first generated token.",
            labels,
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.inter_token_latency = Histogram(
            f"{PREFIX}:inter_token_latency_seconds",
            "Time between consecutive outputs of one request, per generated token.",
            labels,
            buckets=_ITL_BUCKETS,
            registry=self.registry,
        )
        self.e2e_latency = Histogram(
            f"{PREFIX}:e2e_request_latency_seconds",
            "Time from submitting a request to its end.",
            labels,
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def track(self, prompt_tokens: int) -> RequestMetrics:
        """Start timing one engine request (one choice) of ``prompt_tokens`` prompt tokens."""
        return RequestMetrics(self, prompt_tokens)


class RequestMetrics:
    """Timing and counting for one engine request; ``finish`` records it exactly once."""

    def __init__(self, metrics: Metrics, prompt_tokens: int) -> None:
        self._m = metrics
        self._start = time.monotonic()
        self._last: float | None = None
        self._prompt_tokens = prompt_tokens
        self._completion_tokens = 0
        self._done = False

    def observe(self, output: StepOutput) -> None:
        now = time.monotonic()
        new_tokens = output.completion_tokens - self._completion_tokens
        if new_tokens > 0:
            label = self._m.model_name
            if self._last is None:
                self._m.time_to_first_token.labels(label).observe(now - self._start)
            else:
                per_token = (now - self._last) / new_tokens
                for _ in range(new_tokens):
                    self._m.inter_token_latency.labels(label).observe(per_token)
            self._last = now
            self._completion_tokens = output.completion_tokens

    def finish(self, reason: str) -> None:
        if self._done:
            return
        self._done = True
        label = self._m.model_name
        self._m.prompt_tokens.labels(label).inc(self._prompt_tokens)
        self._m.generation_tokens.labels(label).inc(self._completion_tokens)
        self._m.request_finished.labels(label, reason).inc()
        self._m.e2e_latency.labels(label).observe(time.monotonic() - self._start)
