"""The /v1 gateway's wire format: the upstream's own bytes, and OpenAI's error shape.

A stream relays each upstream event's ``data`` as received (tool-call deltas, logprobs,
refusals, reasoning fields reach the client intact) over ``Exchange.relay``, which meanwhile
accumulates choice 0 for saving; it ends with ``data: [DONE]``, or with a
``data: {"error": ...}`` event (what the OpenAI SDKs raise) when the answer broke off.
A non-streamed answer is the upstream's JSON as received.
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

from flask import Response, current_app

from app.errors import DomainError
from app.exchange.lifecycle import Exchange
from app.exchange.outcomes import Outcome
from app.exchange.wire import SSE_KEEPALIVE, STREAM_HEADERS
from app.llm.events import Chunk

DONE = b"data: [DONE]\n\n"
JSON = "application/json"

# OpenAI's error type and code for each status we answer ourselves.
_ERROR_KINDS: dict[int, tuple[str, str | None]] = {
    HTTPStatus.UNAUTHORIZED: ("invalid_request_error", "invalid_api_key"),
    HTTPStatus.FORBIDDEN: ("permission_error", None),
    HTTPStatus.TOO_MANY_REQUESTS: ("requests", "rate_limit_exceeded"),
}


def openai_error(status: int, message: str | None, param: str | None = None) -> dict[str, Any]:
    """``{"error": {message, type, param, code}}``, as OpenAI answers errors."""
    kind, code = _ERROR_KINDS.get(
        status, ("server_error" if status >= 500 else "invalid_request_error", None)
    )
    return {"error": {"message": message or "", "type": kind, "param": param, "code": code}}


def error_shape(
    status: int, message: str | None, errors: dict[str, Any] | None
) -> tuple[int, dict[str, Any]]:
    """Every error under /v1 (app/errors.py's hook): OpenAI's shape, and 400 for a body that
    does not validate (where the house says 422), as OpenAI's SDKs expect."""
    param = None
    if errors:
        problems = [
            (field, "; ".join(map(str, found)) if isinstance(found, list) else str(found))
            for fields in errors.values()
            if isinstance(fields, dict)
            for field, found in fields.items()
        ]
        if problems:
            param = problems[0][0]
            message = " ".join(f"{field}: {text}" for field, text in problems)
    return (400 if status == 422 else status), openai_error(status, message, param)


def _event(chunk: Chunk) -> bytes | None:
    raw = chunk.raw
    return b"data: " + raw.encode("utf-8", "replace") + b"\n\n" if raw else None


def _stream_body(exchange: Exchange, keepalive_seconds: float) -> Any:
    yield from exchange.relay(_event, keepalive=SSE_KEEPALIVE, keepalive_seconds=keepalive_seconds)
    if exchange.outcome == Outcome.COMPLETE:
        # The answer is whole; a failure to store it is the service's (spooled), not the
        # client's to retry.
        yield DONE
    else:
        problem = exchange.problem
        status, message = (problem.status_code, problem.message) if problem else (500, "")
        yield b"data: " + json.dumps(openai_error(status, message)).encode() + b"\n\n"


def _completion_body(exchange: Exchange) -> str:
    bodies: list[str] = []

    def keep(chunk: Chunk) -> None:
        bodies.append(chunk.raw or "")

    for _ in exchange.relay(keep):
        pass
    if exchange.outcome != Outcome.COMPLETE:
        assert exchange.problem is not None  # every other ending says what went wrong
        raise exchange.problem
    return bodies[0] if bodies else "{}"


def chat_response(exchange: Exchange, headers: dict[str, str], stream: bool) -> Response:
    """The answer to POST /v1/chat/completions: an event stream or the upstream's JSON;
    ``headers`` (where it is saved) go with it, and with an error answered instead."""
    if not stream:
        try:
            body = _completion_body(exchange)
        except DomainError as error:
            error.headers.update(headers)
            raise
        return Response(body, content_type=JSON, headers=headers)
    seconds = current_app.config["SSE_KEEPALIVE_SECONDS"]
    return Response(
        _stream_body(exchange, seconds),
        mimetype="text/event-stream",
        headers={**STREAM_HEADERS, **headers},
    )


def json_response(raw: str) -> Response:
    """An upstream JSON answer, passed on as it came."""
    return Response(raw, content_type=JSON)
