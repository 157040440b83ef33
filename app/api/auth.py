"""Bearer authentication: every endpoint but the probes and the API docs needs a key."""

from __future__ import annotations

from flask import Flask, g, request

from app.errors import Unauthorized
from app.services.auth import Principal, authenticate

# Blueprints anyone may reach: the probes, and flask-smorest's OpenAPI document and docs;
# /metrics checks its own token (METRICS_TOKEN), not an API key.
PUBLIC_BLUEPRINTS = frozenset({"health", "api-docs", "metrics"})


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
    principal = authenticate(key.strip())
    if principal is None:
        raise Unauthorized("The API key is unknown or revoked.", invalid_token=True)
    g.principal = principal


def current_principal() -> Principal:
    """Who the current request acts for (set by the authentication hook)."""
    return g.principal


def init_auth(app: Flask) -> None:
    """Check the API key of every request to a protected endpoint."""
    app.before_request(_require_api_key)
