"""Whether an idle connection's socket has something to read, asked without waiting.

An idle connection (to PostgreSQL, or a pooled HTTP connection to the LLM) has nothing to
read unless its peer ended it: a FATAL message or a response nobody asked for, then end of
file. One non-blocking peek at the socket tells, in one system call.
"""

from __future__ import annotations

import _socket
from typing import Any


def readable_now(fd: int) -> bool:
    """Whether the socket ``fd`` holds data or end of file (or has failed) at this instant."""
    # _socket, not socket: gevent's patched socket would wait for data instead of saying
    # there is none. The object only borrows the descriptor (detach, not close).
    peek = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM, 0, fd)
    try:
        peek.recv(1, _socket.MSG_PEEK | _socket.MSG_DONTWAIT)
    except BlockingIOError:
        return False
    except OSError:
        return True
    finally:
        peek.detach()
    return True


def _socket_readable(sock: Any) -> bool:
    """httpcore's ``is_socket_readable``, by a peek: a socket gone counts as readable."""
    fd = -1 if sock is None else sock.fileno()
    return fd < 0 or readable_now(fd)


def probe_idle_http_connections_by_peeking() -> None:
    """Make httpcore's idle-connection probe a peek.

    Each time a request starts or ends, httpcore's pool probes every idle connection (is
    its socket readable?) with a zero-timeout poll. Under gevent's patched select that poll
    is a trip through the event loop (a watcher, epoll_ctl, epoll_wait, a greenlet switch)
    per idle connection, so the LLM client's CPU grew with its pool. Same answer, one
    recv each. httpcore2 is the fork openai's httpx uses; without it nothing changes.
    """
    try:
        from httpcore2._backends import sync
    except ImportError:
        return
    if hasattr(sync, "is_socket_readable"):
        sync.is_socket_readable = _socket_readable
