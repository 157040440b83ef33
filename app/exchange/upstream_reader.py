"""One exchange's upstream stream: opened, read in a reader of its own (a thread; a greenlet
under gevent) when the relay must also wait on a deadline or a silence, and closed."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from app.exchange.outcomes import GenerationTimeout
from app.llm.events import ChatStream, Chunk, Usage

log = logging.getLogger(__name__)

# How the exchange opens its upstream (services/generation.py wires it to the LLM).
OpenUpstream = Callable[[], ChatStream]


@dataclass(frozen=True)
class Handover:
    """What the reader hands over: a chunk, the end, an error, or that it stopped at the
    deadline; and when it arrived (time.monotonic())."""

    kind: Literal["chunk", "end", "error", "stopped"]
    value: Any
    arrived: float


class UpstreamReader:
    """Reads one upstream: inline, or through a reader that hands each chunk over a queue
    once the relay must wait on GENERATION_TIMEOUT or a keep-alive's silence as well."""

    def __init__(self, limit: float, received_at: float) -> None:
        """``limit``: GENERATION_TIMEOUT (0: none), counted from ``received_at``, the
        request's arrival (time.perf_counter())."""
        self.limit = limit
        # perf_counter and monotonic may differ in origin: measure the limit in one clock.
        self.deadline = (
            time.monotonic() + limit - (time.perf_counter() - received_at) if limit else None
        )
        self.upstream: ChatStream | None = None
        self.exhausted = False  # the upstream's stream ended: no usage is coming any more
        # Set by the exchange: it ended (the reader stops at its next chunk), unless it is
        # draining (reading on, past the deadline too, for the upstream's usage).
        self.ended = False
        self.draining = False
        self._source: Iterator[Chunk] = iter(())
        # The reader's queue, once one is needed, and chunks already taken from it that the
        # relay has not had yet.
        self._inbox: queue.Queue[Handover] | None = None
        self._held: deque[Handover] = deque()

    def open(self, open_upstream: OpenUpstream) -> BaseException | None:
        """Open the upstream and wait for its first event, within the deadline if there is one
        (GenerationTimeout past it). Returns what the reader raised instead of a first event;
        without a deadline, what opening or reading raises is raised here."""
        if self.deadline is not None:
            # Opening and the first event are waited for with the deadline in view: a reader
            # opens the upstream and reads it, this thread waits on its inbox.
            self._start(open_upstream)
            self._held.append(self.take(None))
        else:
            self._attach(open_upstream())
            try:
                first = next(self._source)
            except StopIteration:
                self.exhausted = True
            else:
                self._held.append(Handover("chunk", first, time.monotonic()))
        if self._held and self._held[0].kind == "error":
            return self._held.popleft().value
        return None

    def _attach(self, upstream: ChatStream) -> None:
        self.upstream = upstream
        self._source = iter(upstream)
        if self.ended and not self.draining:
            self.close()  # ended while it was being opened

    def _start(self, open_upstream: OpenUpstream | None = None) -> None:
        """Read the upstream (opening it first, given how) in a reader of its own that hands
        each chunk over a queue; stops once the exchange ended (or the deadline passed)."""
        if self._inbox is not None:
            return
        inbox: queue.Queue[Handover] = queue.Queue()
        self._inbox = inbox

        def read() -> None:
            try:
                if open_upstream is not None:
                    self._attach(open_upstream())
                    if self.ended and not self.draining:
                        return  # cut off while it was being opened; _attach closed it
                for chunk in self._source:
                    if self.ended and not self.draining:
                        # Closed by the thread that reads it: closing a blocking socket
                        # from another thread may not take effect (gevent's does).
                        self.close()
                        return
                    inbox.put(Handover("chunk", chunk, time.monotonic()))
                    late = self.deadline is not None and time.monotonic() >= self.deadline
                    if late and not self.draining:
                        # Nothing read from now on could be relayed.
                        inbox.put(Handover("stopped", None, time.monotonic()))
                        return
                inbox.put(Handover("end", None, time.monotonic()))
            except BaseException as error:  # handed over to the reading side, which decides
                inbox.put(Handover("error", error, time.monotonic()))

        threading.Thread(target=read, name="upstream-reader", daemon=True).start()

    def take(self, keepalive_at: float | None) -> Handover | None:
        """The reader's next item: None at ``keepalive_at`` (time.monotonic()) if none came
        by then; GenerationTimeout once the deadline passed, unless the item arrived before
        it (an answer that arrived is kept)."""
        assert self._inbox is not None
        while True:
            now = time.monotonic()
            waits = [keepalive_at - now] if keepalive_at is not None else []
            if self.deadline is not None:
                waits.append(self.deadline - now)
            try:
                item = self._inbox.get(timeout=max(min(waits), 0.0) if waits else None)
            except queue.Empty:
                if self.deadline is not None and time.monotonic() >= self.deadline:
                    raise GenerationTimeout(self.limit) from None
                if keepalive_at is not None and time.monotonic() >= keepalive_at:
                    return None
                continue
            if self.deadline is not None and item.arrived >= self.deadline:
                raise GenerationTimeout(self.limit)
            return item

    def chunks(
        self, silence: float | None, last_write: Callable[[], float]
    ) -> Iterator[Chunk | None]:
        """The upstream's chunks, and None whenever the client has had no byte for
        ``silence`` seconds since ``last_write()``; GenerationTimeout once the deadline
        passed. Waiting on the upstream and on those times at once takes a reader."""
        if self._inbox is None and (silence or self.deadline is not None):
            self._start()
        while True:
            if self._held:
                item: Handover | None = self._held.popleft()
            elif self._inbox is None:
                try:
                    item = Handover("chunk", next(self._source), 0.0)
                except StopIteration:
                    item = Handover("end", None, 0.0)
            else:
                item = self.take(last_write() + silence if silence else None)
            if item is None:
                yield None
                continue
            if item.kind == "end":
                self.exhausted = True
                return
            if item.kind == "error":
                raise item.value
            if item.kind == "stopped":
                raise GenerationTimeout(self.limit)
            yield item.value

    def read_usage(self, seconds: float) -> Usage | None:
        """Read on (nothing more is relayed) until the upstream's usage arrives, for at most
        ``seconds``: that usage, or None."""
        until = time.monotonic() + seconds
        self._start()
        assert self._inbox is not None
        held, self._held = list(self._held), deque()
        while True:
            if held:
                item = held.pop(0)
            else:
                left = until - time.monotonic()
                if left <= 0:
                    return None
                try:
                    item = self._inbox.get(timeout=left)
                except queue.Empty:
                    return None
            if item.kind != "chunk":
                return None
            if item.value.usage is not None:
                return item.value.usage

    def close(self) -> None:
        """Close the upstream stream: left open, it would leak the pooled HTTP connection."""
        try:
            if self.upstream is not None:
                self.upstream.close()
        except Exception:
            log.warning("closing the upstream stream failed", exc_info=True)
