"""The purge: expired conversations deleted completely, each in its own transaction.

A pass reads a batch of candidates (app/repositories/retention.py), then deletes each one
through the conversation delete of the deletion model (locked, its usage carried, SQLite's
full-text index compacted) in a transaction of its own: a crash leaves no conversation half
deleted, and no request waits behind more than one conversation's delete. Before deleting,
a pass claims the row with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so purges on any number
of workers and instances share the work without deleting one twice or waiting on each
other. A conversation with an exchange in progress is skipped (the delete refuses it) and
left for a later pass.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from flask import current_app

from app.conflicts import ExchangeInProgress
from app.extensions import db
from app.models import utcnow
from app.repositories.deletes import DeleteRepository
from app.repositories.retention import (
    RULES,
    Expired,
    RetentionPolicy,
    RetentionRepository,
)
from app.services.unit_of_work import read_only, unit_of_work
from app.web import metrics

log = logging.getLogger(__name__)

# Candidates read per query; each is still deleted in a transaction of its own.
BATCH = 100


@dataclass
class PurgeReport:
    """What a pass deleted (or, in a dry run, would), and what it left and why."""

    dry_run: bool = False
    deleted: list[Expired] = field(default_factory=list)
    in_progress: list[int] = field(default_factory=list)
    # Claimed by another purge, or active again, by the time this pass reached them.
    taken: int = 0
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
            f"progress, {self.taken} taken by another purge or active again; "
            f"{self.seconds:.2f}s"
        )


def retention_policy(config: Any) -> RetentionPolicy:
    return RetentionPolicy(config["RETENTION_DAYS"], config["TEMPORARY_RETENTION_HOURS"])


def purge_expired(*, dry_run: bool = False, batch: int = BATCH) -> PurgeReport:
    """Delete every conversation expired when the pass begins (or, ``dry_run``, only list
    them); logs one line of counts and counts them in the metrics (not for a dry run)."""
    started = time.perf_counter()
    policy, now = retention_policy(current_app.config), utcnow()
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
    # Left behind by this pass (in progress, or someone else's): never read again by it.
    passed: set[int] = set()
    while True:
        with read_only():
            candidates = retention.candidates(batch, passed)
        if not candidates:
            break
        for expired in candidates:
            uid = expired.conversation_id
            try:
                purged = _purge_one(retention, uid)
            except ExchangeInProgress:
                report.in_progress.append(uid)
                passed.add(uid)
                continue
            if purged:
                report.deleted.append(expired)
            else:
                report.taken += 1
                passed.add(uid)
    report.seconds = time.perf_counter() - started
    level = logging.INFO if report.deleted or report.in_progress else logging.DEBUG
    log.log(level, report.summary())
    metrics.purge_pass(
        report.by_rule(), report.exchanges, len(report.in_progress), report.taken, report.seconds
    )
    return report


def _purge_one(retention: RetentionRepository, conversation_id: int) -> bool:
    """Delete one expired conversation in a transaction of its own; False if another purge
    holds it or it is no longer expired. ExchangeInProgress (rolled back) if one of its
    exchanges is in progress."""
    with unit_of_work() as session:
        if not retention.claim(conversation_id):
            return False
        return DeleteRepository(session).delete_conversation(conversation_id)
