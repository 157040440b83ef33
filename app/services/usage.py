"""Usage: the daily rollups kept with every exchange's ending, and the report read from them.

The rollups are written inside the transactions that already end exchanges (the save of an
ending, the reaper's UPDATE, a title's save): one more statement there, never a
transaction of its own. ``flask usage rebuild`` recomputes them from the messages.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from itertools import accumulate
from typing import Any

from sqlalchemy.orm import Session

from app.extensions import db
from app.models import Message
from app.models.usage import LATENCY_BUCKETS_MS
from app.repositories import ConversationRepository, MessageRepository
from app.repositories.usage import REPORT_SUMS, UsageRepository
from app.schemas.usage import USAGE_DEFAULT_DAYS
from app.services.auth import Principal
from app.services.conversations import OWNER_ME, list_scope
from app.services.unit_of_work import unit_of_work

QUANTILES = (0.5, 0.95)


def record_ending(session: Session, message_id: int, values: Mapping[str, Any]) -> Message | None:
    """Write an exchange's ending and fold it into the rollups, in the caller's transaction.

    The rollup upsert comes last, so its row lock is held only until the commit that
    follows. An ending rewritten over an earlier one (the reaper guessed interrupted during
    a long outage; then the owner's save arrived) first takes the earlier one back out; it
    brings no deleted content back (``MessageRepository.rewrite_ending``).
    """
    messages, usage = MessageRepository(session), UsageRepository(session)
    message = messages.end(message_id, values)
    if message is None:
        usage.remove_exchanges([message_id])  # nothing if the row is gone
        message = messages.rewrite_ending(message_id, values)
        if message is None:
            return None
    usage.add_exchanges([message_id])
    return message


def record_title(session: Session, record: Mapping[str, Any]) -> None:
    """Write a conversation's title if it has none and, when the title came from an LLM
    call, count that call's usage (kind title) on ``record["day"]``, in the caller's
    transaction. ``record``: what ``title_record`` made (also as spooled, and as spooled
    by earlier releases: ``{conversation_id, title}``)."""
    conversation_id = record["conversation_id"]
    title = record.get("title")
    if isinstance(title, str) and title:
        ConversationRepository(session).set_title_if_missing(conversation_id, title)
    tokens = record.get("tokens")
    if record.get("called") and isinstance(record.get("model"), str):
        day = date.fromisoformat(record["day"]) if record.get("day") else today()
        counted = tuple(tokens) if isinstance(tokens, list | tuple) else (0, 0, 0)
        UsageRepository(session).add_title(conversation_id, day, record["model"], counted)


def title_record(
    conversation_id: int,
    title: str,
    model: str,
    day: date,
    tokens: tuple[int | None, int | None, int | None] | None,
    called: bool,
) -> dict[str, Any]:
    """A title's save as plain values: what ``record_title`` writes and the spool keeps."""
    return {
        "kind": "title",
        "conversation_id": conversation_id,
        "title": title,
        "model": model,
        "day": day.isoformat(),
        "tokens": list(tokens) if tokens else None,
        "called": called,
    }


def end_exchange(
    session: Session, message_id: int, values: Mapping[str, Any], whole: bool = True
) -> Message | None:
    """``record_ending`` in as few round trips as the database allows: on PostgreSQL, run
    by ``one_statement``, an exchange still in progress ends in one statement (returning
    only the row's id unless ``whole``)."""
    usage = UsageRepository(session)
    if usage.dialect == "postgresql":
        message = usage.end_and_fold(message_id, values, whole)
        if message is not None:
            return message
    # SQLite; or the exchange was ended already (by the reaper), or is gone.
    with unit_of_work() as writing:
        return record_ending(writing, message_id, values)


def today() -> date:
    """The current UTC day."""
    return datetime.now(UTC).date()


def percentiles(counts: Sequence[int], quantiles: Sequence[float]) -> list[int | None]:
    """Quantiles (nearest rank) of a bucketed measure: each the upper bound of the bucket
    holding it (the last finite bound for the open bucket); None without samples."""
    cumulative = list(accumulate(counts))
    total = cumulative[-1] if cumulative else 0
    if total == 0:
        return [None] * len(quantiles)
    last = len(LATENCY_BUCKETS_MS) - 1
    return [
        LATENCY_BUCKETS_MS[min(bisect_left(cumulative, max(1, math.ceil(q * total))), last)]
        for q in quantiles
    ]


def percentile(counts: Sequence[int], q: float) -> int | None:
    """One quantile of a bucketed measure (see ``percentiles``)."""
    return percentiles(counts, (q,))[0]


_BUCKETS = len(LATENCY_BUCKETS_MS) + 1


def _row(sums: tuple[Any, ...], group_by: Sequence[str]) -> dict[str, Any]:
    """One report row as the API shows it (UsageRowOut), from ``report``'s tuple.

    Plain unpacking: a month by day and model is hundreds of rows of 70 values.
    """
    width = len(group_by)
    keys = dict(zip(group_by, sums[:width], strict=True))
    exchanges, complete, failed, closed, interrupted, limited, *tokens = sums[width : width + 12]
    # SUM of a BIGINT is a NUMERIC (a Decimal) on PostgreSQL.
    prompt, response, total, titles, estimated, estimated_tokens = (int(v) for v in tokens)
    buckets = width + len(REPORT_SUMS)
    ttft = percentiles(sums[buckets : buckets + _BUCKETS], QUANTILES)
    duration = percentiles(sums[buckets + _BUCKETS :], QUANTILES)
    day = keys.get("day")
    return {
        # SQLite answers a day as its ISO text already.
        "day": day if day is None or isinstance(day, str) else day.isoformat(),
        "model": keys.get("model") or None,
        "user_id": keys.get("user"),
        "exchanges": exchanges,
        "succeeded": complete,
        "failed": exchanges - complete,
        "outcomes": {
            "complete": complete,
            "failed": failed,
            "client_closed": closed,
            "interrupted": interrupted,
            "rate_limited": limited,
        },
        "prompt_tokens": prompt,
        "response_tokens": response,
        "total_tokens": total,
        "title_tokens": titles,
        "estimated": {"exchanges": estimated, "total_tokens": estimated_tokens},
        "ttft_ms": {"p50": ttft[0], "p95": ttft[1]},
        "duration_ms": {"p50": duration[0], "p95": duration[1]},
    }


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
    start = start or end - timedelta(days=USAGE_DEFAULT_DAYS - 1)
    group_by = list(dict.fromkeys(group_by))  # each once, in the order asked
    owner_id = list_scope(actor, owner, "Only an admin can see other users' usage.")
    sums = UsageRepository(db.session).report(start, end, group_by, owner_id)
    return {
        "start": start,
        "end": end,
        "group_by": group_by,
        "rows": [_row(row, group_by) for row in sums],
    }


def rebuild_usage() -> int:
    """Recompute the exchange rollups from the messages and the usage deleted ones carried;
    returns the rollup rows written."""
    with unit_of_work() as session:
        return UsageRepository(session).rebuild_exchanges()
