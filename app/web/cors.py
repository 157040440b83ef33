"""CORS: which browser origins may call the API (``CORS_ORIGINS``; none by default)."""

from __future__ import annotations

from flask import Flask
from flask_cors import CORS

# What a browser client sends beyond the CORS-safelisted headers.
ALLOWED_HEADERS = (
    "Authorization",
    "Content-Type",
    "X-Request-ID",
    "X-Conversation-Id",
    "X-Conversation-Temporary",
)
# Response headers a script may read: where a new resource is, paging, retrying and rate
# limits, request tracing, and the streaming headers.
EXPOSED_HEADERS = (
    "Location",
    "Link",
    "Retry-After",
    "WWW-Authenticate",
    "X-Request-ID",
    "X-Conversation-Id",
    "X-Message-Id",
    "X-Max-Output-Tokens",
    "X-Accel-Buffering",
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
    "RateLimit-Limit",
    "RateLimit-Remaining",
    "RateLimit-Reset",
)
PREFLIGHT_MAX_AGE = 600


def init_cors(app: Flask) -> None:
    """Answer preflights and add CORS headers for the configured origins on every route.

    Keys travel in ``Authorization``, never in cookies, so credentials stay off.
    """
    origins = app.config["CORS_ORIGINS"]
    if not origins:
        return
    CORS(
        app,
        origins="*" if origins == ("*",) else list(origins),
        allow_headers=list(ALLOWED_HEADERS),
        expose_headers=list(EXPOSED_HEADERS),
        max_age=PREFLIGHT_MAX_AGE,
        supports_credentials=False,
    )
