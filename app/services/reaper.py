"""Exchanges whose worker died mid-stream are ended as interrupted.

Safe with any number of workers and instances on one database: each row is ended by one
conditional UPDATE (``is_success IS NULL`` and a stale heartbeat), so the first reaper to
reach it wins and the others match nothing. A live exchange's heartbeat moves every
``CHECKPOINT_SECONDS`` (``REAP_AFTER_SECONDS`` / 3 when that is 0) from the moment its row
is committed, far inside ``REAP_AFTER_SECONDS``, so it is never reaped; and if a
long database outage ever let that happen, its owner's final save overwrites the guess.
"""

from __future__ import annotations

from datetime import timedelta

from app.exchange.outcomes import INTERRUPTED, Outcome
from app.exchange.progress import CHARS_PER_TOKEN
from app.models import utcnow
from app.repositories import MessageRepository
from app.repositories.messages import estimated_usage
from app.repositories.usage import UsageRepository
from app.services.unit_of_work import unit_of_work
from app.web import metrics


def reap_interrupted(stale_after_seconds: float) -> int:
    """End every exchange whose heartbeat is older than this as interrupted; returns how many."""
    cutoff = utcnow() - timedelta(seconds=stale_after_seconds)
    values = {
        "is_success": False,
        "outcome": Outcome.INTERRUPTED,
        "status_code": INTERRUPTED,
        # Its worker never received the upstream's usage: charged an estimate.
        **estimated_usage(CHARS_PER_TOKEN),
    }
    with unit_of_work() as session:
        reaped = MessageRepository(session).reap_stale(cutoff, values)
        # Counted in the rollups in the same transaction as they are ended.
        UsageRepository(session).add_exchanges([uid for uid, _ in reaped])
    for _, endpoint in reaped:
        metrics.exchange_interrupted(endpoint)
    return len(reaped)
