"""A response's status, and why it is incomplete or failed, from its exchange's ending."""

from __future__ import annotations

from http import HTTPStatus

from app.exchange.outcomes import CLIENT_CLOSED, Outcome
from app.exchange.responses_types import (
    IncompleteDetails,
    ResponseError,
    ResponseRow,
    ResponseStatus,
)

_FAILURES = {
    CLIENT_CLOSED: "The client closed the connection before the answer was complete.",
    HTTPStatus.BAD_GATEWAY: "The upstream model failed or broke off while answering.",
    HTTPStatus.GATEWAY_TIMEOUT: "The upstream model did not finish in time (GENERATION_TIMEOUT).",
}


def response_status(
    row: ResponseRow,
) -> tuple[ResponseStatus, IncompleteDetails | None, ResponseError | None]:
    """(status, incomplete_details, error) of a response from its exchange's ending."""
    outcome = row.outcome
    if row.is_success is None:
        return "in_progress", None, None
    if outcome == Outcome.COMPLETE or (outcome is None and row.is_success):
        if row.finish_reason == "length":
            return "incomplete", {"reason": "max_output_tokens"}, None
        if row.finish_reason == "content_filter":
            return "incomplete", {"reason": "content_filter"}, None
        return "completed", None, None
    if outcome == Outcome.CLIENT_CLOSED:
        return "cancelled", None, None
    if outcome == Outcome.INTERRUPTED:
        message = "The service stopped while writing the answer; the text is its last checkpoint."
    else:
        message = _FAILURES.get(row.status_code or 0, "The answer failed.")
    return "failed", None, {"code": "server_error", "message": message}
