"""Settings read from the environment; no secret has a default."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

_POSTGRES_SCHEMES = ("postgres://", "postgresql://")


def normalize_database_url(url: str) -> str:
    """Point bare PostgreSQL URLs (as PaaS hosts hand them out) at the psycopg 3 driver."""
    for scheme in _POSTGRES_SCHEMES:
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url[len(scheme) :]
    return url


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise RuntimeError(f"{name} must be an integer, got {raw!r}") from exc


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise RuntimeError(f"{name} must be a number, got {raw!r}") from exc


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    return raw.strip().lower() in {"1", "true", "yes", "on"}


def engine_options(url: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    """SQLAlchemy engine options for the database behind ``url``."""
    if url.startswith("sqlite"):
        # SQLite has no server to time out on; the busy timeout is set per connection.
        return {"connect_args": {"timeout": settings["DB_BUSY_TIMEOUT"]}}
    return {
        # A restarted database leaves dead connections in the pool: test before use.
        "pool_pre_ping": True,
        "pool_size": settings["DB_POOL_SIZE"],
        "max_overflow": settings["DB_MAX_OVERFLOW"],
        "pool_timeout": settings["DB_POOL_TIMEOUT"],
        "pool_recycle": 1800,
        # psycopg waits 130 s by default for an unreachable host; fail fast instead.
        "connect_args": {"connect_timeout": settings["DB_CONNECT_TIMEOUT"]},
    }


def settings_from_env(instance_path: str, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Build the Flask config from environment variables (see .env.example)."""
    env = os.environ if env is None else env
    default_db = f"sqlite:///{Path(instance_path) / 'convstore.db'}"
    settings: dict[str, Any] = {
        "SQLALCHEMY_DATABASE_URI": normalize_database_url(env.get("DATABASE_URL") or default_db),
        "DB_POOL_SIZE": _int(env, "DB_POOL_SIZE", 5),
        "DB_MAX_OVERFLOW": _int(env, "DB_MAX_OVERFLOW", 10),
        "DB_POOL_TIMEOUT": _float(env, "DB_POOL_TIMEOUT", 10.0),
        "DB_CONNECT_TIMEOUT": _int(env, "DB_CONNECT_TIMEOUT", 5),
        "DB_BUSY_TIMEOUT": _float(env, "DB_BUSY_TIMEOUT", 15.0),
        "MAX_CONTENT_LENGTH": _int(env, "MAX_CONTENT_LENGTH", 1024 * 1024),
        "DEFAULT_MODEL": env.get("DEFAULT_MODEL") or "gpt-4o-mini",
        "LOG_LEVEL": (env.get("LOG_LEVEL") or "INFO").upper(),
        "SQLALCHEMY_ECHO": _bool(env, "SQLALCHEMY_ECHO", False),
        # LLM upstream (any OpenAI-compatible server).
        "OPENAI_API_KEY": env.get("OPENAI_API_KEY") or None,
        "OPENAI_BASE_URL": env.get("OPENAI_BASE_URL") or None,
        "OPENAI_CONNECT_TIMEOUT": _float(env, "OPENAI_CONNECT_TIMEOUT", 5.0),
        "OPENAI_READ_TIMEOUT": _float(env, "OPENAI_READ_TIMEOUT", 60.0),
        "OPENAI_MAX_RETRIES": _int(env, "OPENAI_MAX_RETRIES", 2),
        "OPENAI_MAX_CONNECTIONS": _int(env, "OPENAI_MAX_CONNECTIONS", 1000),
        "OPENAI_STREAM_USAGE": _bool(env, "OPENAI_STREAM_USAGE", True),
        # Generation.
        "HISTORY_MAX_MESSAGES": _int(env, "HISTORY_MAX_MESSAGES", 20),
        "HISTORY_MAX_CHARS": _int(env, "HISTORY_MAX_CHARS", 24000),
        "SSE_KEEPALIVE_SECONDS": _float(env, "SSE_KEEPALIVE_SECONDS", 15.0),
        "SAVE_ATTEMPTS": _int(env, "SAVE_ATTEMPTS", 5),
        "SAVE_RETRY_DELAY": _float(env, "SAVE_RETRY_DELAY", 0.5),
        # Exchanges still unsaved after those attempts wait here for `flask messages recover`.
        "UNSAVED_EXCHANGES_FILE": env.get("UNSAVED_EXCHANGES_FILE")
        or str(Path(instance_path) / "unsaved-exchanges.jsonl"),
        # While an answer streams, its worker writes a heartbeat and the text so far this
        # often; an exchange whose heartbeat is older than REAP_AFTER_SECONDS lost its
        # worker and is ended as interrupted (checked every REAP_INTERVAL_SECONDS).
        "CHECKPOINT_SECONDS": _float(env, "CHECKPOINT_SECONDS", 2.0),
        "REAP_AFTER_SECONDS": _float(env, "REAP_AFTER_SECONDS", 15.0),
        "REAP_INTERVAL_SECONDS": _float(env, "REAP_INTERVAL_SECONDS", 5.0),
        # Authentication: how long a process trusts what a key resolved to (revocation delay).
        "AUTH_CACHE_SECONDS": _float(env, "AUTH_CACHE_SECONDS", 30.0),
        # Titles.
        "TITLE_MODEL": env.get("TITLE_MODEL") or None,
        "TITLE_MAX_TOKENS": _int(env, "TITLE_MAX_TOKENS", 24),
        "TITLE_TIMEOUT": _float(env, "TITLE_TIMEOUT", 10.0),
        # Monitoring: a bearer token /metrics then requires (unset: /metrics is public).
        "METRICS_TOKEN": env.get("METRICS_TOKEN") or None,
    }
    return settings


def api_settings() -> dict[str, Any]:
    """flask-smorest's settings: where the OpenAPI document and the docs are served."""
    return {
        "API_TITLE": "convstore",
        "API_VERSION": "1.0",
        "OPENAPI_VERSION": "3.0.3",
        "OPENAPI_URL_PREFIX": "/",
        "OPENAPI_JSON_PATH": "openapi.json",
        "OPENAPI_SWAGGER_UI_PATH": "docs",
        "OPENAPI_SWAGGER_UI_URL": "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/",
        # Every operation takes a bearer API key unless it says otherwise (security=[]).
        "API_SPEC_OPTIONS": {
            "components": {
                "securitySchemes": {
                    "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "API key"}
                }
            },
            "security": [{"bearerAuth": []}],
        },
        # Sorted keys would reorder our error payloads; keep insertion order.
        "JSON_SORT_KEYS": False,
    }
