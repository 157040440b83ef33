"""How an exchange ends: its outcome, the status code recorded with it, and the errors
that end it."""

from __future__ import annotations

from enum import StrEnum
from http import HTTPStatus

from app.errors import DomainError


class Outcome(StrEnum):
    """How an exchange ended (``messages.outcome``). A str: drivers, JSON and metric labels
    see the plain value, and it equals the strings read back from the database."""

    COMPLETE = "complete"
    FAILED = "failed"
    CLIENT_CLOSED = "client_closed"
    INTERRUPTED = "interrupted"


# The status code recorded with each ending (``messages.status_code``).
COMPLETE = HTTPStatus.OK
# nginx's "client closed request": the client left before the answer was whole (no
# HTTPStatus names it).
CLIENT_CLOSED = 499
INTERNAL_ERROR = HTTPStatus.INTERNAL_SERVER_ERROR  # the service failed relaying or storing
UPSTREAM_BROKE = HTTPStatus.BAD_GATEWAY
INTERRUPTED = HTTPStatus.INTERNAL_SERVER_ERROR  # the worker died mid-stream (the reaper's)
TIMED_OUT = HTTPStatus.GATEWAY_TIMEOUT  # cut off by GENERATION_TIMEOUT


class GenerationTimeout(DomainError):
    """The exchange ran longer than GENERATION_TIMEOUT; what was relayed is kept."""

    status_code = TIMED_OUT

    def __init__(self, seconds: float) -> None:
        super().__init__(
            f"The answer took longer than {seconds:g} s (GENERATION_TIMEOUT) and was cut off."
        )


class NotStored(DomainError):
    """The answer could not be stored for a reason retrying would not fix."""

    status_code = HTTPStatus.INTERNAL_SERVER_ERROR
