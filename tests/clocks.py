"""Clocks a test moves by hand: the API-key cache's monotonic clock, and the wall clock
the service stamps rows with (a pytest plugin of tests/conftest.py)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta, tzinfo

import pytest
from flask import Flask

from app.models import utcnow


@pytest.fixture
def key_cache_clock(app: Flask, monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The API-key cache's clock in seconds, moved by the test (``key_cache_clock[0] += 5``)."""
    now = [1000.0]
    monkeypatch.setattr(app.extensions["api_key_cache"], "clock", lambda: now[0])
    return now


class WallClock:
    """The time ``utcnow()`` answers while the test runs; it moves only when advanced."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def advance(self, seconds: float) -> datetime:
        """Move the clock on by ``seconds``; returns the new time."""
        self.now += timedelta(seconds=seconds)
        return self.now


@pytest.fixture
def wall_clock(monkeypatch: pytest.MonkeyPatch) -> WallClock:
    """Stops the service's wall clock at the current whole second, for timestamps a test
    compares: each row is stamped with exactly the time the test set."""
    clock = WallClock(datetime.now(UTC).replace(microsecond=0))

    class Stopped(datetime):
        @classmethod
        def now(cls, tz: tzinfo | None = None) -> datetime:  # type: ignore[override]
            return clock.now.astimezone(tz) if tz else clock.now.replace(tzinfo=None)

    # utcnow reads its module's ``datetime`` on each call, and the columns' defaults call
    # utcnow itself: patching that one name stops the time of every row the service stamps.
    monkeypatch.setattr(sys.modules[utcnow.__module__], "datetime", Stopped)
    return clock
