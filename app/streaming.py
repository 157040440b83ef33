"""The generator wrapper that relays an LLM stream to the client and reports what it relayed.

The relay never touches the ORM or the request: it yields text, keeps what the client took,
and hands one ``ExchangeResult`` to its ``on_finish`` callback exactly once, from whichever
comes first: the end of the stream or the response's close hook (the client hung up).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import chain
from typing import Any

from flask import Response, after_this_request

from app.errors import DomainError
from app.llm import STREAM_ERRORS, ChatStream, Chunk, Usage, map_error

log = logging.getLogger(__name__)

COMPLETE = 200
CLIENT_CLOSED = 499
INTERNAL_ERROR = 500
UPSTREAM_BROKE = 502

STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
KEEPALIVE = ""  # what the relay yields when the upstream has been silent for a while


@dataclass(frozen=True)
class ExchangeResult:
    text: str
    usage: Usage | None
    status_code: int

    @property
    def is_success(self) -> bool:
        return self.status_code == COMPLETE


class StreamBroken(Exception):
    """Raised into the WSGI server so a broken plain-text stream ends without a clean EOF."""


def _with_keepalive(source: Iterator[Chunk], interval: float) -> Iterator[Chunk | None]:
    """Yield ``source``'s chunks, and None whenever it has been silent for ``interval``.

    A reader thread (a greenlet under gevent) blocks on the upstream so that this side
    can wake up to write keep-alives, which is also how a vanished client is noticed.
    """
    inbox: queue.Queue[tuple[str, Any]] = queue.Queue()

    def pump() -> None:
        try:
            for chunk in source:
                inbox.put(("chunk", chunk))
            inbox.put(("end", None))
        except BaseException as error:  # handed to the consumer, which decides
            inbox.put(("error", error))

    threading.Thread(target=pump, name="llm-stream-reader", daemon=True).start()
    while True:
        try:
            kind, value = inbox.get(timeout=interval)
        except queue.Empty:
            yield None
            continue
        if kind == "end":
            return
        if kind == "error":
            raise value
        yield value


class Relay:
    """Iterate to relay text; ``finish()`` closes the upstream and reports the result once."""

    def __init__(
        self,
        upstream: ChatStream,
        on_finish: Callable[[ExchangeResult], Any],
        keepalive: float | None = None,
    ) -> None:
        self._upstream = upstream
        self._on_finish = on_finish
        self._keepalive = keepalive
        self._source: Iterator[Chunk] = iter(upstream)
        self._parts: list[str] = []
        self._usage: Usage | None = None
        self._status: int | None = None
        self._finished = False
        self._saved: Any = None
        self.error: DomainError | None = None

    def prime(self) -> None:
        """Wait for the upstream's first event, so a failure to start is still an HTTP error."""
        try:
            first = next(self._source)
        except StopIteration:
            return
        except STREAM_ERRORS as error:
            self._upstream.close()
            raise map_error(error) from error
        self._source = chain([first], self._source)

    def __iter__(self) -> Iterator[str]:
        source: Iterable[Chunk | None] = self._source
        if self._keepalive:
            source = _with_keepalive(self._source, self._keepalive)
        try:
            for chunk in source:
                if chunk is None:
                    yield KEEPALIVE
                    continue
                if chunk.usage is not None:
                    self._usage = chunk.usage
                if chunk.text:
                    yield chunk.text
                    # Kept only once the consumer came back for more: the write succeeded.
                    self._parts.append(chunk.text)
            self._status = COMPLETE
        except STREAM_ERRORS as error:
            log.warning("upstream broke off mid-stream: %r", error)
            self._status, self.error = UPSTREAM_BROKE, map_error(error)
        except Exception:
            log.exception("relay failed")
            self._status = INTERNAL_ERROR
            self.error = DomainError("The service failed while relaying the answer.")

    def finish(self) -> Any:
        """Close the upstream and report the exchange (once); returns ``on_finish``'s value."""
        if self._finished:
            return self._saved
        self._finished = True
        try:
            self._upstream.close()
        except Exception:
            log.warning("closing the upstream stream failed", exc_info=True)
        # Not ended by the upstream, so the consumer stopped early: the client went away.
        status = self._status if self._status is not None else CLIENT_CLOSED
        self._saved = self._on_finish(ExchangeResult("".join(self._parts), self._usage, status))
        return self._saved


def after_response(callback: Callable[[], Any]) -> None:
    """Run ``callback`` in the response's close hook: after the last byte, or a hang-up."""

    @after_this_request
    def register(response: Response) -> Response:
        response.call_on_close(callback)
        return response


def sse_event(event: str, data: Any) -> bytes:
    """One Server-Sent Event."""
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


def _sse_body(relay: Relay) -> Iterator[bytes]:
    for piece in relay:
        yield sse_event("delta", {"text": piece}) if piece else b": keep-alive\n\n"
    saved = relay.finish()
    if relay.error is not None:
        yield sse_event("error", {"code": relay.error.status_code, "message": relay.error.message})
    elif saved is None:
        # Its conversation was deleted meanwhile, or the database stayed down (then the
        # exchange is in the log): either way there is no saved message to hand over.
        yield sse_event(
            "error", {"code": 503, "message": "The answer was sent but could not be saved."}
        )
    else:
        yield sse_event("done", {"message": saved})


def _text_body(relay: Relay) -> Iterator[bytes]:
    for piece in relay:
        yield piece.encode()
    relay.finish()
    if relay.error is not None:
        # Ending cleanly would tell the client the answer is complete; it is not.
        raise StreamBroken(relay.error.message)


def sse_response(relay: Relay) -> Response:
    """``text/event-stream``: delta events, then done (with the saved message) or error."""
    return Response(_sse_body(relay), mimetype="text/event-stream", headers=STREAM_HEADERS)


def text_response(relay: Relay) -> Response:
    """``text/plain``: the raw text as it comes."""
    return Response(
        _text_body(relay), content_type="text/plain; charset=utf-8", headers=STREAM_HEADERS
    )
