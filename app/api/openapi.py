"""What the OpenAPI document says about errors: which ones each operation can answer."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, TypeVar

from apispec import APISpec, BasePlugin
from flask_smorest import Blueprint

from app.schemas.errors import ErrorOut

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class ErrorDoc:
    """An error response an operation documents: its status, when it happens, its headers."""

    status: HTTPStatus
    description: str
    headers: dict[str, Any] = field(default_factory=dict)

    @property
    def component(self) -> str:
        return f"Error{self.status}"

    def response(self) -> dict[str, Any]:
        """The OpenAPI response object (the marshmallow plugin resolves the schema)."""
        return {
            "description": self.description,
            "content": {"application/json": {"schema": ErrorOut}},
            **({"headers": self.headers} if self.headers else {}),
        }


def _header(description: str) -> dict[str, Any]:
    return {"description": description, "schema": {"type": "string"}}


RETRY_AFTER = {"Retry-After": _header("Seconds to wait before retrying.")}

# Errors that come from hooks around every view rather than from the views themselves: the
# bearer-key check (app/api/auth.py), the JSON body checks (app/errors.py, the arguments
# parser) and the database handler (app/errors.py). ErrorResponses documents them.
UNAUTHORIZED = ErrorDoc(
    HTTPStatus.UNAUTHORIZED,
    "No API key, a malformed one, or an unknown, revoked or expired one.",
    {"WWW-Authenticate": _header('The scheme to use: Bearer realm="convstore".')},
)
RATE_LIMITED = ErrorDoc(
    HTTPStatus.TOO_MANY_REQUESTS,
    "Over the user's rate limit (docs: operations, limits and budgets): retry after Retry-After.",
    {
        **RETRY_AFTER,
        "X-RateLimit-Limit": _header("Requests allowed in the window."),
        "X-RateLimit-Remaining": _header("Requests left in the window."),
        "X-RateLimit-Reset": _header("When the window resets (Unix time)."),
    },
)
DATABASE_UNAVAILABLE = ErrorDoc(
    HTTPStatus.SERVICE_UNAVAILABLE,
    "The database is unavailable; retry shortly.",
    headers=RETRY_AFTER,
)
BODY_ERRORS = (
    ErrorDoc(HTTPStatus.BAD_REQUEST, "The body is not well-formed JSON."),
    ErrorDoc(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "The body is larger than MAX_CONTENT_LENGTH."),
    ErrorDoc(
        HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "The body is not JSON (Content-Type: application/json)."
    ),
)

# Errors the views document where they can happen.
CONVERSATION_NOT_FOUND = ErrorDoc(
    HTTPStatus.NOT_FOUND, "No such conversation, or it is somebody else's (which is not revealed)."
)
# Deletes and new exchanges serialise on their conversation (app/repositories/deletes.py).
EXCHANGE_IN_PROGRESS = ErrorDoc(
    409, "An exchange it would delete is in progress (its id in the message): retry once ended."
)
# A no-store key stores no text (app/services/auth.py, Principal.no_store).
NO_STORE_KEY = ErrorDoc(
    HTTPStatus.FORBIDDEN, "The API key is a no-store key: it cannot store text this way."
)
PARENT_DELETED = ErrorDoc(
    409, "The exchange the prompt would follow was deleted meanwhile (its id in the message)."
)
# A query parameter an operation does not declare (app/api/__init__.py).
UNDECLARED_QUERY = ErrorDoc(
    HTTPStatus.UNPROCESSABLE_ENTITY, "A query parameter the operation does not declare."
)
# Query strings that can outgrow the request line gunicorn accepts (limit_request_line).
URL_TOO_LONG = ErrorDoc(
    HTTPStatus.REQUEST_URI_TOO_LONG, "The URL is longer than the server accepts (4094 bytes)."
)
GENERATION_ERRORS = (
    ErrorDoc(
        HTTPStatus.TOO_MANY_REQUESTS,
        "Over the user's rate limit or daily token budget, or the LLM provider is rate "
        "limiting (its Retry-After is passed on when it sent one).",
        headers=RETRY_AFTER,
    ),
    ErrorDoc(
        HTTPStatus.BAD_GATEWAY, "The LLM provider failed, could not be reached, or broke off."
    ),
    ErrorDoc(
        HTTPStatus.SERVICE_UNAVAILABLE,
        "No LLM is configured, or the database is unavailable.",
        headers=RETRY_AFTER,
    ),
    ErrorDoc(HTTPStatus.GATEWAY_TIMEOUT, "The LLM provider did not answer in time."),
)


def documents(blp: Blueprint, *errors: ErrorDoc) -> Callable[[F], F]:
    """Document error responses of a view (``blp.alt_response`` for each)."""

    def decorate(view: F) -> F:
        for error in errors:
            view = blp.alt_response(
                error.status,
                schema=ErrorOut,
                description=error.description,
                headers=error.headers or None,
            )(view)
        return view

    return decorate


class ErrorResponses(BasePlugin):
    """Document the cross-cutting errors on every operation they can reach.

    An operation that needs a key (it does not set ``security: []``) can answer 401, 429 over
    its user's rate limit, and 503 when the database is unavailable; one that takes a JSON
    body, 400, 413 and 415. A view's own documentation of the same status wins.
    """

    def init_spec(self, spec: APISpec) -> None:
        super().init_spec(spec)
        for error in (
            URL_TOO_LONG,
            UNAUTHORIZED,
            RATE_LIMITED,
            DATABASE_UNAVAILABLE,
            UNDECLARED_QUERY,
            *BODY_ERRORS,
        ):
            spec.components.response(error.component, error.response(), lazy=True)

    def operation_helper(
        self,
        path: str | None = None,
        operations: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        for operation in (operations or {}).values():
            # Any URL can outgrow the request line gunicorn accepts (limit_request_line).
            errors: list[ErrorDoc] = [URL_TOO_LONG]
            if operation.get("security") != []:
                errors += [UNAUTHORIZED, RATE_LIMITED, DATABASE_UNAVAILABLE]
                if not (path or "").startswith("/v1/"):
                    errors.append(UNDECLARED_QUERY)
            if "requestBody" in operation:
                errors += BODY_ERRORS
            responses = operation.setdefault("responses", {})
            documented = {str(status) for status in responses}
            for error in errors:
                if str(error.status) not in documented:
                    responses[str(error.status)] = error.component
