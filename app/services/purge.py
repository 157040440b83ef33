"""The purge: expired conversations deleted completely, each in its own transaction.

A pass walks each retention rule's expired conversations oldest first
(app/repositories/retention.py). Each one is claimed and deleted in a transaction of its
own: the claim locks the next expired row with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL (so
purges on any number of workers and instances share the work, never take the same
conversation and never wait on each other), then the conversation delete of the deletion
model removes it (locked, its usage carried, SQLite's full-text index compacted). A crash
leaves no conversation half deleted, and no request waits behind more than one
conversation's delete. A conversation with an exchange in progress is skipped (the delete
refuses it) and left for a later pass.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from flask import current_app

from app.conflicts import ExchangeInProgress
from app.extensions import db
from app.models import utcnow
from app.repositories.deletes import DeleteRepository
from app.repositories.retention import (
    RULES,
    Expired,
    Position,
    RetentionPolicy,
    RetentionRepository,
    Rule,
)
from app.services.unit_of_work import read_only, unit_of_work
from app.web import metrics

log = logging.getLogger(__name__)


@dataclass
class PurgeReport:
    """What a pass deleted (or, in a dry run, would), and what it left and why."""

    dry_run: bool = False
    deleted: list[Expired] = field(default_factory=list)
    in_progress: list[int] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def exchanges(self) -> int:
        return sum(item.exchanges for item in self.deleted)

    def by_rule(self) -> dict[str, int]:
        counts = dict.fromkeys(RULES, 0)
        for item in self.deleted:
            counts[item.rule] += 1
        return counts

    def summary(self) -> str:
        """One line of counts: never a title, a text, or an id."""
        rules = ", ".join(f"{rule} {count}" for rule, count in self.by_rule().items())
        verb = "would delete" if self.dry_run else "deleted"
        return (
            f"purge {verb} {len(self.deleted)} conversation(s) and {self.exchanges} "
            f"exchange(s) ({rules}); skipped {len(self.in_progress)} with an exchange in "
            f"progress; {self.seconds:.2f}s"
        )


def purge_expired(*, dry_run: bool = False) -> PurgeReport:
    """Delete every conversation expired when the pass begins (or, ``dry_run``, only list
    them); logs one line of counts and counts them in the metrics (not for a dry run)."""
    started = time.perf_counter()
    config = current_app.config
    policy = RetentionPolicy(config["RETENTION_DAYS"], config["TEMPORARY_RETENTION_HOURS"])
    now = utcnow()
    report = PurgeReport(dry_run=dry_run)
    if dry_run:
        with read_only() as session:
            for expired, busy in RetentionRepository(session, policy, now).everything_expired():
                if busy:
                    report.in_progress.append(expired.conversation_id)
                else:
                    report.deleted.append(expired)
        report.seconds = time.perf_counter() - started
        return report
    # The scoped session serves every transaction of the pass, so the rules (which read
    # the users' own retention) are read once.
    retention = RetentionRepository(db.session(), policy, now)
    with read_only():
        rules = retention.rules()
    for rule in rules:
        after: Position | None = None
        while (claimed := _purge_next(retention, rule, after)) is not None:
            expired, after, purged = claimed
            if purged:
                report.deleted.append(expired)
            else:
                report.in_progress.append(expired.conversation_id)
    report.seconds = time.perf_counter() - started
    level = logging.INFO if report.deleted or report.in_progress else logging.DEBUG
    log.log(level, report.summary())
    metrics.purge_pass(report.by_rule(), report.exchanges, len(report.in_progress), report.seconds)
    return report


def _purge_next(
    retention: RetentionRepository, rule: Rule, after: Position | None
) -> tuple[Expired, Position, bool] | None:
    """Claim the next conversation ``rule`` expires past ``after`` and delete it, in a
    transaction of its own: the conversation, its position, and whether it was deleted
    (False: one of its exchanges is in progress, and it is left as it was); None when the
    rule has no more."""
    claimed = None
    try:
        with unit_of_work() as session:
            claimed = retention.claim_next(rule, after)
            if claimed is None:
                return None
            DeleteRepository(session).delete_conversation(claimed[0].conversation_id)
    except ExchangeInProgress:
        assert claimed is not None
        return (*claimed, False)
    return (*claimed, True)
