"""Usage: the daily rollups kept with every exchange's ending, and the report read from them.

The rollups are written inside the transactions that already end exchanges (the save of an
ending, the reaper's UPDATE, a title's save): one more statement there, never a
transaction of its own. ``flask usage rebuild`` recomputes them from the messages.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from app.errors import Forbidden
from app.extensions import db
from app.models import LATENCY_BUCKETS_MS, Message, latency_columns
from app.repositories import MessageRepository
from app.repositories.usage import MEASURES, UsageRepository
from app.services.auth import Principal
from app.services.conversations import OWNER_ALL, OWNER_ME
from app.services.unit_of_work import unit_of_work

DEFAULT_DAYS = 30
OUTCOMES = ("complete", "failed", "client_closed", "interrupted", "rate_limited")


def record_ending(session: Session, message_id: int, values: Mapping[str, Any]) -> Message | None:
    """Write an exchange's ending and fold it into the rollups, in the caller's transaction.

    The rollup upsert comes last, so its row lock is held only until the commit that
    follows. An ending rewritten over an earlier one (the reaper guessed interrupted during
    a long outage; then the owner's save arrived) first takes the earlier one back out.
    """
    messages, usage = MessageRepository(session), UsageRepository(session)
    message = messages.end(message_id, values)
    if message is None:
        usage.remove_exchanges([message_id])  # nothing if the row is gone
        message = messages.update(message_id, values)
        if message is None:
            return None
    usage.add_exchanges([message_id])
    return message


def today() -> date:
    """The current UTC day."""
    return datetime.now(UTC).date()


def percentile(counts: Sequence[int], q: float) -> int | None:
    """The ``q`` quantile (nearest rank) of a bucketed measure: the upper bound of the bucket
    holding it (the last finite bound for the open bucket); None without samples."""
    total = sum(counts)
    if total == 0:
        return None
    rank = max(1, math.ceil(q * total))
    seen = 0
    for index, count in enumerate(counts):
        seen += count
        if seen >= rank:
            return LATENCY_BUCKETS_MS[min(index, len(LATENCY_BUCKETS_MS) - 1)]
    return LATENCY_BUCKETS_MS[-1]  # pragma: no cover (seen reaches total)


def _owner_scope(actor: Principal, owner: str | int) -> int | None:
    if owner == OWNER_ME or owner == actor.user_id:
        return actor.user_id
    if not actor.is_admin:
        raise Forbidden("Only an admin can see other users' usage.")
    return None if owner == OWNER_ALL else int(owner)


def _row(sums: Mapping[str, Any], group_by: Sequence[str]) -> dict[str, Any]:
    exchanges = int(sums["exchanges"])
    row: dict[str, Any] = {
        "day": sums["day"] if "day" in group_by else None,
        "model": (sums["model"] or None) if "model" in group_by else None,
        "user_id": sums["user"] if "user" in group_by else None,
        "exchanges": exchanges,
        "succeeded": int(sums["complete"]),
        "failed": exchanges - int(sums["complete"]),
        "outcomes": {outcome: int(sums[outcome] or 0) for outcome in OUTCOMES},
        "prompt_tokens": int(sums["prompt_tokens"] or 0),
        "response_tokens": int(sums["response_tokens"] or 0),
        "total_tokens": int(sums["total_tokens"] or 0),
        "title_tokens": int(sums["title_tokens"] or 0),
    }
    for measure in MEASURES:
        counts = [int(sums[name] or 0) for name in latency_columns(measure)]
        row[f"{measure}_ms"] = {"p50": percentile(counts, 0.5), "p95": percentile(counts, 0.95)}
    return row


def usage_report(
    actor: Principal,
    *,
    start: date | None = None,
    end: date | None = None,
    group_by: Sequence[str] = (),
    owner: str | int = OWNER_ME,
) -> dict[str, Any]:
    """Usage over [start, end] (default: the last 30 UTC days) per group, from the rollups."""
    end = end or today()
    start = start or end - timedelta(days=DEFAULT_DAYS - 1)
    group_by = list(dict.fromkeys(group_by))  # each once, in the order asked
    owner_id = _owner_scope(actor, owner)
    sums = UsageRepository(db.session).report(start, end, group_by, owner_id)
    return {
        "start": start,
        "end": end,
        "group_by": group_by,
        "rows": [_row(row, group_by) for row in sums],
    }


def rebuild_usage() -> int:
    """Recompute the exchange rollups from the messages; returns the rollup rows written."""
    with unit_of_work() as session:
        return UsageRepository(session).rebuild_exchanges()
