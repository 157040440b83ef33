"""Whether an idle connection's socket has something to read, asked without waiting.

An idle connection (to PostgreSQL, or a pooled HTTP connection to the LLM) has nothing to
read unless its peer ended it: a FATAL message or a response nobody asked for, then end of
file. A zero-timeout poll of the socket tells, in one system call.
"""

from __future__ import annotations

import functools
import select
from collections.abc import Callable
from typing import Any


@functools.cache
def _poll() -> Callable[[], Any]:
    """The standard library's poll: gevent's patched one would go through its event loop
    (a watcher, epoll_ctl, epoll_wait, a greenlet switch) to answer a zero-timeout poll."""
    try:
        from gevent import monkey
    except ImportError:
        return select.poll
    return monkey.get_original("select", "poll")


def readable_now(fd: int) -> bool:
    """Whether the socket ``fd`` holds data or end of file (or has failed) at this instant:
    one poll() system call, which never waits."""
    poll = _poll()()
    poll.register(fd, select.POLLIN)
    return bool(poll.poll(0))


def _socket_readable(sock: Any) -> bool:
    """httpcore's ``is_socket_readable``, without gevent's loop: a socket gone is readable."""
    fd = -1 if sock is None else sock.fileno()
    return fd < 0 or readable_now(fd)


def probe_idle_http_connections_directly() -> None:
    """Make httpcore's idle-connection probe a direct poll.

    Each time a request starts or ends, httpcore's pool probes every idle connection (is
    its socket readable?) with a zero-timeout poll. Under gevent's patched select that poll
    is a trip through the event loop (a watcher, epoll_ctl, epoll_wait, a greenlet switch)
    per idle connection, so the LLM client's CPU would grow with its pool. Same answer, one
    poll() each. httpcore2 is the fork openai's httpx uses; without it nothing changes.
    """
    try:
        from httpcore2._backends import sync
    except ImportError:
        return
    if hasattr(sync, "is_socket_readable"):
        sync.is_socket_readable = _socket_readable
