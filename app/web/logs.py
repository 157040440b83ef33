"""Log lines an operator can search: JSON or text, each with the request's id and user.

Only the standard library is imported at module level: gunicorn.conf.py loads this file by
path to format gunicorn's own lines the same way, without importing the app in the master
(gevent must patch the standard library in each worker before the app's imports).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from datetime import UTC, datetime
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask, Response

REQUEST_LOGGER = "app.request"
# Attributes every LogRecord has; anything else on a record was passed with ``extra=``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
    "request_id",
    "user_id",
}


def _request_context() -> tuple[str | None, int | None]:
    # Never imports Flask: in gunicorn's master there is none, and no request either.
    flask = sys.modules.get("flask")
    if flask is None or not flask.has_request_context():
        return None, None
    principal = flask.g.get("principal")
    return flask.g.get("request_id"), getattr(principal, "user_id", None)


class RequestContextFilter(logging.Filter):
    """Stamp each record with the current request's id and user id (None outside one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id, record.user_id = _request_context()
        return True


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, pid, message, request and user ids."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
            "user_id": getattr(record, "user_id", None),
            **_extras(record),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``time LEVEL [pid] logger request=... user=...: message key=value ...``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s [%(process)d] %(name)s%(context)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        request_id, user_id = getattr(record, "request_id", None), getattr(record, "user_id", None)
        context = f" request={request_id}" if request_id else ""
        context += f" user={user_id}" if user_id is not None else ""
        record.context = context
        text = super().format(record)
        del record.context
        extras = _extras(record)
        return text + "".join(f" {k}={v}" for k, v in extras.items()) if extras else text

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")


def make_handler(log_format: str) -> logging.Handler:
    """A stderr handler in ``log_format`` (json or text) that knows the current request."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(RequestContextFilter())
    return handler


def configure_logging(level: str, log_format: str) -> None:
    """Send every logger's records to stderr in ``log_format`` (once per process)."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_convstore", False)]:
        root.removeHandler(old)
    handler = make_handler(log_format)
    handler._convstore = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)


def _start_timer() -> None:
    from flask import g

    g.request_started = time.perf_counter()


def _log_request(response: Response) -> Response:
    """Register the request's one log line, written when the response is closed.

    Written at close, not here, so a stream's duration is the whole stream's. The route
    template stands for the path: no query string (prompts travel there), no ids.
    """
    from flask import g, request

    started = g.get("request_started", time.perf_counter())
    rule = request.url_rule
    fields = {
        "request_id": g.get("request_id"),
        "user_id": getattr(g.get("principal"), "user_id", None),
        "method": request.method,
        "route": rule.rule if rule is not None else None,
        "status": response.status_code,
        # The client's address: behind a proxy, right only with TRUSTED_PROXIES set.
        "client": request.remote_addr,
    }
    logger = logging.getLogger(REQUEST_LOGGER)

    def write() -> None:
        duration_ms = round((time.perf_counter() - started) * 1000, 1)
        server_error = fields["status"] >= HTTPStatus.INTERNAL_SERVER_ERROR
        level = logging.WARNING if server_error else logging.INFO
        route = fields["route"] or "(no route)"
        logger.log(
            level,
            "%s %s %s",
            fields["method"],
            route,
            fields["status"],
            extra={**fields, "duration_ms": duration_ms},
        )

    response.call_on_close(write)
    return response


def init_request_log(app: Flask) -> None:
    """Configure logging from the app's settings and write one line per request."""
    configure_logging(app.config["LOG_LEVEL"], app.config["LOG_FORMAT"])
    app.before_request_funcs.setdefault(None, []).insert(0, _start_timer)
    app.after_request(_log_request)
