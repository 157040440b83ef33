"""Exchanges left in progress by a killed worker are closed as interrupted."""

from __future__ import annotations

from datetime import timedelta

from app.models import utcnow
from app.repositories import MessageRepository
from app.services.unit_of_work import unit_of_work
from app.streaming import INTERNAL_ERROR

INTERRUPTED = INTERNAL_ERROR


def reap_interrupted(older_than_seconds: int) -> int:
    """Mark exchanges in progress for longer than this as failed (500); returns how many."""
    cutoff = utcnow() - timedelta(seconds=older_than_seconds)
    with unit_of_work() as session:
        return MessageRepository(session).mark_abandoned(cutoff, INTERRUPTED)
