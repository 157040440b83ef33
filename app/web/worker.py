"""gunicorn's gevent worker, made fair to the connections it holds and to its sibling workers.

gunicorn.conf.py loads this file by path, in the master: it must import nothing of the app
(the app's modules must first be imported in each worker, after gevent patches them).
"""

from __future__ import annotations

import multiprocessing
import os
import time
from typing import Any

import gevent
from gevent.server import StreamServer
from gunicorn.workers import ggevent

# A worker may hold a few connections more than the least loaded live sibling; past that it
# leaves new connections to the others, unless none of them has taken one for this long.
# A margin of one would make each burst wait for the workers' turns again.
ACCEPT_MARGIN = 4
ACCEPT_DEFERRAL_SECONDS = 0.002
# Connections taken per wake of the listening socket (gevent's default).
ACCEPTS_PER_WAKE = 100
# Slots for the workers' shared connection counts, scanned on every accept; a worker that
# finds none free (past 64 workers) takes connections without counting.
SLOTS = 64


def should_accept(mine: int, siblings: list[int], deferred_for: float) -> bool:
    """Whether a worker holding ``mine`` connections takes the next one."""
    if not siblings or mine <= min(siblings) + ACCEPT_MARGIN:
        return True
    return deferred_for >= ACCEPT_DEFERRAL_SECONDS


class ConnectionCounts:
    """Each live worker's open connections, in memory shared by the master's children."""

    def __init__(self, slots: int = SLOTS) -> None:
        # Anonymous shared memory, made in the master before any fork: every worker sees it.
        self._pids = multiprocessing.RawArray("q", slots)
        self._open = multiprocessing.RawArray("q", slots)
        self._claim = multiprocessing.Lock()
        self.slot = -1

    def claim(self) -> None:
        """Take the slot of a worker that is gone (or never was), in the worker itself."""
        with self._claim:
            for slot, pid in enumerate(self._pids):
                if not _alive(pid):
                    self._pids[slot], self._open[slot], self.slot = os.getpid(), 0, slot
                    return

    def opened(self) -> None:
        if self.slot >= 0:
            self._open[self.slot] += 1

    def closed(self) -> None:
        if self.slot >= 0:
            self._open[self.slot] -= 1

    def mine(self) -> int:
        return self._open[self.slot] if self.slot >= 0 else 0

    def siblings(self) -> list[int]:
        """The open connections of every other worker alive."""
        return [
            self._open[slot]
            for slot, pid in enumerate(self._pids)
            if slot != self.slot and pid > 0 and _alive(pid)
        ]


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process reusing the pid: not a worker of ours
        return False
    return True


COUNTS = ConnectionCounts()


class BalancedServer(StreamServer):
    """gevent's server, which takes a burst of connections at once but leaves a sibling
    worker with fewer connections to take the next.

    gunicorn sets ``max_accept = 1`` when it runs several workers, so that one worker does
    not take a whole burst; a burst of N connections then waits N turns of the loop, each
    as long as the worker's busy connections make it. The balance is kept per connection
    here.
    """

    _deferred_since: float | None = None

    @property  # type: ignore[override]
    def max_accept(self) -> int:
        return ACCEPTS_PER_WAKE

    @max_accept.setter
    def max_accept(self, _value: int) -> None:
        """gunicorn's ``max_accept = 1``: the balance below does its job."""

    def do_read(self) -> Any:
        now = time.monotonic()
        deferred_for = 0.0 if self._deferred_since is None else now - self._deferred_since
        if not should_accept(COUNTS.mine(), COUNTS.siblings(), deferred_for):
            if self._deferred_since is None:
                self._deferred_since = now
            # Look again shortly, not at every turn of the loop: the socket stays readable.
            self.stop_accepting()
            self._timer = self.loop.timer(ACCEPT_DEFERRAL_SECONDS / 2)
            self._timer.start(self._start_accepting_if_started)
            return None
        self._deferred_since = None
        accepted = super().do_read()
        if accepted:
            COUNTS.opened()
        return accepted


class FairGeventWorker(ggevent.GeventWorker):
    """gunicorn's gevent worker whose keep-alive connections take turns.

    In gunicorn's, a greenlet whose client has sent its next request by the time the
    response is written reads and serves it without yielding to the loop, so a few busy
    connections take the worker in turn while the others' requests wait, some for seconds.
    Here each greenlet yields once after each response, behind the connections whose
    requests are ready.
    """

    def init_process(self) -> None:
        COUNTS.claim()
        super().init_process()

    def run(self) -> None:
        # gunicorn's run() builds its server from this module-level name.
        ggevent.StreamServer = BalancedServer
        super().run()

    def handle(self, listener: Any, client: Any, addr: Any) -> None:
        try:
            super().handle(listener, client, addr)
        finally:
            COUNTS.closed()

    def handle_request(self, listener_name: Any, req: Any, sock: Any, addr: Any) -> None:
        super().handle_request(listener_name, req, sock, addr)
        gevent.sleep(0)
