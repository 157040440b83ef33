"""Saving outside a request: a fresh app context and session, retried through brief outages.

What still cannot be saved once the retries are spent is appended to a spool file under the
instance folder (readable by the service's user only), never to the log: the log says which
row, the spool keeps the text, and ``flask messages recover`` writes it back.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, TypeVar

from flask import Flask
from sqlalchemy.orm import Session

from app.database import is_transient
from app.errors import Unavailable
from app.services.unit_of_work import unit_of_work
from app.services.usage import record_ending
from app.web import metrics

log = logging.getLogger(__name__)
T = TypeVar("T")


def spool_path(app: Flask) -> Path:
    """Where unsaved records wait for ``flask messages recover``."""
    return Path(app.config["UNSAVED_EXCHANGES_FILE"])


def _spool(app: Flask, record: Mapping[str, Any]) -> Path:
    path = spool_path(app)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as spool:
        spool.write(json.dumps(record, default=str) + "\n")
    return path


def save_with_retry(
    app: Flask,
    work: Callable[[Session], T],
    record: Mapping[str, Any],
    what: str,
    *,
    exchange: bool = True,
    unit: Callable[[], AbstractContextManager[Session]] = unit_of_work,
) -> T:
    """Run ``work`` in its own ``unit`` (of work), retrying transient failures a bounded
    number of times; then spool ``record`` and raise Unavailable. Other errors propagate at
    once. ``exchange``: the record is an exchange's ending (counted as lost if spooled)."""
    attempts = max(1, app.config["SAVE_ATTEMPTS"])
    for attempt in range(1, attempts + 1):
        try:
            with app.app_context(), unit() as session:
                return work(session)
        except Exception as error:
            if not is_transient(error):
                raise
            if attempt == attempts:
                break
            delay = app.config["SAVE_RETRY_DELAY"] * attempt
            metrics.save_retried()
            log.warning(
                "saving %s failed (%s); retry %d in %.1fs",
                what,
                type(error).__name__,
                attempt,
                delay,
            )
            time.sleep(delay)
    try:
        where = f"kept in {_spool(app, record)}; `flask messages recover` writes it back"
    except OSError as error:
        where = f"and the spool file could not be written either ({error})"
    log.error("LOST %s: not saved after %d attempts, %s", what, attempts, where)
    if exchange:
        metrics.exchange_lost()
    raise Unavailable("The answer could not be saved: the database is unavailable.")


def recover_spooled(app: Flask) -> tuple[int, int]:
    """Write spooled exchange endings back to their rows; returns (written, kept for later).

    Rows deleted since (with their conversation) count as written: there is nothing to end.
    """
    path = spool_path(app)
    if not path.exists():
        return 0, 0
    kept: list[str] = []
    written = 0
    for line in path.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        values = {k: v for k, v in record.items() if k not in {"message_id", "conversation_id"}}
        try:
            with app.app_context(), unit_of_work() as session:
                record_ending(session, record["message_id"], values)
            written += 1
        except Exception as error:
            if not is_transient(error):
                raise
            kept.append(line)
    if kept:
        path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
    else:
        path.unlink()
    return written, len(kept)
