"""The errors a /v1 operation documents, each in OpenAI's error shape: shared by the /v1
Blueprints."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from app.api import Blueprint
from app.schemas.openai import OpenAIErrorOut

F = TypeVar("F", bound=Callable[..., Any])

# (status, when, headers): one error an operation answers.
ErrorDoc = tuple[int, str, dict[str, Any] | None]

_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait.", "schema": {"type": "string"}}}

# Every /v1 operation answers these.
COMMON_ERRORS: tuple[ErrorDoc, ...] = (
    (401, "No API key, or an unknown or revoked one.", None),
    (
        429,
        "Over the user's rate limit or daily token budget, or the upstream is rate limiting "
        "(its Retry-After is passed on).",
        _RETRY_AFTER,
    ),
    (503, "No LLM is configured, or the database is unavailable.", _RETRY_AFTER),
)


def openai_errors(blp: Blueprint, *errors: ErrorDoc) -> Callable[[F], F]:
    """Document each of ``errors`` on a view of ``blp``, with OpenAI's error schema."""

    def decorate(view: F) -> F:
        for status, description, headers in errors:
            view = blp.alt_response(
                status, schema=OpenAIErrorOut, description=description, headers=headers
            )(view)
        return view

    return decorate
