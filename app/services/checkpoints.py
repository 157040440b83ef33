"""The exchanges a process is streaming, and the ticker that keeps their rows current.

Every ``CHECKPOINT_SECONDS`` one short statement writes, for all live exchanges together, a
heartbeat and the text relayed since the last checkpoint: never a transaction per chunk,
never a connection held between ticks. Every ``REAP_INTERVAL_SECONDS`` the same ticker
reaps exchanges whose heartbeat went stale (their worker died), so a killed worker's rows
are ended while the service runs, by whichever worker or instance gets there first.
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
from app.services.reaper import reap_interrupted
from app.services.unit_of_work import unit_of_work

if TYPE_CHECKING:
    from app.exchange.lifecycle import Exchange

log = logging.getLogger(__name__)


class LiveExchanges:
    """This process's exchanges in progress, checkpointed and reaped by one ticker."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.interval = app.config["CHECKPOINT_SECONDS"]
        self.reap_interval = app.config["REAP_INTERVAL_SECONDS"]
        self.stale_after = app.config["REAP_AFTER_SECONDS"]
        self._live: dict[int, Exchange] = {}
        self._written: dict[int, tuple[int, int]] = {}  # pieces already checkpointed
        self._lock = threading.Lock()
        self._ticker: threading.Thread | None = None
        self._next_reap = 0.0

    def add(self, exchange: Exchange) -> None:
        with self._lock:
            self._live[exchange.pending.message_id] = exchange
        self.start()

    def discard(self, exchange: Exchange) -> None:
        with self._lock:
            self._live.pop(exchange.pending.message_id, None)
            self._written.pop(exchange.pending.message_id, None)

    def __len__(self) -> int:
        return len(self._live)

    def start(self) -> None:
        """Start the ticker (once per process; never when CHECKPOINT_SECONDS is 0)."""
        if self._ticker is not None or self.interval <= 0:
            return
        with self._lock:
            if self._ticker is None:
                self._ticker = threading.Thread(target=self._run, name="checkpoints", daemon=True)
                self._ticker.start()

    def _run(self) -> None:
        while True:
            time.sleep(self.interval)
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
                with unit_of_work() as session:
                    checkpointed = MessageRepository(session).checkpoint(progress, utcnow())
                with self._lock:  # only once written: a failed tick resends the text
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

    def _progress(
        self,
    ) -> tuple[dict[int, tuple[str, str | None] | None], dict[int, tuple[int, int]]]:
        """Per live exchange: its texts if they grew since the last checkpoint, else None;
        and the sizes to remember once that is written."""
        with self._lock:
            live = list(self._live.items())
            written = dict(self._written)
        progress: dict[int, tuple[str, str | None] | None] = {}
        sizes: dict[int, tuple[int, int]] = {}
        for message_id, exchange in live:
            if not exchange.pending.keep_text:
                progress[message_id] = None
                continue
            text, reasoning = list(exchange.progress.text), list(exchange.progress.reasoning)
            size = (len(text), len(reasoning))
            if written.get(message_id) == size:
                progress[message_id] = None
                continue
            sizes[message_id] = size
            progress[message_id] = ("".join(text), "".join(reasoning) or None)
        return progress, sizes


def init_live_exchanges(app: Flask) -> None:
    """Give ``app`` its registry of live exchanges (one per process)."""
    app.extensions["live_exchanges"] = LiveExchanges(app)


def live_exchanges(app: Flask) -> LiveExchanges:
    """The registry of ``app``'s live exchanges."""
    return app.extensions["live_exchanges"]
