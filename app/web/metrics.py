"""Prometheus metrics, recorded at the lifecycle's single points and served at ``/metrics``.

Under gunicorn, ``gunicorn.conf.py`` sets ``PROMETHEUS_MULTIPROC_DIR`` before any worker
starts: every worker then writes its values to files there (prometheus-client picks that
mode when it is imported), and a scrape answered by any worker adds up all of them. Without
that variable (``flask run``, tests in-process) the metrics live in the process's own
registry and describe that process alone.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from sqlalchemy import Engine, event

from app.extensions import db

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
UNMATCHED_ROUTE = "<unmatched>"  # unknown paths: one label value, not one per path tried
# Every label takes its values from a bounded set, so that no client can grow the number of
# series (each one costs memory in every worker and in Prometheus): a method outside these
# is "other", and model names past the first MODEL_LABELS a process saw are "other".
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER = "other"
MODEL_LABELS = 100
_models_seen: set[str] = set()

HTTP_REQUESTS = Counter(
    "convstore_http_requests",
    "HTTP requests answered, by route template, method and status.",
    ["route", "method", "status"],
)
HTTP_DURATION = Histogram(
    "convstore_http_request_duration_seconds",
    "Request received to response closed (a stream's last byte), by route and method.",
    ["route", "method"],
    buckets=LATENCY_BUCKETS,
)
STREAMS_IN_FLIGHT = Gauge(
    "convstore_streams_in_flight",
    "Exchanges relaying an answer now.",
    multiprocess_mode="livesum",
)
EXCHANGES = Counter(
    "convstore_exchanges",
    "Exchanges ended, by endpoint and outcome.",
    ["endpoint", "outcome"],
)
TOKENS = Counter(
    "convstore_tokens",
    "Tokens the upstream reported, by model and kind (prompt, response, title).",
    ["model", "kind"],
)
TTFT = Histogram(
    "convstore_ttft_seconds",
    "Request received to first piece of the answer relayed, by model.",
    ["model"],
    buckets=LATENCY_BUCKETS,
)
UPSTREAM_ERRORS = Counter(
    "convstore_upstream_errors",
    "Upstream (LLM) failures, by kind.",
    ["kind"],
)
DB_CHECKED_OUT = Gauge(
    "convstore_db_connections_checked_out",
    "Database connections checked out of the pool now.",
    multiprocess_mode="livesum",
)
DB_CONNECTIONS_OPENED = Counter(
    "convstore_db_connections_opened",
    "Database connections opened: stays at the pool's size unless the database restarts.",
)
SAVE_RETRIES = Counter(
    "convstore_save_retries",
    "Saves retried after a transient database failure.",
)
EXCHANGES_LOST = Counter(
    "convstore_exchanges_lost",
    "Exchange endings not saved after every retry (spooled for `flask messages recover`); "
    "must stay 0.",
)
PURGE_PASSES = Counter(
    "convstore_purge_passes",
    "Purge passes run by this process (the workers' and `flask conversations purge`'s).",
)
CONVERSATIONS_PURGED = Counter(
    "convstore_conversations_purged",
    "Expired conversations the purge deleted, by the rule that expired them (expires_at, "
    "temporary, policy).",
    ["rule"],
)
EXCHANGES_PURGED = Counter(
    "convstore_exchanges_purged",
    "Exchanges deleted with the conversations the purge deleted.",
)
PURGE_SKIPPED = Counter(
    "convstore_purge_skipped",
    "Expired conversations a purge pass left for a later one because an exchange of theirs "
    "was in progress.",
)
PURGE_DURATION = Histogram(
    "convstore_purge_duration_seconds",
    "How long a purge pass took.",
    buckets=LATENCY_BUCKETS,
)


def multiprocess_dir() -> str | None:
    """The directory of multiprocess mode, or None for a single-process registry."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def exposition() -> tuple[bytes, str]:
    """The metrics in Prometheus' text format, and its content type."""
    if multiprocess_dir() is None:
        return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return generate_latest(registry), CONTENT_TYPE_LATEST


# ------------------------------------------------------------------ exchanges
def stream_started() -> None:
    STREAMS_IN_FLIGHT.inc()


def stream_ended() -> None:
    STREAMS_IN_FLIGHT.dec()


def model_label(model: str) -> str:
    """The model's label value: the name itself, among the first MODEL_LABELS this process
    saw (clients choose model names), else "other"."""
    if model in _models_seen:
        return model
    if len(_models_seen) < MODEL_LABELS:
        _models_seen.add(model)
        return model
    return OTHER


def method_label(method: str) -> str:
    return method if method in METHODS else OTHER


def exchange_ended(endpoint: str, outcome: str, model: str, values: Mapping[str, Any]) -> None:
    """Count an ended exchange, its tokens and its time to first token."""
    EXCHANGES.labels(endpoint, outcome).inc()
    model = model_label(model)
    for kind, column in (("prompt", "prompt_tokens"), ("response", "response_tokens")):
        if values.get(column):
            TOKENS.labels(model, kind).inc(values[column])
    if values.get("ttft_ms") is not None:
        TTFT.labels(model).observe(values["ttft_ms"] / 1000)


def exchange_interrupted(endpoint: str) -> None:
    """Count an exchange the reaper ended (its worker died)."""
    EXCHANGES.labels(endpoint, "interrupted").inc()


def title_tokens(model: str, total: int | None) -> None:
    if total:
        TOKENS.labels(model_label(model), "title").inc(total)


def upstream_error(kind: str) -> None:
    UPSTREAM_ERRORS.labels(kind).inc()


def save_retried() -> None:
    SAVE_RETRIES.inc()


def exchange_lost() -> None:
    EXCHANGES_LOST.inc()


# ---------------------------------------------------------------------- purge
def purge_pass(
    by_rule: Mapping[str, int], exchanges: int, in_progress: int, seconds: float
) -> None:
    """Count one purge pass: what it deleted, by rule, and what it left."""
    PURGE_PASSES.inc()
    for rule, count in by_rule.items():
        CONVERSATIONS_PURGED.labels(rule).inc(count)
    EXCHANGES_PURGED.inc(exchanges)
    PURGE_SKIPPED.inc(in_progress)
    PURGE_DURATION.observe(seconds)


# ----------------------------------------------------------------------- HTTP
def _count_request(response: Response) -> Response:
    rule = request.url_rule
    route = rule.rule if rule is not None else UNMATCHED_ROUTE
    method, started = method_label(request.method), g.get("received_at") or time.perf_counter()
    HTTP_REQUESTS.labels(route, method, str(response.status_code)).inc()
    # Observed when the response closes, so a stream's duration is the whole stream's.
    response.call_on_close(
        lambda: HTTP_DURATION.labels(route, method).observe(time.perf_counter() - started)
    )
    return response


def _watch_pool(engine: Engine) -> None:
    event.listen(engine, "connect", lambda *_: DB_CONNECTIONS_OPENED.inc())
    event.listen(engine, "checkout", lambda *_: DB_CHECKED_OUT.inc())
    event.listen(engine, "checkin", lambda *_: DB_CHECKED_OUT.dec())


def init_metrics(app: Flask) -> None:
    """Count every request and follow the database pool."""
    app.after_request(_count_request)
    with app.app_context():
        for engine in db.engines.values():
            _watch_pool(engine)
