"""Saving outside a request: a fresh app context and session, retried through brief outages."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from flask import Flask
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session

from app.services.unit_of_work import unit_of_work

log = logging.getLogger(__name__)
T = TypeVar("T")

# What a database restart, a network blip or a saturated pool raise: worth another try.
TRANSIENT = (OperationalError, InterfaceError, PoolTimeout)


def save_with_retry(
    app: Flask, work: Callable[[Session], T], record: Mapping[str, Any], what: str
) -> T | None:
    """Run ``work`` in its own unit of work, retrying transient failures a bounded number of
    times; if it still fails, log ``record`` in full at ERROR so nothing is lost silently."""
    attempts = max(1, app.config["SAVE_ATTEMPTS"])
    for attempt in range(1, attempts + 1):
        try:
            with app.app_context(), unit_of_work() as session:
                return work(session)
        except TRANSIENT as error:
            if attempt == attempts:
                break
            delay = app.config["SAVE_RETRY_DELAY"] * attempt
            log.warning("saving %s failed (%r); retry %d in %.1fs", what, error, attempt, delay)
            time.sleep(delay)
        except Exception:
            log.exception("saving %s failed", what)
            break
    log.error("LOST %s, not saved after %d attempts: %s", what, attempts, json.dumps(record))
    return None
