"""Settings read from the environment; no secret has a default."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from limits import parse_many
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from app.database import FairQueuePool

_POSTGRES_SCHEMES = ("postgres://", "postgresql://")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# Retention: a hundred years is "forever" as far as any timestamp arithmetic needs.
RETENTION_DAYS_MAX = 36500
TEMPORARY_RETENTION_HOURS_MAX = 8760
PURGE_INTERVAL_MAX = 86400.0


def normalize_database_url(url: str) -> str:
    """Point bare PostgreSQL URLs (as PaaS hosts hand them out) at the psycopg 3 driver."""
    for scheme in _POSTGRES_SCHEMES:
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url[len(scheme) :]
    return url


class SettingsError(ValueError):
    """A setting the service cannot start with; its message is one line for the operator."""

    def __init__(self, name: str, raw: str, expected: str) -> None:
        super().__init__(f"invalid setting {name}={raw!r}: expected {expected}")
        self.name = name


def _raw(env: Mapping[str, str], name: str) -> str | None:
    raw = env.get(name)
    return None if raw is None or raw.strip() == "" else raw


def _bounds(kind: str, minimum: float | None, maximum: float | None) -> str:
    if minimum is not None and maximum is not None:
        return f"{kind} from {minimum:g} to {maximum:g}"
    if minimum is not None:
        return f"{kind} >= {minimum:g}"
    if maximum is not None:
        return f"{kind} <= {maximum:g}"
    return kind


def _int(
    env: Mapping[str, str],
    name: str,
    default: int,
    *,
    minimum: int | None = 0,
    maximum: int | None = None,
) -> int:
    raw = _raw(env, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(name, raw, _bounds("an integer", minimum, maximum)) from None
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise SettingsError(name, raw, _bounds("an integer", minimum, maximum))
    return value


def _float(
    env: Mapping[str, str],
    name: str,
    default: float,
    *,
    minimum: float | None = 0.0,
    maximum: float | None = None,
) -> float:
    raw = _raw(env, name)
    if raw is None:
        return default
    expected = _bounds("a number", minimum, maximum)
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(name, raw, expected) from None
    if not math.isfinite(value):
        raise SettingsError(name, raw, expected)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise SettingsError(name, raw, expected)
    return value


def _optional_int(env: Mapping[str, str], name: str, *, minimum: int, maximum: int) -> int | None:
    """An integer in range, or None when unset (a setting whose absence means "no limit")."""
    if _raw(env, name) is None:
        return None
    return _int(env, name, minimum, minimum=minimum, maximum=maximum)


def _interval(env: Mapping[str, str], name: str, default: float, *, maximum: float) -> float:
    """Seconds between periodic runs: 0 (off), or from 1 to ``maximum``."""
    expected = f"0 (off) or a number from 1 to {maximum:g}"
    try:
        value = _float(env, name, default, minimum=0.0, maximum=maximum)
    except SettingsError:
        raise SettingsError(name, str(_raw(env, name)), expected) from None
    if 0 < value < 1:
        raise SettingsError(name, str(_raw(env, name)), expected)
    return value


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = _raw(env, name)
    if raw is None:
        return default
    word = raw.strip().lower()
    if word not in _TRUE | _FALSE:
        raise SettingsError(name, raw, "true or false (also 1/0, yes/no, on/off)")
    return word in _TRUE


def _choice(env: Mapping[str, str], name: str, default: str, *, choices: tuple[str, ...]) -> str:
    raw = _raw(env, name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value not in {choice.lower() for choice in choices}:
        raise SettingsError(name, raw, "one of " + ", ".join(choices))
    return value


def _http_url(env: Mapping[str, str], name: str) -> str | None:
    raw = _raw(env, name)
    if raw is None:
        return None
    parts = urlsplit(raw.strip())
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise SettingsError(name, raw, "an http:// or https:// URL")
    return raw.strip()


def _rate_limit(env: Mapping[str, str], name: str, default: str) -> str:
    raw = _raw(env, name)
    if raw is None:
        return default
    try:
        parse_many(raw)
    except ValueError:
        raise SettingsError(name, raw, "limits like 60/minute or 5/second;100/hour") from None
    return raw.strip()


_LIMIT_STORAGES = ("memory://", "redis://", "rediss://", "redis+sentinel://", "redis+cluster://")


def _storage_url(env: Mapping[str, str], name: str, default: str) -> str:
    raw = _raw(env, name)
    if raw is None:
        return default
    if not raw.strip().startswith(_LIMIT_STORAGES):
        raise SettingsError(name, raw, "memory:// or a redis:// URL")
    return raw.strip()


# user:password@ in a URL: the password is never repeated in an error.
_PASSWORD = re.compile(r"(://[^:/@]*):[^@]*@")


def _database_url(env: Mapping[str, str], name: str, default: str) -> str:
    raw = _raw(env, name)
    if raw is None:
        return default
    shown = _PASSWORD.sub(r"\1:***@", raw)
    try:
        url = make_url(normalize_database_url(raw.strip()))
    except ArgumentError:
        raise SettingsError(name, shown, "a database URL such as postgresql://...") from None
    if url.get_backend_name() not in {"sqlite", "postgresql"}:
        raise SettingsError(name, shown, "a postgresql:// or sqlite:/// URL")
    return normalize_database_url(raw.strip())


# scheme://host[:port], as a browser sends it in Origin.
_ORIGIN = re.compile(
    r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?|https?://\[[0-9A-Fa-f:]+\](:[0-9]{1,5})?"
)


def _origins(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """A comma-separated list of origins, or ``*`` for any."""
    raw = _raw(env, name)
    if raw is None:
        return ()
    origins = tuple(part.strip().rstrip("/") for part in raw.split(",") if part.strip())
    if origins == ("*",):
        return origins
    for origin in origins:
        if not _ORIGIN.fullmatch(origin):
            raise SettingsError(
                name, raw, "* or comma-separated origins like https://app.example.com:8443"
            )
    return origins


def engine_options(url: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    """SQLAlchemy engine options for the database behind ``url``."""
    # A statement's parameters hold prompts and answers: a database error's message (in a
    # logged traceback, a warning) shows the SQL without them.
    hidden = {"hide_parameters": True}
    if url.startswith("sqlite"):
        # SQLite has no server to time out on; the busy timeout is set per connection.
        return {**hidden, "connect_args": {"timeout": settings["DB_BUSY_TIMEOUT"]}}
    return {
        **hidden,
        # First come first served: the stock queue lets a newcomer take the connection a
        # waiter was woken for, so a request can wait seconds under load (app/database.py).
        "poolclass": FairQueuePool,
        # No pool_pre_ping: a restarted database's dead connections are caught at checkout
        # without a round trip (app/database.py).
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
        "SQLALCHEMY_DATABASE_URI": _database_url(env, "DATABASE_URL", default_db),
        # A fixed pool: an overflow connection is closed when it comes back, so a burst would
        # pay for a new connection (a server process forked) every few streams. Ten: a smaller
        # pool delays the first token of many concurrent streams.
        "DB_POOL_SIZE": _int(env, "DB_POOL_SIZE", 10, minimum=1),
        "DB_MAX_OVERFLOW": _int(env, "DB_MAX_OVERFLOW", 0),
        "DB_POOL_TIMEOUT": _float(env, "DB_POOL_TIMEOUT", 10.0),
        # psycopg reads 0 as "wait forever": the very thing this setting is there to prevent.
        "DB_CONNECT_TIMEOUT": _int(env, "DB_CONNECT_TIMEOUT", 5, minimum=1),
        "DB_BUSY_TIMEOUT": _float(env, "DB_BUSY_TIMEOUT", 15.0),
        "MAX_CONTENT_LENGTH": _int(env, "MAX_CONTENT_LENGTH", 1024 * 1024, minimum=1),
        "DEFAULT_MODEL": env.get("DEFAULT_MODEL") or "gpt-4o-mini",
        "LOG_LEVEL": _choice(env, "LOG_LEVEL", "info", choices=LOG_LEVELS).upper(),
        # The gunicorn config makes json the default there; a terminal reads text better.
        "LOG_FORMAT": _choice(env, "LOG_FORMAT", "text", choices=("json", "text")),
        "SQLALCHEMY_ECHO": _bool(env, "SQLALCHEMY_ECHO", False),
        # HTTP: browser origins allowed to call the API, and proxies in front of the service.
        "CORS_ORIGINS": _origins(env, "CORS_ORIGINS"),
        "TRUSTED_PROXIES": _int(env, "TRUSTED_PROXIES", 0, maximum=10),
        # LLM upstream (any OpenAI-compatible server).
        "OPENAI_API_KEY": env.get("OPENAI_API_KEY") or None,
        "OPENAI_BASE_URL": _http_url(env, "OPENAI_BASE_URL"),
        "OPENAI_CONNECT_TIMEOUT": _float(env, "OPENAI_CONNECT_TIMEOUT", 5.0),
        "OPENAI_READ_TIMEOUT": _float(env, "OPENAI_READ_TIMEOUT", 60.0),
        "OPENAI_MAX_RETRIES": _int(env, "OPENAI_MAX_RETRIES", 2),
        # /v1 relays the upstream's error at once: its clients retry themselves (every SDK
        # does, twice by default), and retrying here too would multiply their attempts.
        "GATEWAY_MAX_RETRIES": _int(env, "GATEWAY_MAX_RETRIES", 0),
        "OPENAI_MAX_CONNECTIONS": _int(env, "OPENAI_MAX_CONNECTIONS", 1000, minimum=1),
        "OPENAI_STREAM_USAGE": _bool(env, "OPENAI_STREAM_USAGE", True),
        # The /v1 gateway: how long a process reuses the upstream's model list.
        "MODELS_CACHE_SECONDS": _float(env, "MODELS_CACHE_SECONDS", 60.0),
        # Generation.
        "HISTORY_MAX_MESSAGES": _int(env, "HISTORY_MAX_MESSAGES", 20),
        "HISTORY_MAX_CHARS": _int(env, "HISTORY_MAX_CHARS", 24000),
        "SSE_KEEPALIVE_SECONDS": _float(env, "SSE_KEEPALIVE_SECONDS", 15.0),
        # Bounds on one exchange: its length in tokens (none by default) and its duration
        # in seconds (0: none), after which it is cut off and saved as it stands.
        "MAX_OUTPUT_TOKENS": _int(env, "MAX_OUTPUT_TOKENS", 0),
        "MAX_OUTPUT_TOKENS_PARAM": _choice(
            env,
            "MAX_OUTPUT_TOKENS_PARAM",
            "max_tokens",
            choices=("max_tokens", "max_completion_tokens"),
        ),
        "GENERATION_TIMEOUT": _float(env, "GENERATION_TIMEOUT", 0.0),
        # After a client leaves mid-stream, how long to read on for the upstream's usage
        # (what it bills) before estimating it instead (0: estimate at once).
        "USAGE_DRAIN_SECONDS": _float(env, "USAGE_DRAIN_SECONDS", 2.0),
        "SAVE_ATTEMPTS": _int(env, "SAVE_ATTEMPTS", 5, minimum=1),
        "SAVE_RETRY_DELAY": _float(env, "SAVE_RETRY_DELAY", 0.5),
        # Exchanges still unsaved after those attempts wait here for `flask messages recover`.
        "UNSAVED_EXCHANGES_FILE": env.get("UNSAVED_EXCHANGES_FILE")
        or str(Path(instance_path) / "unsaved-exchanges.jsonl"),
        # While an answer streams, its worker writes a heartbeat and the text so far this
        # often; an exchange whose heartbeat is older than REAP_AFTER_SECONDS lost its
        # worker and is ended as interrupted (checked every REAP_INTERVAL_SECONDS).
        "CHECKPOINT_SECONDS": _float(env, "CHECKPOINT_SECONDS", 2.0),
        "REAP_AFTER_SECONDS": _float(env, "REAP_AFTER_SECONDS", 15.0, minimum=1.0),
        "REAP_INTERVAL_SECONDS": _float(env, "REAP_INTERVAL_SECONDS", 5.0, minimum=0.1),
        # Retention (app/services/purge.py): a conversation inactive for RETENTION_DAYS is
        # deleted (unset: kept forever; a user's own setting overrides it), a temporary one
        # TEMPORARY_RETENTION_HOURS after its last activity; every worker purges them every
        # PURGE_INTERVAL_SECONDS (0: only `flask conversations purge` does).
        "RETENTION_DAYS": _optional_int(
            env, "RETENTION_DAYS", minimum=1, maximum=RETENTION_DAYS_MAX
        ),
        "TEMPORARY_RETENTION_HOURS": _int(
            env,
            "TEMPORARY_RETENTION_HOURS",
            24,
            minimum=1,
            maximum=TEMPORARY_RETENTION_HOURS_MAX,
        ),
        "PURGE_INTERVAL_SECONDS": _interval(
            env, "PURGE_INTERVAL_SECONDS", 300.0, maximum=PURGE_INTERVAL_MAX
        ),
        # Not from the environment: the test suite turns the ticker off and ticks by hand.
        "LIVE_TICKER": True,
        # Authentication: how long a process trusts what a key resolved to (revocation delay).
        "AUTH_CACHE_SECONDS": _float(env, "AUTH_CACHE_SECONDS", 30.0),
        # Rate limits (app/api/limits.py): per user, per minute; counters in Redis in production.
        "RATELIMIT_ENABLED": _bool(env, "RATELIMIT_ENABLED", True),
        "RATELIMIT_STORAGE_URL": _storage_url(env, "RATELIMIT_STORAGE_URL", "memory://"),
        "RATELIMIT_KEY_PREFIX": env.get("RATELIMIT_KEY_PREFIX") or "convstore",
        "RATELIMIT_WARNING_SECONDS": _float(env, "RATELIMIT_WARNING_SECONDS", 60.0),
        "RATE_LIMIT_GENERATION": _rate_limit(env, "RATE_LIMIT_GENERATION", "60/minute"),
        "RATE_LIMIT_DEFAULT": _rate_limit(env, "RATE_LIMIT_DEFAULT", "600/minute"),
        # Tokens a user may spend a UTC day (0: no budget), counted from the usage rollups.
        "TOKEN_BUDGET_DAILY": _int(env, "TOKEN_BUDGET_DAILY", 0),
        # Titles.
        "TITLE_MODEL": env.get("TITLE_MODEL") or None,
        "TITLE_MAX_TOKENS": _int(env, "TITLE_MAX_TOKENS", 24, minimum=1),
        "TITLE_TIMEOUT": _float(env, "TITLE_TIMEOUT", 10.0),
        # Full-text search: PostgreSQL's text-search configuration (simple: any language).
        "SEARCH_LANGUAGE": env.get("SEARCH_LANGUAGE") or "simple",
        # A query matching more titles, prompts and answers than this lists them newest first
        # rather than ranked (ranking reads every match, on every page).
        "SEARCH_RANKED_MAX": _int(env, "SEARCH_RANKED_MAX", 2000),
        # Monitoring: a bearer token /metrics then requires (unset: /metrics is public).
        "METRICS_TOKEN": env.get("METRICS_TOKEN") or None,
    }
    # A live stream heartbeats every CHECKPOINT_SECONDS: a staleness bound within two
    # heartbeats would reap streams that are merely slow to write.
    checkpoint, stale = settings["CHECKPOINT_SECONDS"], settings["REAP_AFTER_SECONDS"]
    if checkpoint and stale < 3 * checkpoint:
        raise SettingsError(
            "REAP_AFTER_SECONDS",
            str(stale),
            f"at least 3 x CHECKPOINT_SECONDS ({3 * checkpoint:g})",
        )
    return settings


def startup_warnings(
    settings: Mapping[str, Any], env: Mapping[str, str] | None = None
) -> list[str]:
    """What an operator should hear at start-up about settings that parse but look wrong."""
    env = os.environ if env is None else env
    warnings = []
    # A platform (PORT set) usually gives each deploy a fresh disk: a SQLite file there
    # vanishes with the instance.
    if _raw(env, "PORT") and not _raw(env, "DATABASE_URL"):
        path = settings["SQLALCHEMY_DATABASE_URI"].removeprefix("sqlite:///")
        warnings.append(
            f"PORT is set but DATABASE_URL is not: every conversation goes to the SQLite file "
            f"{path} on this machine's local disk, which a platform may wipe on the next "
            f"deploy or restart; set DATABASE_URL to a PostgreSQL database"
        )
    return warnings


def api_settings() -> dict[str, Any]:
    """flask-smorest's settings: where the OpenAPI document and the docs are served."""
    return {
        "API_TITLE": "convstore",
        "API_VERSION": "1.0",
        "OPENAPI_VERSION": "3.1.0",
        "OPENAPI_URL_PREFIX": "/",
        "OPENAPI_JSON_PATH": "openapi.json",
        # /docs is app/api/docs.py's: Swagger UI served from a pinned package, no CDN.
        "OPENAPI_SWAGGER_UI_PATH": None,
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
