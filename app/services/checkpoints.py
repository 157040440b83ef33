"""The exchanges a process is streaming, and the ticker that keeps their rows current.

From the moment its row is committed until it ends, an exchange is heartbeated: one short
statement per tick writes, for all live exchanges together, a heartbeat and (unless
CHECKPOINT_SECONDS is 0) what each relayed since the last tick: the text and reasoning
added, appended in the database, and the tool calls if they changed. Never a transaction per
chunk, never a connection held between ticks. The ticker runs every CHECKPOINT_SECONDS, or
every REAP_AFTER_SECONDS / 3 when text checkpoints are off: heartbeats never stop while an
exchange lives. Every ``REAP_INTERVAL_SECONDS`` the same ticker reaps exchanges whose
heartbeat went stale (their worker died), so a killed worker's rows are ended while the
service runs, by whichever worker or instance gets there first.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from flask import Flask

from app.database import is_transient
from app.models import utcnow
from app.repositories import MessageRepository
from app.repositories.messages import Checkpoint
from app.services.reaper import reap_interrupted
from app.services.unit_of_work import unit_of_work

if TYPE_CHECKING:
    from app.exchange.lifecycle import Exchange

log = logging.getLogger(__name__)

# How much of an exchange's progress the database holds: pieces of text and of reasoning,
# characters of tool calls; None: unknown (a tick failed midway), the next writes it whole.
Written = tuple[int, int, int] | None


class LiveExchanges:
    """This process's exchanges in progress, checkpointed and reaped by one ticker."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        checkpoint = app.config["CHECKPOINT_SECONDS"]
        self.stale_after = app.config["REAP_AFTER_SECONDS"]
        self.text_checkpoints = checkpoint > 0
        # Heartbeats are not optional: without text checkpoints the ticker still runs, at
        # a third of the staleness bound (as often as the settings allow a checkpoint).
        self.interval = checkpoint if checkpoint > 0 else self.stale_after / 3
        self.reap_interval = app.config["REAP_INTERVAL_SECONDS"]
        self._live: dict[int, Exchange] = {}
        self._written: dict[int, Written] = {}
        self._lock = threading.Lock()
        self._ticker: threading.Thread | None = None
        self._stopped = threading.Event()
        self._next_reap = 0.0

    def add(self, exchange: Exchange) -> None:
        with self._lock:
            self._live[exchange.pending.message_id] = exchange
            self._written[exchange.pending.message_id] = (0, 0, 0)
        self.start()

    def discard(self, exchange: Exchange) -> None:
        with self._lock:
            self._live.pop(exchange.pending.message_id, None)
            self._written.pop(exchange.pending.message_id, None)

    def __len__(self) -> int:
        return len(self._live)

    def start(self) -> None:
        """Start the ticker (once per process; LIVE_TICKER off: tests tick by hand)."""
        if self._ticker is not None or not self.app.config["LIVE_TICKER"]:
            return
        with self._lock:
            if self._ticker is None:
                self._ticker = threading.Thread(target=self._run, name="checkpoints", daemon=True)
                self._ticker.start()

    def stop(self) -> None:
        """Stop the ticker after its current tick (it is a daemon: exiting stops it too)."""
        self._stopped.set()

    def _run(self) -> None:
        while not self._stopped.wait(self.interval):
            try:
                self.tick()
            except Exception as error:
                # A database outage must not kill the ticker: the next tick tries again.
                level = logging.WARNING if is_transient(error) else logging.ERROR
                log.log(level, "checkpoint failed: %r", error, exc_info=not is_transient(error))

    def tick(self, *, reap: bool | None = None) -> tuple[int, int]:
        """Checkpoint every live exchange, and reap if it is time (or ``reap`` says so);
        returns (rows checkpointed, rows reaped)."""
        checkpointed = reaped = 0
        with self.app.app_context():
            progress, sizes = self._progress()
            if progress:
                try:
                    with unit_of_work() as session:
                        checkpointed = MessageRepository(session).checkpoint(progress, utcnow())
                except BaseException:
                    # Perhaps written, perhaps not: the next tick writes these whole.
                    with self._lock:
                        for message_id in sizes.keys() & self._written.keys():
                            self._written[message_id] = None
                    raise
                with self._lock:
                    for message_id, size in sizes.items():
                        if message_id in self._live:
                            self._written[message_id] = size
            if reap is None:
                reap = time.monotonic() >= self._next_reap
            if reap:
                self._next_reap = time.monotonic() + self.reap_interval
                reaped = reap_interrupted(self.stale_after)
                if reaped:
                    log.warning("reaped %d exchange(s) a dead worker left in progress", reaped)
        return checkpointed, reaped

    def _progress(self) -> tuple[dict[int, Checkpoint | None], dict[int, tuple[int, int, int]]]:
        """Per live exchange: what it relayed since the last checkpoint (None: nothing, or
        text checkpoints are off); and the sizes to remember once that is written."""
        with self._lock:
            live = list(self._live.items())
            written = dict(self._written)
        progress: dict[int, Checkpoint | None] = {}
        sizes: dict[int, tuple[int, int, int]] = {}
        for message_id, exchange in live:
            progress[message_id] = None
            # store: false (the Responses API) keeps no text, even while the answer streams.
            if not self.text_checkpoints or not exchange.pending.keep_text:
                continue
            state = exchange.progress
            text, reasoning = list(state.text), list(state.reasoning)
            size = (len(text), len(reasoning), state.tool_call_chars)
            before = written.get(message_id)
            if before == size:
                continue
            sizes[message_id] = size
            whole = before is None
            text_from, reasoning_from, calls_before = before or (0, 0, -1)
            progress[message_id] = Checkpoint(
                text="".join(text[0 if whole else text_from :]),
                reasoning="".join(reasoning[0 if whole else reasoning_from :]),
                whole=whole,
                tool_calls=(
                    state.tool_calls_copy()
                    if state.tool_calls and size[2] != calls_before
                    else None
                ),
            )
        return progress, sizes


def init_live_exchanges(app: Flask) -> None:
    """Give ``app`` its registry of live exchanges (one per process)."""
    app.extensions["live_exchanges"] = LiveExchanges(app)


def live_exchanges(app: Flask) -> LiveExchanges:
    """The registry of ``app``'s live exchanges."""
    return app.extensions["live_exchanges"]
