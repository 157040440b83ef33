"""One exchange's lifecycle, from its committed prompt to its one recorded outcome.

begin        services/generation.py commits the prompt's row *in progress*
             (``is_success`` NULL, a heartbeat) and gives its connection back to the
             pool; from then on the process's checkpointer keeps its heartbeat fresh
             (``open`` joins it first), while the upstream is opened and its first event
             awaited: a failure there ends the exchange as failed and is an HTTP error.
             GENERATION_TIMEOUT counts from the request's arrival and covers that wait.
in progress  ``relay`` yields each piece to the client's wire format and counts it as
             received once the server comes back for the next one. Meanwhile the
             process's checkpointer (services/checkpoints.py) writes what was relayed
             since its last tick (text, reasoning, tool calls) and a heartbeat for all
             its live exchanges in one statement every few seconds.
end          the first call to ``end`` wins and, in this order: (a client that left)
             reads on for the upstream's usage for at most USAGE_DRAIN_SECONDS, closes
             the upstream, leaves the checkpointer, and saves the outcome (with the
             upstream's usage, or an estimate: ``estimate_tokens``) in one short transaction
             (complete | failed | client_closed), retried through database outages; a
             save that fails for another reason still ends the row, as failed.
close        the response's close hook: ``end`` as client_closed if nothing ended the
             exchange yet (the client left before the body was read), *then*, unless the
             exchange failed, the conversation's title. The title can neither delay
             nor prevent the save.
interrupted  a worker killed mid-stream ends nothing: its heartbeats stop, and the reaper
             (services/reaper.py) ends the row as interrupted with its last checkpoint
             and an estimate of its usage.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import Any, NoReturn

from flask import Flask

from app.errors import DomainError, NotFound, Unavailable
from app.llm.errors import STREAM_ERRORS, map_error, upstream_status
from app.llm.events import ChatMessage, ChatStream, Chunk, Usage
from app.models import Message
from app.text import storable
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


# Upstream usage unknown: a token is taken for this many characters (OpenAI's rule of
# thumb for English text; README "Every exchange is saved" says how estimates are made).
CHARS_PER_TOKEN = 4


def estimate_tokens(characters: int) -> int:
    """Tokens estimated for this many characters: ceil(characters / CHARS_PER_TOKEN)."""
    return -(-max(0, characters) // CHARS_PER_TOKEN)


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
    # What the upstream is sent, estimated in tokens (``estimate_tokens`` of every
    # character of the messages and tool definitions): charged if it reports no usage.
    prompt_estimate: int = 0
    # The UTC day the exchange was asked: its usage, and its title's, count on that day.
    asked_on: date | None = None
    # The columns an ending writes, as this endpoint keeps them (the Responses API's:
    # its items' layout; store: false keeps no text); None: as the lifecycle made them.
    finish_values: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    # False: checkpoints write the heartbeat only (store: false keeps no text, even while
    # the answer streams).
    keep_text: bool = True
    # False: the ending brings back only the saved row's id (``Exchange.saved`` holds no
    # other column), for wire formats that show nothing of it (text, /v1): reading the
    # whole row back cost 4 % of a text stream's CPU (bench/ab/lean_ending.py).
    wants_saved_row: bool = True


@dataclass
class Progress:
    """What the client has received so far; the checkpointer reads it from its own thread."""

    text: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    refusal: list[str] = field(default_factory=list)
    usage: Usage | None = None
    finish_reason: str | None = None
    first_piece_at: float | None = None
    # Tool calls the model requested, assembled from their deltas: {id, type, function}.
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    # Characters of tool-call deltas taken so far: the checkpointer's sign that they grew.
    tool_call_chars: int = 0

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
                self.tool_call_chars += len(delta["id"])
            if isinstance(delta.get("type"), str):
                call["type"] = storable(delta["type"])
            function = delta.get("function")
            if isinstance(function, dict):
                for key in ("name", "arguments"):
                    if isinstance(function.get(key), str):
                        call["function"][key] += storable(function[key])
                        self.tool_call_chars += len(function[key])
            self.tool_call_chars += 1  # a delta that only opens a call still counts

    def tool_calls_copy(self) -> list[dict[str, Any]]:
        """The tool calls so far, copied (safe to read from another thread)."""
        return [
            {"id": call["id"], "type": call["type"], "function": dict(call["function"])}
            for call in list(self.tool_calls)
        ]

    def received_characters(self) -> int:
        """Characters of answer, reasoning and tool calls received: the estimate's base."""
        calls = sum(
            len(call["id"]) + len(call["function"]["name"]) + len(call["function"]["arguments"])
            for call in self.tool_calls_copy()
        )
        texts = (*self.text, *self.reasoning, *self.refusal)
        return sum(map(len, texts)) + calls


# Hooks the lifecycle calls; services/generation.py wires them to the database and the LLM.
Save = Callable[["Exchange", dict[str, Any]], Message | None]
OpenUpstream = Callable[[], ChatStream]


@dataclass(frozen=True)
class _Item:
    """What the upstream reader hands over: a chunk, the end, or an error; and when."""

    kind: str  # "chunk" | "end" | "error" | "stopped" (at the deadline)
    value: Any
    arrived: float  # time.monotonic()


class Exchange:
    """An exchange in progress; ``end`` records its outcome exactly once."""

    def __init__(
        self,
        app: Flask,
        pending: PendingExchange,
        *,
        save: Save,
        live: Any,
        title: Callable[[], None] | None = None,
        map_error: Callable[[Exception], DomainError] = map_error,
    ) -> None:
        self.app = app
        self.pending = pending
        self.progress = Progress()
        self._upstream: ChatStream | None = None
        self._source: Iterator[Chunk] = iter(())
        self._save = save
        self._live = live
        self._title = title
        self._map_error = map_error
        self._ended: str | None = None
        self._streaming = False  # counted in the streams-in-flight gauge
        self._last_write = time.monotonic()
        # Whether the upstream took the request (it answered 200, or we gave up waiting on
        # it): then it bills the prompt, and an ending without its usage is estimated.
        self._charged = False
        self._exhausted = False  # the upstream's stream ended: no usage is coming any more
        self._draining = False  # reading on for the usage after the client left
        # The upstream reader (a thread; a greenlet under gevent), once one is needed, and
        # chunks already taken from it that the relay has not had yet.
        self._inbox: queue.Queue[_Item] | None = None
        self._held: deque[_Item] = deque()
        limit = app.config["GENERATION_TIMEOUT"]
        # perf_counter and monotonic may differ in origin: measure the limit in one clock.
        self._deadline = (
            time.monotonic() + limit - (time.perf_counter() - pending.received_at)
            if limit
            else None
        )
        # After ``end``: what went wrong, to tell the client (None: nothing), and the row.
        self.problem: DomainError | None = None
        self.saved: Message | None = None

    # ------------------------------------------------------------------ begin
    def open(self, open_upstream: OpenUpstream) -> None:
        """Heartbeat the committed row from now on; open the upstream and wait for its first
        event (within GENERATION_TIMEOUT): a failure before it is still an HTTP error."""
        self._live.add(self)
        try:
            if self._deadline is not None:
                # Opening and the first event are waited for with the deadline in view: a
                # reader opens the upstream and reads it, this thread waits on its inbox.
                self._start_reader(open_upstream)
                self._held.append(self._take(None))
            else:
                self._attach(open_upstream())
                try:
                    first = next(self._source)
                except StopIteration:
                    self._exhausted = True
                else:
                    self._held.append(_Item("chunk", first, time.monotonic()))
        except GenerationTimeout as error:
            self._charged = True  # the upstream may well be working on it
            self.progress.finish_reason = "timeout"
            self.end(Outcome.FAILED, TIMED_OUT, error)
            raise
        except DomainError as error:  # the upstream could not be opened (mapped already)
            self.end(Outcome.FAILED, upstream_status(error, error.__cause__), error)
            raise
        except STREAM_ERRORS as error:
            failure = self._map_error(error)
            self.end(Outcome.FAILED, upstream_status(failure, error), failure)
            raise failure from error
        except Exception as error:
            self._fail_internally(error)
        if self._held and self._held[0].kind == "error":
            error = self._held.popleft().value
            if isinstance(error, DomainError):
                self.end(Outcome.FAILED, upstream_status(error, error.__cause__), error)
                raise error
            if not isinstance(error, STREAM_ERRORS):
                self._fail_internally(error)
            failure = self._map_error(error)
            self.end(Outcome.FAILED, upstream_status(failure, error), failure)
            raise failure from error
        self._streaming = True
        metrics.stream_started()

    def _fail_internally(self, error: BaseException) -> NoReturn:
        log.error("opening exchange %d failed", self.pending.message_id, exc_info=error)
        failure = DomainError("The service failed while calling the LLM.")
        self.end(Outcome.FAILED, INTERNAL_ERROR, failure)
        raise failure from error

    def _attach(self, upstream: ChatStream) -> None:
        self._upstream = upstream
        self._source = iter(upstream)
        self._charged = True
        if self._ended is not None and not self._draining:
            self._close_upstream()  # ended while it was being opened

    def _start_reader(self, open_upstream: OpenUpstream | None = None) -> None:
        """Read the upstream (opening it first, given how) in a reader of its own that hands
        each chunk over a queue; stops once the exchange ended (or the deadline passed)."""
        if self._inbox is not None:
            return
        inbox: queue.Queue[_Item] = queue.Queue()
        self._inbox = inbox

        def read() -> None:
            try:
                if open_upstream is not None:
                    self._attach(open_upstream())
                    if self._ended is not None and not self._draining:
                        return  # cut off while it was being opened; _attach closed it
                for chunk in self._source:
                    if self._ended is not None and not self._draining:
                        # Closed by the thread that reads it: closing a blocking socket
                        # from another thread may not take effect (gevent's does).
                        self._close_upstream()
                        return
                    inbox.put(_Item("chunk", chunk, time.monotonic()))
                    late = self._deadline is not None and time.monotonic() >= self._deadline
                    if late and not self._draining:
                        # Nothing read from now on could be relayed.
                        inbox.put(_Item("stopped", None, time.monotonic()))
                        return
                inbox.put(_Item("end", None, time.monotonic()))
            except BaseException as error:  # handed over to the reading side, which decides
                inbox.put(_Item("error", error, time.monotonic()))

        threading.Thread(target=read, name="upstream-reader", daemon=True).start()

    def _take(self, silence: float | None) -> _Item | None:
        """The reader's next item: None after ``silence`` seconds without a byte written to
        the client; GenerationTimeout once the deadline passed, unless the item arrived
        before it (an answer that arrived is kept)."""
        assert self._inbox is not None
        while True:
            now = time.monotonic()
            waits = [self._last_write + silence - now] if silence else []
            if self._deadline is not None:
                waits.append(self._deadline - now)
            try:
                item = self._inbox.get(timeout=max(min(waits), 0.0) if waits else None)
            except queue.Empty:
                if self._deadline is not None and time.monotonic() >= self._deadline:
                    raise GenerationTimeout(self.app.config["GENERATION_TIMEOUT"]) from None
                if silence and time.monotonic() >= self._last_write + silence:
                    return None
                continue
            if self._deadline is not None and item.arrived >= self._deadline:
                raise GenerationTimeout(self.app.config["GENERATION_TIMEOUT"])
            return item

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
        if (chunk.text or chunk.reasoning or chunk.refusal) and progress.first_piece_at is None:
            progress.first_piece_at = time.perf_counter()
        if chunk.text:
            progress.text.append(chunk.text)
        if chunk.refusal:
            progress.refusal.append(chunk.refusal)
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
        if self._inbox is None and (silence or self._deadline is not None):
            self._start_reader()
        while True:
            if self._held:
                item: _Item | None = self._held.popleft()
            elif self._inbox is None:
                try:
                    item = _Item("chunk", next(self._source), 0.0)
                except StopIteration:
                    item = _Item("end", None, 0.0)
            else:
                item = self._take(silence)
            if item is None:
                yield None
                continue
            if item.kind == "end":
                self._exhausted = True
                return
            if item.kind == "error":
                raise item.value
            if item.kind == "stopped":
                raise GenerationTimeout(self.app.config["GENERATION_TIMEOUT"])
            yield item.value

    # -------------------------------------------------------------------- end
    @property
    def outcome(self) -> str | None:
        """How the exchange ended (an ``Outcome``), or None while it is in progress."""
        return self._ended

    def end(self, outcome: str, status: int, error: DomainError | None = None) -> None:
        """Record how the exchange ended; only the first call does anything."""
        if self._ended is not None:
            return
        # Before the exchange is marked ended: from then on the reader stops unless draining.
        self._draining = outcome == Outcome.CLIENT_CLOSED and self._usage_to_come()
        self._ended = outcome
        self.problem = error
        if self._draining:
            self._drain_usage()
        self._close_upstream()
        self._live.discard(self)
        if self._streaming:
            metrics.stream_ended()
        self._record(outcome, status)

    def _usage_to_come(self) -> bool:
        """Whether reading on could still bring the upstream's usage (and is allowed to)."""
        return bool(
            self.app.config["USAGE_DRAIN_SECONDS"]
            and self.progress.usage is None
            and self._upstream is not None
            and not self._exhausted
        )

    def _drain_usage(self) -> None:
        """The client left: read on (nothing more is relayed or saved as text) until the
        upstream's usage arrives, for at most USAGE_DRAIN_SECONDS, so that what it bills is
        recorded rather than estimated."""
        until = time.monotonic() + self.app.config["USAGE_DRAIN_SECONDS"]
        try:
            self._start_reader()
            assert self._inbox is not None
            held, self._held = list(self._held), deque()
            while True:
                if held:
                    item = held.pop(0)
                else:
                    left = until - time.monotonic()
                    if left <= 0:
                        return
                    try:
                        item = self._inbox.get(timeout=left)
                    except queue.Empty:
                        return
                if item.kind != "chunk":
                    return
                if item.value.usage is not None:
                    self.progress.usage = item.value.usage
                    return
        finally:
            self._draining = False

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
            self._save_failure(values)
            return
        if self.saved is None and self.problem is None:
            self.problem = NotFound(
                f"Conversation {self.pending.conversation_id} was deleted while its answer "
                "was being written."
            )

    def _save_failure(self, attempted: dict[str, Any]) -> None:
        # The full row could not be written: end it all the same, as failed, without text
        # (the tokens are plain integers and still charged).
        values = {"is_success": False, "outcome": Outcome.FAILED, "status_code": INTERNAL_ERROR}
        values |= {key: attempted[key] for key in TOKEN_COLUMNS}
        try:
            self._save(self, values)
        except Exception:
            log.exception("ending exchange %d as failed failed too", self.pending.message_id)

    def final_values(self, outcome: str, status: int) -> dict[str, Any]:
        """The columns an ending writes."""
        progress, now = self.progress, time.perf_counter()
        usage, received = progress.usage, self.pending.received_at
        estimated = usage is None and self._charged
        if estimated:
            completion = estimate_tokens(progress.received_characters())
            prompt = self.pending.prompt_estimate
            usage = Usage(prompt, completion, prompt + completion)
        values: dict[str, Any] = {
            "response_content": "".join(progress.text),
            "reasoning_content": "".join(progress.reasoning) or None,
            "refusal_content": "".join(progress.refusal) or None,
            "is_success": outcome is Outcome.COMPLETE,
            "outcome": outcome,
            "status_code": status,
            "finish_reason": progress.finish_reason,
            "prompt_tokens": usage.prompt_tokens if usage else None,
            "response_tokens": usage.completion_tokens if usage else None,
            "total_tokens": usage.total_tokens if usage else None,
            "cached_tokens": usage.cached_tokens if usage else None,
            "reasoning_tokens": usage.reasoning_tokens if usage else None,
            "usage_estimated": estimated,
            "ttft_ms": _ms(progress.first_piece_at - received) if progress.first_piece_at else None,
            "duration_ms": _ms(now - received),
        }
        if progress.tool_calls:
            values["tool_calls"] = progress.tool_calls_copy()
        return values

    # ------------------------------------------------------------------ close
    def close(self) -> None:
        """The response's close hook: end the exchange if nothing did, then the title unless
        the exchange failed (a failing model would fail the title call too: the
        conversation stays untitled until an exchange does not fail)."""
        try:
            self.end(Outcome.CLIENT_CLOSED, CLIENT_CLOSED)
        finally:
            if self._title is not None and self._ended != Outcome.FAILED:
                try:
                    self._title()
                except Exception:
                    log.exception("titling conversation %d failed", self.pending.conversation_id)


TOKEN_COLUMNS = (
    "prompt_tokens",
    "response_tokens",
    "total_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "usage_estimated",
)


def _ms(seconds: float) -> int:
    return max(0, round(seconds * 1000))
