"""The wire formats an exchange is relayed in: raw text, and Server-Sent Events.

Each is a generator over ``Exchange.relay`` (app/exchange/lifecycle.py owns the lifecycle: what is
counted as received, how the exchange ends and is saved) plus the way that format closes.
Neither touches the ORM or the request.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

from flask import Response, after_this_request, current_app

from app.exchange.lifecycle import Exchange
from app.exchange.outcomes import Outcome
from app.llm.events import Chunk
from app.schemas.messages import MessageOut

STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
SSE_KEEPALIVE = b": keep-alive\n\n"


class StreamBroken(Exception):
    """Raised into the WSGI server so a broken plain-text stream ends without a clean EOF."""


def after_response(callback: Callable[[], Any]) -> None:
    """Run ``callback`` in the response's close hook: after the last byte, or a hang-up."""

    @after_this_request
    def register(response: Response) -> Response:
        response.call_on_close(callback)
        return response


# One encoder for every event: json.dumps with options builds a new one per call.
_encode = json.JSONEncoder(ensure_ascii=False).encode


def sse_event(event: str, data: Any) -> bytes:
    """One Server-Sent Event."""
    return f"event: {event}\ndata: {_encode(data)}\n\n".encode()


def _sse_chunk(chunk: Chunk) -> bytes | None:
    # Reasoning before the answer's text, as models write them.
    if chunk.reasoning and chunk.text:
        return sse_event("reasoning", {"text": chunk.reasoning}) + sse_event(
            "delta", {"text": chunk.text}
        )
    if chunk.reasoning:
        return sse_event("reasoning", {"text": chunk.reasoning})
    if chunk.text:
        return sse_event("delta", {"text": chunk.text})
    return None


def _sse_body(exchange: Exchange, keepalive_seconds: float) -> Iterator[bytes]:
    yield from exchange.relay(
        _sse_chunk, keepalive=SSE_KEEPALIVE, keepalive_seconds=keepalive_seconds
    )
    if exchange.problem is not None:
        yield sse_event(
            "error", {"code": exchange.problem.status_code, "message": exchange.problem.message}
        )
    else:
        yield sse_event("done", {"message": MessageOut().dump(exchange.answered())})


def _text_chunk(chunk: Chunk) -> bytes | None:
    return chunk.text.encode() if chunk.text else None


def _text_body(exchange: Exchange) -> Iterator[bytes]:
    yield from exchange.relay(_text_chunk)
    if exchange.outcome != Outcome.COMPLETE:
        # The answer is incomplete (a failure to store a whole one is not the client's
        # concern here); ending cleanly would tell the client the answer is complete; it is not.
        raise StreamBroken(exchange.problem.message)


def sse_response(exchange: Exchange) -> Response:
    """``text/event-stream``: reasoning and delta events, then done (the saved message) or
    error; a comment line after SSE_KEEPALIVE_SECONDS without a byte written."""
    seconds = current_app.config["SSE_KEEPALIVE_SECONDS"]
    return Response(
        _sse_body(exchange, seconds), mimetype="text/event-stream", headers=STREAM_HEADERS
    )


def text_response(exchange: Exchange) -> Response:
    """``text/plain``: the answer's raw text as it comes (reasoning is not relayed)."""
    return Response(
        _text_body(exchange), content_type="text/plain; charset=utf-8", headers=STREAM_HEADERS
    )
