"""The purge's timer in each worker: a pass every PURGE_INTERVAL_SECONDS, on a thread of its
own (a long pass never delays the checkpoint ticker's heartbeats)."""

from __future__ import annotations

import logging
import random
import threading

from flask import Flask

from app.database import is_transient
from app.services.purge import PurgeReport, purge_expired

log = logging.getLogger(__name__)


class PurgeTicker:
    """Runs ``purge_expired`` every PURGE_INTERVAL_SECONDS (0: never) while the process lives."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._stopped = threading.Event()

    def start(self) -> None:
        """Start the timer (once per process; LIVE_TICKER off: tests run passes by hand)."""
        interval = self.app.config["PURGE_INTERVAL_SECONDS"]
        if self._thread is not None or not interval or not self.app.config["LIVE_TICKER"]:
            return
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, args=(interval,), name="purge", daemon=True
                )
                self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        """Stop after the current pass (it is a daemon: exiting stops it too)."""
        self._stopped.set()

    def run_once(self) -> PurgeReport:
        with self.app.app_context():
            return purge_expired()

    def _run(self, interval: float) -> None:
        # The first pass after a random part of the interval: workers started together
        # spread their passes instead of all scanning at once.
        delay = random.uniform(0, interval)
        while not self._stopped.wait(delay):
            delay = interval
            try:
                self.run_once()
            except Exception as error:
                # A database outage must not kill the timer: the next pass tries again.
                level = logging.WARNING if is_transient(error) else logging.ERROR
                log.log(level, "purge failed: %r", error, exc_info=not is_transient(error))


def init_purge_ticker(app: Flask) -> None:
    """Give ``app`` its purge timer (one per process; gunicorn.conf.py starts it in each worker)."""
    app.extensions["purge_ticker"] = PurgeTicker(app)


def purge_ticker(app: Flask) -> PurgeTicker:
    return app.extensions["purge_ticker"]
