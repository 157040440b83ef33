"""Bearer authentication: every endpoint but the probes and the API docs needs a key."""

from __future__ import annotations

from functools import partial

from flask import Flask, Response, after_this_request, current_app, g, request

from app.errors import Unauthorized
from app.services.auth import Principal, authenticate, flush_key_usage

# Blueprints anyone may reach: the probes, the OpenAPI document and the docs page;
# /metrics checks its own token (METRICS_TOKEN), not an API key.
PUBLIC_BLUEPRINTS = frozenset({"health", "api-docs", "docs", "metrics"})


def _require_api_key() -> None:
    # No endpoint: the route is unknown or the method wrong; let that 404/405 through.
    if request.endpoint is None or request.blueprint in PUBLIC_BLUEPRINTS:
        return
    if request.method == "OPTIONS":
        return
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    if not key:
        raise Unauthorized("Send an API key: Authorization: Bearer <key>.")
    if scheme.lower() != "bearer":
        raise Unauthorized("Use the Bearer scheme: Authorization: Bearer <key>.")
    g.principal = authenticate(key.strip())
    if current_app.extensions["api_key_usage"]:
        after_this_request(_flush_usage_when_closed)


def _flush_usage_when_closed(response: Response) -> Response:
    # last_used_at is written once the response is sent, off the request's critical path.
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    response.call_on_close(partial(flush_key_usage, app))
    return response


def current_principal() -> Principal:
    """Who the current request acts for (set by the authentication hook)."""
    return g.principal


def init_auth(app: Flask) -> None:
    """Check the API key of every request to a protected endpoint."""
    app.before_request(_require_api_key)
