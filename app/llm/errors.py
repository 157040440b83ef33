"""Provider failures mapped to the errors our clients see (and counted)."""

from __future__ import annotations

from collections.abc import Mapping

import openai

from app.errors import DomainError
from app.web import metrics

try:  # openai >= 3 ships on httpx2; earlier releases on httpx.
    from httpx2 import HTTPError as TransportError
    from httpx2 import TimeoutException
except ImportError:  # pragma: no cover
    from httpx import HTTPError as TransportError  # type: ignore[assignment,no-redef]
    from httpx import TimeoutException  # type: ignore[assignment,no-redef]


class BadUpstreamEvent(Exception):
    """The upstream sent a stream event that is not a JSON object."""


# What a broken upstream stream raises while being read: openai wraps transport failures in
# APIConnectionError today, but raw transport errors have escaped in other versions.
STREAM_ERRORS: tuple[type[Exception], ...] = (openai.APIError, TransportError, BadUpstreamEvent)


class UpstreamError(DomainError):
    """The LLM provider failed or could not be reached (502)."""

    status_code = 502


class UpstreamRateLimited(UpstreamError):
    status_code = 429


class UpstreamTimeout(UpstreamError):
    status_code = 504


class UnknownModel(UpstreamError):
    """The provider serves no model by the conversation's model_type: the client's to fix."""

    status_code = 422


class LLMNotConfigured(DomainError):
    status_code = 503


def _error_kind(error: Exception) -> str:
    """The ``kind`` label an upstream failure is counted under."""
    for kind, types in (
        ("rate_limited", openai.RateLimitError),
        ("bad_event", BadUpstreamEvent),
        ("timeout", openai.APITimeoutError | TimeoutException),
        ("connection", openai.APIConnectionError | TransportError),
        ("auth", openai.AuthenticationError | openai.PermissionDeniedError),
        ("unknown_model", openai.NotFoundError),
    ):
        if isinstance(error, types):
            return kind
    if isinstance(error, openai.APIStatusError):
        return f"status_{error.status_code}"
    return "other"


def map_error(error: Exception) -> UpstreamError:
    """Turn an openai/transport exception into the error our clients see (and count it)."""
    metrics.upstream_error(_error_kind(error))
    if isinstance(error, openai.RateLimitError):
        retry_after = error.response.headers.get("retry-after")
        headers = {"Retry-After": retry_after} if retry_after else {}
        return UpstreamRateLimited(
            "The LLM provider is rate limiting; retry later.", headers=headers
        )
    if isinstance(error, BadUpstreamEvent):
        return UpstreamError(f"The LLM provider sent a malformed stream event: {error}")
    if isinstance(error, openai.APITimeoutError | TimeoutException):
        return UpstreamTimeout("The LLM provider did not answer in time.")
    if isinstance(error, openai.APIConnectionError | TransportError):
        return UpstreamError("The LLM provider could not be reached or broke off.")
    if isinstance(error, openai.AuthenticationError | openai.PermissionDeniedError):
        return UpstreamError("The LLM provider rejected this service's credentials.")
    if isinstance(error, openai.NotFoundError):
        return UnknownModel(
            "The LLM provider does not serve this conversation's model_type "
            f"(change it with PUT): {error.message}"
        )
    if isinstance(error, openai.APIStatusError):
        return UpstreamError(f"The LLM provider answered {error.status_code}: {error.message}")
    return UpstreamError("The LLM provider failed.")


class UpstreamStatus(UpstreamError):
    """An error status from the upstream, passed on as it is (the /v1 gateway)."""

    def __init__(self, message: str, status: int, headers: dict[str, str] | None = None) -> None:
        super().__init__(message, headers=headers)
        self.status_code = status


def pass_through_error(error: Exception) -> UpstreamError:
    """Like ``map_error``, but the upstream's own status and message reach the client: the
    /v1 gateway answers as the upstream would. Its refusal of *our* credentials is a 502."""
    if isinstance(error, openai.APIStatusError) and not isinstance(
        error, openai.AuthenticationError | openai.PermissionDeniedError
    ):
        retry_after = error.response.headers.get("retry-after")
        body = error.body
        if isinstance(body, Mapping) and isinstance(body.get("error"), Mapping):
            body = body["error"]
        message = body.get("message") if isinstance(body, Mapping) else None
        return UpstreamStatus(
            message if isinstance(message, str) and message else error.message,
            error.status_code,
            {"Retry-After": retry_after} if retry_after else None,
        )
    return map_error(error)


def upstream_status(error: DomainError, cause: BaseException | None) -> int:
    """The status code to record for a failed exchange: the upstream's own when it gave one."""
    if isinstance(cause, openai.APIStatusError):
        return cause.status_code
    return error.status_code
