"""Every request gets an id: the client's ``X-Request-ID`` when it is sane, else a new one.

It is echoed in the response, sent to the LLM with the upstream call, written on the
exchange and carried by the request's log lines, so a complaint traces to one row.
"""

from __future__ import annotations

import re
import time
import uuid

from flask import Flask, Response, g, has_request_context, request

HEADER = "X-Request-ID"
# Bounded and printable: it lands in logs, headers and a database column.
_SANE = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")


def _assign() -> None:
    g.received_at = time.perf_counter()
    given = request.headers.get(HEADER, "").strip()
    g.request_id = given if _SANE.fullmatch(given) else uuid.uuid4().hex


def _echo(response: Response) -> Response:
    request_id = g.get("request_id")
    if request_id:
        response.headers[HEADER] = request_id
    return response


def current_request_id() -> str | None:
    """The current request's id, or None outside a request."""
    return g.get("request_id") if has_request_context() else None


def request_received_at() -> float:
    """``time.perf_counter()`` when the current request arrived (now, outside a request)."""
    received = g.get("received_at") if has_request_context() else None
    return received if received is not None else time.perf_counter()


def init_request_id(app: Flask) -> None:
    """Assign every request an id (first, before authentication) and echo it back."""
    app.before_request_funcs.setdefault(None, []).insert(0, _assign)
    app.after_request(_echo)
