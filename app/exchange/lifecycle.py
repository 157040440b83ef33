"""One exchange's lifecycle, from its committed prompt to its one recorded outcome.

begin        services/generation.py commits the prompt's row *in progress*
             (``is_success`` NULL, a heartbeat) and gives its connection back to the
             pool; from then on the process's checkpointer keeps its heartbeat fresh
             (``open`` joins it first), while the upstream is opened and its first event
             awaited: a failure there ends the exchange as failed and is an HTTP error.
             GENERATION_TIMEOUT counts from the request's arrival and covers that wait.
in progress  ``relay`` yields each piece to the client's wire format and counts it as
             received (progress.py) once the server comes back for the next one.
             Meanwhile the process's checkpointer (services/checkpoints.py) writes what was
             relayed since its last tick (text, reasoning, tool calls) and a heartbeat for
             all its live exchanges in one statement every few seconds.
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
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import Any, NoReturn, Protocol

from flask import Flask

from app.errors import DomainError, NotFound, Unavailable
from app.exchange.outcomes import (
    CLIENT_CLOSED,
    COMPLETE,
    INTERNAL_ERROR,
    TIMED_OUT,
    UPSTREAM_BROKE,
    GenerationTimeout,
    NotStored,
    Outcome,
)
from app.exchange.progress import Progress, estimate_tokens
from app.exchange.upstream_reader import OpenUpstream, UpstreamReader
from app.llm.errors import STREAM_ERRORS, map_error, upstream_status
from app.llm.events import ChatMessage, Chunk, Usage
from app.models import Message
from app.web import metrics

log = logging.getLogger(__name__)


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
    # False: no text of it is written, neither by checkpoints (the heartbeat only) nor by
    # its ending (NO_TEXT): store: false, or a no-store key.
    keep_text: bool = True
    # False: the ending brings back only the saved row's id (``Exchange.saved`` holds no
    # other column), for wire formats that show nothing of it (text, /v1), which then skip
    # reading the whole row back.
    wants_saved_row: bool = True


# What the ending of an exchange that keeps no text writes of its text: none (its counts,
# outcome and timings remain).
NO_TEXT: dict[str, Any] = {
    "response_content": "",
    "reasoning_content": None,
    "refusal_content": None,
    "tool_calls": None,
    "output_items": None,
}

# How the lifecycle saves an ending; services/generation.py wires it to the database.
Save = Callable[["Exchange", dict[str, Any]], Message | None]


class Live(Protocol):
    """The process's exchanges in progress, which its checkpointer heartbeats
    (services/checkpoints.py)."""

    def add(self, exchange: Exchange) -> None: ...
    def discard(self, exchange: Exchange) -> None: ...


class Exchange:
    """An exchange in progress; ``end`` records its outcome exactly once."""

    def __init__(
        self,
        app: Flask,
        pending: PendingExchange,
        *,
        save: Save,
        live: Live,
        title: Callable[[], None] | None = None,
        map_error: Callable[[Exception], DomainError] = map_error,
    ) -> None:
        self.app = app
        self.pending = pending
        self.progress = Progress()
        self._reader = UpstreamReader(app.config["GENERATION_TIMEOUT"], pending.received_at)
        self._save = save
        self._live = live
        self._title = title
        self._map_error = map_error
        self._ended: Outcome | None = None
        self._streaming = False  # counted in the streams-in-flight gauge
        self._last_write = time.monotonic()
        # We gave up waiting on an upstream that took the request: it bills the prompt.
        self._timed_out_opening = False
        # After ``end``: what went wrong, to tell the client (None: nothing), the row, and
        # the ending's values as made (the text relayed, even where none is kept).
        self.problem: DomainError | None = None
        self.saved: Message | None = None
        self.ending: dict[str, Any] = {}

    # ------------------------------------------------------------------ begin
    def open(self, open_upstream: OpenUpstream) -> None:
        """Heartbeat the committed row from now on; open the upstream and wait for its first
        event (within GENERATION_TIMEOUT): a failure before it is still an HTTP error."""
        self._live.add(self)
        try:
            error = self._reader.open(open_upstream)
        except GenerationTimeout as timeout:
            self._timed_out_opening = True  # the upstream may well be working on it
            self.progress.finish_reason = "timeout"
            self.end(Outcome.FAILED, TIMED_OUT, timeout)
            raise
        except DomainError as failure:  # the upstream could not be opened (mapped already)
            self.end(Outcome.FAILED, upstream_status(failure, failure.__cause__), failure)
            raise
        except STREAM_ERRORS as broken:
            failure = self._map_error(broken)
            self.end(Outcome.FAILED, upstream_status(failure, broken), failure)
            raise failure from broken
        except Exception as unexpected:
            self._fail_internally(unexpected)
        if error is not None:  # what the reader met instead of a first event
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

    @property
    def _charged(self) -> bool:
        """Whether the upstream took the request (it answered, or we gave up waiting on it):
        then it bills the prompt, and an ending without its usage is estimated."""
        return self._reader.upstream is not None or self._timed_out_opening

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
        took = self.progress.add
        silence = keepalive_seconds if keepalive else None
        try:
            for chunk in self._reader.chunks(silence, lambda: self._last_write):
                if chunk is None:
                    yield keepalive  # type: ignore[misc]
                    self._last_write = time.monotonic()
                    continue
                data = encode(chunk)
                if data:
                    yield data
                    self._last_write = time.monotonic()
                # Counted only now that the server came back for more: the write succeeded.
                took(chunk)
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

    # -------------------------------------------------------------------- end
    @property
    def outcome(self) -> Outcome | None:
        """How the exchange ended, or None while it is in progress."""
        return self._ended

    def end(self, outcome: Outcome, status: int, error: DomainError | None = None) -> None:
        """Record how the exchange ended; only the first call does anything."""
        if self._ended is not None:
            return
        reader = self._reader
        # Before the reader learns the exchange ended: from then on it stops unless draining.
        reader.draining = outcome == Outcome.CLIENT_CLOSED and self._usage_to_come()
        reader.ended = True
        self._ended = outcome
        self.problem = error
        if reader.draining:
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
            and self._reader.upstream is not None
            and not self._reader.exhausted
        )

    def _drain_usage(self) -> None:
        """The client left: read on (nothing more is relayed or saved as text) until the
        upstream's usage arrives, for at most USAGE_DRAIN_SECONDS, so that what it bills is
        recorded rather than estimated."""
        try:
            usage = self._reader.read_usage(self.app.config["USAGE_DRAIN_SECONDS"])
            if usage is not None:
                self.progress.usage = usage
        finally:
            self._reader.draining = False

    def _close_upstream(self) -> None:
        self._reader.close()

    def _record(self, outcome: Outcome, status: int) -> None:
        values = self.ending = self.final_values(outcome, status)
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

    def final_values(self, outcome: Outcome, status: int) -> dict[str, Any]:
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
            "is_success": outcome == Outcome.COMPLETE,
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

    def answered(self) -> Message | None:
        """The saved row as its client is answered: for an exchange that keeps no text, a
        copy (in no session) holding the prompt and the text relayed, which no column does."""
        saved = self.saved
        if saved is None or self.pending.keep_text:
            return saved
        columns = {c.key: getattr(saved, c.key) for c in Message.__mapper__.column_attrs}
        shown = Message(**columns)
        prompt, ending = self.pending.prompt, self.ending
        shown.prompt_content = prompt
        shown.input_items = [{"role": "user", "content": prompt}]
        for name in ("response_content", "reasoning_content", "refusal_content", "tool_calls"):
            setattr(shown, name, ending.get(name, NO_TEXT[name]))
        shown.siblings = getattr(saved, "siblings", 0)  # type: ignore[attr-defined]
        return shown

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


# The usage columns an ending writes even when its text could not be saved.
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
