"""Domain errors, and the one JSON error shape every failure is answered with."""

from __future__ import annotations

from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from flask import Flask, Response, current_app, has_request_context, jsonify, request
from sqlalchemy import exc as sa_exc
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge, UnsupportedMediaType

from app.conflicts import ConversationGone, WriteConflict
from app.database import is_transient


class DomainError(Exception):
    """A failure a service reports; ``errors.py`` turns it into an HTTP response."""

    status_code: int = HTTPStatus.INTERNAL_SERVER_ERROR
    errors: dict[str, Any] | None = None

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class NotFound(DomainError):
    status_code = HTTPStatus.NOT_FOUND


class Unauthorized(DomainError):
    """No valid API key: the client must authenticate (RFC 6750's Bearer scheme)."""

    status_code = HTTPStatus.UNAUTHORIZED

    def __init__(self, message: str, *, invalid_token: bool = False) -> None:
        challenge = 'Bearer realm="convstore"'
        if invalid_token:
            challenge += ', error="invalid_token"'
        super().__init__(message, headers={"WWW-Authenticate": challenge})


class Forbidden(DomainError):
    status_code = HTTPStatus.FORBIDDEN


class Conflict(DomainError):
    status_code = HTTPStatus.CONFLICT


class Unprocessable(DomainError):
    """Well-formed input a rule refuses (422), with the fields at fault as validation does."""

    status_code = HTTPStatus.UNPROCESSABLE_ENTITY

    def __init__(self, message: str, errors: dict[str, Any]) -> None:
        super().__init__(message)
        self.errors = errors


class Unavailable(DomainError):
    """Something the service depends on is down; the client may retry (503)."""

    status_code = HTTPStatus.SERVICE_UNAVAILABLE

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"Retry-After": "1"})


# Builds an error's (status, JSON payload) from (status, message, errors).
ErrorShape = Callable[[int, "str | None", "dict[str, Any] | None"], tuple[int, dict[str, Any]]]


def register_error_shape(app: Flask, path_prefix: str, shape: ErrorShape) -> None:
    """Answer every error under ``path_prefix`` in another shape (the /v1 gateway answers
    OpenAI's), whichever handler or hook raised it: auth, routing, body checks, views."""
    app.extensions.setdefault("error_shapes", []).append((path_prefix, shape))


def _shape_for_path() -> ErrorShape | None:
    if not has_request_context():
        return None
    for prefix, shape in current_app.extensions.get("error_shapes", ()):
        if request.path.startswith(prefix):
            return shape
    return None


def error_response(
    status: int,
    message: str | None = None,
    errors: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """Build ``{code, status, message, errors}``, the shape flask-smorest uses for its own."""
    shape = _shape_for_path()
    if shape is not None:
        status, payload = shape(status, message, errors)
        response = jsonify(payload)
        response.status_code = status
        response.headers.update(headers or {})
        return response
    payload: dict[str, Any] = {"code": status, "status": HTTPStatus(status).phrase}
    if message is not None:
        payload["message"] = message
    if errors is not None:
        payload["errors"] = errors
    response = jsonify(payload)
    response.status_code = status
    response.headers.update(headers or {})
    return response


def _handle_domain_error(error: DomainError) -> Response:
    return error_response(error.status_code, error.message, error.errors, error.headers)


def _handle_http_exception(error: HTTPException) -> Response:
    # Same payload as flask-smorest's handler, plus werkzeug's description as the message
    # when nobody gave a more specific one, so every error says what went wrong.
    data = getattr(error, "data", None) or {}
    errors = data.get("errors", data.get("messages"))
    message = data.get("message") or (
        "The request is invalid; see errors." if errors else error.description
    )
    headers = dict(data.get("headers") or {})
    if error.code == HTTPStatus.METHOD_NOT_ALLOWED and getattr(error, "valid_methods", None):
        headers["Allow"] = ", ".join(error.valid_methods)
    return error_response(error.code or HTTPStatus.INTERNAL_SERVER_ERROR, message, errors, headers)


def _handle_write_conflict(error: WriteConflict) -> Response:
    # A conversation deleted under a new exchange reads as any unknown one.
    status = 404 if isinstance(error, ConversationGone) else 409
    return error_response(status, error.message)


def _handle_database_error(error: sa_exc.DBAPIError) -> Response:
    if _missing_table(error):
        current_app.logger.error("the database schema is not migrated: run `flask db upgrade`")
        return error_response(
            HTTPStatus.SERVICE_UNAVAILABLE,
            "The database is not ready; try again shortly.",
            headers={"Retry-After": "1"},
        )
    if is_transient(error):
        # The database is down, restarting or saturated: the client may retry, so say 503.
        current_app.logger.error("database unavailable: %s", error.__class__.__name__)
        return error_response(
            HTTPStatus.SERVICE_UNAVAILABLE,
            "The database is unavailable; try again shortly.",
            headers={"Retry-After": "1"},
        )
    raise error  # a bug: the generic handler answers 500 and logs the traceback


def _handle_database_unavailable(error: sa_exc.TimeoutError) -> Response:
    current_app.logger.error("database pool exhausted: %s", error)
    return error_response(
        HTTPStatus.SERVICE_UNAVAILABLE,
        "The database is unavailable; try again shortly.",
        headers={"Retry-After": "1"},
    )


def _missing_table(error: sa_exc.DBAPIError) -> bool:
    # PostgreSQL's undefined_table, SQLite's "no such table": the schema is behind the code.
    return getattr(error.orig, "sqlstate", None) == "42P01" or "no such table" in str(error.orig)


_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def _require_json_body() -> None:
    if request.method not in _BODY_METHODS:
        return
    # A chunked body has no Content-Length (gunicorn passes it on, terminated).
    chunked = "chunked" in request.headers.get("Transfer-Encoding", "").lower()
    if not (request.content_length or chunked):
        return
    # webargs treats a non-JSON body as absent: a form-encoded create would silently
    # make an empty conversation. Say so instead.
    if not request.is_json:
        raise UnsupportedMediaType(
            "Send the request body as JSON (Content-Type: application/json)."
        )
    # Werkzeug checks Content-Length against MAX_CONTENT_LENGTH up front, but stops reading a
    # chunked body at the limit without a word: what was read would pass for the whole body.
    # (Werkzeug cannot tell a body of exactly the limit from a longer one: both are 413.)
    limit = request.max_content_length
    if chunked and limit is not None and len(request.get_data(cache=True)) >= limit:
        raise RequestEntityTooLarge()


def register_error_handlers(app: Flask) -> None:
    """Answer every HTTP and domain error with the JSON error shape (call after Api.init_app)."""
    app.register_error_handler(HTTPException, _handle_http_exception)
    app.register_error_handler(DomainError, _handle_domain_error)
    app.register_error_handler(WriteConflict, _handle_write_conflict)
    app.register_error_handler(sa_exc.DBAPIError, _handle_database_error)
    app.register_error_handler(sa_exc.TimeoutError, _handle_database_unavailable)
    app.register_error_handler(sa_exc.DisconnectionError, _handle_database_unavailable)
    app.before_request(_require_json_body)
