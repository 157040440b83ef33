"""Saving outside a request: a fresh app context and session, retried through brief outages.

What still cannot be saved once the retries are spent is appended to a spool file under the
instance folder (readable by the service's user only), never to the log: the log says which
row, the spool keeps the text, and ``flask messages recover`` writes it back.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import stat
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
from app.services.usage import record_ending, record_title
from app.web import metrics

log = logging.getLogger(__name__)
T = TypeVar("T")


def spool_path(app: Flask) -> Path:
    """Where unsaved records wait for ``flask messages recover``."""
    return Path(app.config["UNSAVED_EXCHANGES_FILE"])


SPOOL_MODE = 0o600  # it holds answers: the service's user only


def _append(path: Path, lines: str) -> None:
    """Append ``lines`` to the spool at ``path``, under its lock.

    Opened without following a symlink (one placed there is refused, not written through),
    and made mode 0600 whatever mode an existing file had. The lock and the check that the
    file opened is still the one at ``path`` keep an append from landing in a file
    ``flask messages recover`` has renamed away to process.
    """
    data = lines.encode("utf-8")
    # O_NONBLOCK: a FIFO put there fails at once instead of blocking the save (regular
    # files ignore it).
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    while True:
        fd = os.open(path, flags, SPOOL_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            opened = os.fstat(fd)
            if not stat.S_ISREG(opened.st_mode):
                raise OSError(f"{path} is not a regular file")
            try:
                current = os.stat(path, follow_symlinks=False)
            except FileNotFoundError:
                continue  # renamed away by recover meanwhile: append to a new file
            if (current.st_dev, current.st_ino) != (opened.st_dev, opened.st_ino):
                continue
            if stat.S_IMODE(opened.st_mode) != SPOOL_MODE:
                os.fchmod(fd, SPOOL_MODE)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            return
        finally:
            os.close(fd)  # releases the lock


def _spool(app: Flask, record: Mapping[str, Any]) -> Path:
    path = spool_path(app)
    _append(path, json.dumps(record, default=str) + "\n")
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


class SpoolRefused(Exception):
    """The spool's path is not a file the service wrote (a symbolic link)."""


def recover_spooled(app: Flask) -> tuple[int, int]:
    """Write spooled records back (exchange endings; titles and their usage); returns
    (written, kept for a later run).

    The spool is first renamed aside, so what the service appends meanwhile goes to a new
    file; the renamed one is locked (an append begun before the rename finishes first),
    processed, and removed. A record that cannot be applied (the database still down, a
    malformed line, a kind this release does not know) is appended back to the spool, never
    dropped. A run that died midway left its renamed file: the next run takes it up first.
    Rows and conversations deleted since count as written: there is nothing to end.
    """
    path = spool_path(app)
    work = path.with_name(path.name + ".recovering")
    for candidate in (path, work):
        if candidate.is_symlink():
            raise SpoolRefused(f"{candidate} is a symbolic link: not followed, not recovered")
    if not work.exists():
        try:
            os.rename(path, work)
        except FileNotFoundError:
            return 0, 0
    fd = os.open(work, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with os.fdopen(os.dup(fd), encoding="utf-8") as spooled:
            lines = [line for line in spooled.read().splitlines() if line.strip()]
        written, kept = 0, []
        for line in lines:
            if _apply(app, line):
                written += 1
            else:
                kept.append(line)
        if kept:
            _append(path, "".join(line + "\n" for line in kept))
        os.unlink(work)
    finally:
        os.close(fd)
    return written, len(kept)


def _apply(app: Flask, line: str) -> bool:
    """Write one spooled record back; False if it cannot be (kept for a later run)."""
    try:
        record = json.loads(line)
    except ValueError:
        log.error("a spooled record is not JSON; kept in the spool")
        return False
    if not isinstance(record, dict):
        log.error("a spooled record is not an object; kept in the spool")
        return False
    kind = record.get("kind") or ("exchange" if "message_id" in record else "title")
    try:
        if kind == "exchange" and isinstance(record.get("message_id"), int):
            values = {k: v for k, v in record.items() if k not in _EXCHANGE_KEYS}
            with app.app_context(), unit_of_work() as session:
                record_ending(session, record["message_id"], values)
            return True
        if kind == "title" and isinstance(record.get("conversation_id"), int):
            with app.app_context(), unit_of_work() as session:
                record_title(session, record)
            return True
    except Exception as error:
        level = logging.WARNING if is_transient(error) else logging.ERROR
        log.log(level, "a spooled %s record could not be written (%s); kept", kind, error)
        return False
    log.error("a spooled record of unknown kind %r; kept in the spool", str(kind)[:32])
    return False


# What identifies an exchange's record rather than being one of its columns.
_EXCHANGE_KEYS = frozenset({"kind", "message_id", "conversation_id"})
