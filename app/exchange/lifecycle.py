"""One exchange's lifecycle, from its committed prompt to its one recorded outcome.

begin        services/generation.py commits the prompt's row *in progress*
             (``is_success`` NULL, a heartbeat) and gives its connection back to the
             pool; then the upstream is opened and its first event awaited (``start``):
             a failure there ends the exchange as failed and is an HTTP error.
in progress  ``relay`` yields each piece to the client's wire format and counts it as
             received once the server comes back for the next one. Meanwhile the
             process's checkpointer (services/checkpoints.py) writes the text so far and
             a heartbeat for all its live exchanges in one statement every few seconds.
end          the first call to ``end`` wins and, in this order: closes the upstream,
             leaves the checkpointer, and saves the outcome in one short transaction
             (complete | failed | client_closed), retried through database outages; a
             save that fails for another reason still ends the row, as failed.
close        the response's close hook: ``end`` as client_closed if nothing ended the
             exchange yet (the client left before the body was read), *then* the
             conversation's title. The title can neither delay nor prevent the save.
interrupted  a worker killed mid-stream ends nothing: its heartbeats stop, and the reaper
             (services/reaper.py) ends the row as interrupted with its last checkpoint.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

from flask import Flask

from app.errors import DomainError, NotFound, Unavailable
from app.exchange.text import storable
from app.llm.errors import STREAM_ERRORS, map_error, upstream_status
from app.llm.events import ChatMessage, ChatStream, Chunk, Usage
from app.models import Message
from app.web import metrics

log = logging.getLogger(__name__)


class Outcome:
    """How an exchange ended (``messages.outcome``); plain strings, as every driver binds them."""

    COMPLETE = "complete"
    FAILED = "failed"
    CLIENT_CLOSED = "client_closed"
    INTERRUPTED = "interrupted"


# The status code recorded with each ending.
COMPLETE = 200
CLIENT_CLOSED = 499
INTERNAL_ERROR = 500  # the service failed relaying or storing the answer
UPSTREAM_BROKE = 502
INTERRUPTED = 500  # the worker died mid-stream (set by the reaper)


TIMED_OUT = 504  # cut off by GENERATION_TIMEOUT (finish_reason "timeout")


class GenerationTimeout(DomainError):
    """The exchange ran longer than GENERATION_TIMEOUT; what was relayed is kept."""

    status_code = TIMED_OUT

    def __init__(self, seconds: float) -> None:
        super().__init__(
            f"The answer took longer than {seconds:g} s (GENERATION_TIMEOUT) and was cut off."
        )


class NotStored(DomainError):
    """The answer could not be stored for a reason retrying would not fix."""

    status_code = 500


@dataclass(frozen=True)
class PendingExchange:
    """An exchange whose prompt row is committed: plain values only, no ORM objects."""

    message_id: int
    conversation_id: int
    model: str
    prompt: str
    messages: tuple[ChatMessage, ...]
    needs_title: bool
    endpoint: str
    request_id: str | None
    received_at: float  # time.perf_counter() when the request arrived
    # The conversation's history fingerprint once this ending is saved, from the ending's
    # values (the /v1 gateway's threading); None leaves it as it is.
    next_fingerprint: Callable[[dict[str, Any]], str | None] | None = None
    # Headers the response adds (the /v1 gateway's: where it was saved, what was capped).
    response_headers: dict[str, str] = field(default_factory=dict)
    # How many other exchanges followed its parent when it began (MessageOut's siblings).
    siblings: int = 0
    # The columns an ending writes, as this endpoint keeps them (the Responses API's:
    # its items' layout; store: false keeps no text); None: as the lifecycle made them.
    finish_values: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    # False: checkpoints write the heartbeat only (store: false keeps no text, even while
    # the answer streams).
    keep_text: bool = True


@dataclass
class Progress:
    """What the client has received so far; the checkpointer reads it from its own thread."""

    text: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    usage: Usage | None = None
    finish_reason: str | None = None
    first_piece_at: float | None = None
    # Tool calls the model requested, assembled from their deltas: {id, type, function}.
    tool_calls: list[dict[str, Any]] = field(default_factory=list)

    def add_tool_calls(self, deltas: tuple[Any, ...]) -> None:
        """Fold tool-call deltas in, as OpenAI streams them: by index, the arguments in pieces."""
        for delta in deltas:
            if not isinstance(delta, dict):
                continue
            index = delta.get("index")
            index = index if isinstance(index, int) and 0 <= index < 128 else len(self.tool_calls)
            while len(self.tool_calls) <= index:
                self.tool_calls.append(
                    {"id": "", "type": "function", "function": {"name": "", "arguments": ""}}
                )
            call = self.tool_calls[index]
            if isinstance(delta.get("id"), str):
                call["id"] += storable(delta["id"])
            if isinstance(delta.get("type"), str):
                call["type"] = storable(delta["type"])
            function = delta.get("function")
            if isinstance(function, dict):
                for key in ("name", "arguments"):
                    if isinstance(function.get(key), str):
                        call["function"][key] += storable(function[key])


# Hooks the lifecycle calls; services/generation.py wires them to the database and the LLM.
Save = Callable[["Exchange", dict[str, Any]], Message | None]
Register = Callable[["Exchange"], None]


class Exchange:
    """An exchange in progress; ``end`` records its outcome exactly once."""

    def __init__(
        self,
        app: Flask,
        pending: PendingExchange,
        upstream: ChatStream | None,
        *,
        save: Save,
        live: Any,
        title: Callable[[], None] | None = None,
        map_error: Callable[[Exception], DomainError] = map_error,
    ) -> None:
        self.app = app
        self.pending = pending
        self.progress = Progress()
        self._upstream = upstream
        self._source: Iterator[Chunk] = iter(upstream if upstream is not None else ())
        self._save = save
        self._live = live
        self._title = title
        self._map_error = map_error
        self._ended: str | None = None
        self._streaming = False  # counted in the streams-in-flight gauge
        self._last_write = time.monotonic()
        # After ``end``: what went wrong, to tell the client (None: nothing), and the row.
        self.problem: DomainError | None = None
        self.saved: Message | None = None

    # ------------------------------------------------------------------ begin
    def start(self) -> None:
        """Wait for the upstream's first event: a failure before it is still an HTTP error."""
        try:
            first = next(self._source)
        except StopIteration:
            first = None
        except STREAM_ERRORS as error:
            failure = self._map_error(error)
            self.end(Outcome.FAILED, upstream_status(failure, error), failure)
            raise failure from error
        if first is not None:
            self._source = chain([first], self._source)
        self._live.add(self)
        self._streaming = True
        metrics.stream_started()

    def fail_to_start(self, error: DomainError, status: int) -> None:
        """End an exchange whose upstream could not even be opened."""
        self.end(Outcome.FAILED, status, error)

    # ------------------------------------------------------------ in progress
    def relay(
        self,
        encode: Callable[[Chunk], bytes | None],
        *,
        keepalive: bytes | None = None,
        keepalive_seconds: float | None = None,
    ) -> Iterator[bytes]:
        """Yield each chunk as ``encode`` makes it, and ``keepalive`` after that long without
        a byte written; however the iteration stops, the exchange is ended."""
        try:
            for chunk in self._chunks(keepalive_seconds if keepalive else None):
                if chunk is None:
                    yield keepalive  # type: ignore[misc]
                    self._last_write = time.monotonic()
                    continue
                data = encode(chunk)
                if data:
                    yield data
                    self._last_write = time.monotonic()
                # Counted only now that the server came back for more: the write succeeded.
                self._took(chunk)
        except GeneratorExit:
            self.end(Outcome.CLIENT_CLOSED, CLIENT_CLOSED)
            raise
        except GenerationTimeout as error:
            self.progress.finish_reason = "timeout"
            self.end(Outcome.FAILED, TIMED_OUT, error)
        except STREAM_ERRORS as error:
            log.warning("upstream broke off mid-stream: %r", error)
            self.end(Outcome.FAILED, UPSTREAM_BROKE, self._map_error(error))
        except Exception:
            log.exception("relaying exchange %d failed", self.pending.message_id)
            self.end(
                Outcome.FAILED,
                INTERNAL_ERROR,
                DomainError("The service failed while relaying the answer."),
            )
        else:
            self.end(Outcome.COMPLETE, COMPLETE)

    def _took(self, chunk: Chunk) -> None:
        progress = self.progress
        if (chunk.text or chunk.reasoning) and progress.first_piece_at is None:
            progress.first_piece_at = time.perf_counter()
        if chunk.text:
            progress.text.append(chunk.text)
        if chunk.reasoning:
            progress.reasoning.append(chunk.reasoning)
        if chunk.usage is not None:
            progress.usage = chunk.usage
        if chunk.finish_reason:
            progress.finish_reason = chunk.finish_reason
        if chunk.tool_calls:
            progress.add_tool_calls(chunk.tool_calls)

    def _chunks(self, silence: float | None) -> Iterator[Chunk | None]:
        """The upstream's chunks, and None whenever the client has had no byte for
        ``silence`` seconds; GenerationTimeout once the exchange has run for
        GENERATION_TIMEOUT. Waiting on the upstream and on those deadlines at once takes a
        reader (a greenlet under gevent) that hands chunks over a queue."""
        limit = self.app.config["GENERATION_TIMEOUT"]
        if not silence and not limit:
            yield from self._source
            return
        # perf_counter and monotonic may differ in origin: measure the limit in one clock.
        deadline = time.monotonic() + limit - (time.perf_counter() - self.pending.received_at)
        inbox: queue.Queue[tuple[str, Any]] = queue.Queue()

        def read() -> None:
            try:
                for chunk in self._source:
                    if self._ended is not None:
                        # Closed by the thread that reads it: closing a blocking socket
                        # from another thread may not take effect (gevent's does).
                        self._close_upstream()
                        return
                    inbox.put(("chunk", chunk))
                inbox.put(("end", None))
            except BaseException as error:  # handed to the relay, which decides
                inbox.put(("error", error))

        threading.Thread(target=read, name="upstream-reader", daemon=True).start()
        while True:
            now = time.monotonic()
            waits = [self._last_write + silence - now] if silence else []
            if limit:
                if now >= deadline:
                    raise GenerationTimeout(limit)
                waits.append(deadline - now)
            try:
                kind, value = inbox.get(timeout=max(min(waits), 0.0))
            except queue.Empty:
                if silence and time.monotonic() >= self._last_write + silence:
                    yield None
                continue
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value

    # -------------------------------------------------------------------- end
    @property
    def outcome(self) -> str | None:
        """How the exchange ended (an ``Outcome``), or None while it is in progress."""
        return self._ended

    def end(self, outcome: str, status: int, error: DomainError | None = None) -> None:
        """Record how the exchange ended; only the first call does anything."""
        if self._ended is not None:
            return
        self._ended = outcome
        self.problem = error
        self._close_upstream()
        self._live.discard(self)
        if self._streaming:
            metrics.stream_ended()
        self._record(outcome, status)

    def _close_upstream(self) -> None:
        try:
            if self._upstream is not None:
                self._upstream.close()  # left open, it would leak the pooled HTTP connection
        except Exception:
            log.warning("closing the upstream stream failed", exc_info=True)

    def _record(self, outcome: str, status: int) -> None:
        values = self.final_values(outcome, status)
        pending = self.pending
        metrics.exchange_ended(pending.endpoint, outcome, pending.model, values)
        try:
            self.saved = self._save(self, values)
        except Unavailable as error:  # the database stayed down; the record is spooled
            self.problem = self.problem or error
            return
        except Exception:
            log.exception("storing exchange %d failed", self.pending.message_id)
            self.problem = self.problem or NotStored("The answer could not be stored.")
            self._save_failure()
            return
        if self.saved is None and self.problem is None:
            self.problem = NotFound(
                f"Conversation {self.pending.conversation_id} was deleted while its answer "
                "was being written."
            )

    def _save_failure(self) -> None:
        # The full row could not be written: end it all the same, as failed, without text.
        values = {"is_success": False, "outcome": Outcome.FAILED, "status_code": INTERNAL_ERROR}
        try:
            self._save(self, values)
        except Exception:
            log.exception("ending exchange %d as failed failed too", self.pending.message_id)

    def final_values(self, outcome: str, status: int) -> dict[str, Any]:
        """The columns an ending writes."""
        progress, now = self.progress, time.perf_counter()
        usage, received = progress.usage, self.pending.received_at
        values: dict[str, Any] = {
            "response_content": "".join(progress.text),
            "reasoning_content": "".join(progress.reasoning) or None,
            "is_success": outcome is Outcome.COMPLETE,
            "outcome": outcome,
            "status_code": status,
            "finish_reason": progress.finish_reason,
            "prompt_tokens": usage.prompt_tokens if usage else None,
            "response_tokens": usage.completion_tokens if usage else None,
            "total_tokens": usage.total_tokens if usage else None,
            "ttft_ms": _ms(progress.first_piece_at - received) if progress.first_piece_at else None,
            "duration_ms": _ms(now - received),
        }
        if progress.tool_calls:
            values["tool_calls"] = [dict(call) for call in progress.tool_calls]
        return values

    # ------------------------------------------------------------------ close
    def close(self) -> None:
        """The response's close hook: end the exchange if nothing did, then the title."""
        try:
            self.end(Outcome.CLIENT_CLOSED, CLIENT_CLOSED)
        finally:
            if self._title is not None:
                try:
                    self._title()
                except Exception:
                    log.exception("titling conversation %d failed", self.pending.conversation_id)


def _ms(seconds: float) -> int:
    return max(0, round(seconds * 1000))
