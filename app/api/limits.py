"""Per-user rate limits with flask-limiter, counted where every worker and instance sees them.

Two buckets per user: generation requests (``RATE_LIMIT_GENERATION``, or the user's own
``rpm_limit``) and everything else (``RATE_LIMIT_DEFAULT``). Counters live in
``RATELIMIT_STORAGE_URL``: Redis in production, so that every worker of every instance
shares one count; the embedded default ``memory://`` counts per worker process. If the
storage is unreachable, requests are served (fail open) and a warning is logged at most
once per ``RATELIMIT_WARNING_SECONDS``.
"""

from __future__ import annotations

import logging
import time

from flask import Flask, current_app, g, request
from flask_limiter import ApplicationLimit, Limiter

from app.api.auth import PUBLIC_BLUEPRINTS

log = logging.getLogger(__name__)

# The requests that call the LLM: endpoint (Blueprint name.view name) and method.
GENERATION_REQUESTS = frozenset(
    {
        ("generation.GenerateStream", "GET"),
        ("messages.Messages", "POST"),
        ("messages.Regenerate", "POST"),
        ("v1.ChatCompletions", "POST"),
        ("responses.Responses", "POST"),
    }
)


def is_generation() -> bool:
    """Whether the current request asks the LLM for an answer."""
    return (request.endpoint, request.method) in GENERATION_REQUESTS


def _user_key() -> str:
    # Authentication runs first: limits follow the key's user, not the client's address
    # (many users share one NAT; one user has many addresses).
    principal = g.get("principal")
    return f"user:{principal.user_id}" if principal is not None else f"ip:{request.remote_addr}"


def _generation_limit() -> str:
    principal = g.get("principal")
    own = getattr(principal, "rpm_limit", None)
    return f"{own}/minute" if own else current_app.config["RATE_LIMIT_GENERATION"]


def _default_limit() -> str:
    return current_app.config["RATE_LIMIT_DEFAULT"]


class _OncePerInterval(logging.Filter):
    """Let through one storage failure report per interval, as a warning without traceback.

    flask-limiter reports a failure of its storage, swallowed, with ``logger.exception``: a
    record with an exception. Its other records (a limit exceeded, storage recovered) pass
    as they are, and leave the interval's one slot to a real failure.
    """

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds
        self._next = 0.0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info is None:
            return True
        now = time.monotonic()
        if now < self._next:
            return False
        self._next = now + self.seconds
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.msg = "rate-limit storage unreachable; serving requests unlimited (%s)"
        record.args = (repr(record.exc_info[1]),)
        record.exc_info = record.exc_text = None
        return True


def init_limits(app: Flask) -> None:
    """Give ``app`` its limiter (after authentication, so limits know the user)."""
    config = app.config
    limiter = Limiter(
        key_func=_user_key,
        app=app,
        storage_uri=config["RATELIMIT_STORAGE_URL"],
        # A dead Redis must cost a request milliseconds, not the client's patience.
        storage_options={"socket_timeout": 0.25, "socket_connect_timeout": 0.25}
        if config["RATELIMIT_STORAGE_URL"].startswith(("redis", "rediss"))
        else {},
        strategy="fixed-window",
        headers_enabled=True,
        swallow_errors=True,
        enabled=config["RATELIMIT_ENABLED"],
        key_prefix=config["RATELIMIT_KEY_PREFIX"],
        application_limits=[
            ApplicationLimit(
                _generation_limit,
                scope="generation",
                exempt_when=_not_generation,
                error_message=lambda: (
                    f"Too many generation requests: at most "
                    f"{_generation_limit()}; retry after the reset."
                ),
            ),
            ApplicationLimit(
                _default_limit,
                scope="default",
                exempt_when=is_generation,
                error_message=lambda: (
                    f"Too many requests: at most {_default_limit()}; retry after the reset."
                ),
            ),
        ],
    )
    # Probes and docs: a load balancer's health checks must never be refused.
    limiter.request_filter(lambda: request.blueprint in PUBLIC_BLUEPRINTS)
    limiter_log = logging.getLogger("flask-limiter")
    if not any(isinstance(f, _OncePerInterval) for f in limiter_log.filters):
        limiter_log.addFilter(_OncePerInterval(config["RATELIMIT_WARNING_SECONDS"]))
    app.extensions["rate_limiter"] = limiter


def _not_generation() -> bool:
    return not is_generation()
