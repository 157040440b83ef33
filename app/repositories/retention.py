"""Which conversations have expired: the retention rules as SQL, and a purge's claim on one."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, false, literal, select, tuple_
from sqlalchemy.orm import Session

from app.models import Conversation, Message, User

# The rule that expired a conversation (a metric's label and the CLI's words).
EXPIRES_AT = "expires_at"
TEMPORARY = "temporary"
POLICY = "policy"
RULES = (EXPIRES_AT, TEMPORARY, POLICY)

# Where a purge's walk of one rule left off: the rule's column and the id of the last row.
Position = tuple[datetime, int]


@dataclass(frozen=True)
class RetentionPolicy:
    """The service-wide settings: RETENTION_DAYS (None: keep) and TEMPORARY_RETENTION_HOURS."""

    retention_days: int | None
    temporary_hours: int


@dataclass(frozen=True)
class Expired:
    """A conversation a purge deletes (or, in a dry run, would), and why."""

    conversation_id: int
    owner_id: int
    exchanges: int
    rule: str


@dataclass(frozen=True)
class Rule:
    """One way to expire: its name, which conversations it expires, and the column its
    walk follows oldest first (with the id: an index of its own)."""

    name: str
    where: ColumnElement[bool]
    oldest_first: Any


class RetentionRepository:
    """Expired conversations as of ``now``, under ``policy``.

    A conversation expires at its ``expires_at`` when it has one, pinned or not; else, if
    temporary, TEMPORARY_RETENTION_HOURS after its last activity; else, unless pinned, its
    owner's ``retention_days`` (or RETENTION_DAYS) after its last activity. The rules are
    exclusive: each expired conversation matches exactly one.
    """

    def __init__(self, session: Session, policy: RetentionPolicy, now: datetime) -> None:
        self.session = session
        self.policy = policy
        self.now = now
        self._rules: list[Rule] | None = None

    def rules(self) -> list[Rule]:
        """The rules in force: one per distinct per-user retention, one for RETENTION_DAYS
        (if set) over the users without their own, and the two per-conversation ones."""
        if self._rules is not None:
            return self._rules
        c = Conversation
        rules = [
            Rule(EXPIRES_AT, c.expires_at <= self.now, c.expires_at),
            Rule(
                TEMPORARY,
                and_(
                    c.expires_at.is_(None),
                    c.temporary,
                    c.last_activity_at <= self.now - timedelta(hours=self.policy.temporary_hours),
                ),
                c.last_activity_at,
            ),
        ]
        by_policy = and_(c.expires_at.is_(None), c.temporary == false(), c.pinned == false())
        overrides = self.session.scalars(
            select(User.retention_days).where(User.retention_days.is_not(None)).distinct()
        ).all()
        groups = [(days, User.retention_days == days) for days in sorted(overrides)]
        if self.policy.retention_days is not None:
            groups.append((self.policy.retention_days, User.retention_days.is_(None)))
        for days, whose in groups:
            owners = select(User.id).where(whose)
            cutoff = self.now - timedelta(days=days)
            where = and_(by_policy, c.owner_id.in_(owners), c.last_activity_at <= cutoff)
            rules.append(Rule(POLICY, where, c.last_activity_at))
        self._rules = rules
        return rules

    def everything_expired(self) -> list[tuple[Expired, bool]]:
        """Every expired conversation, by id, and whether one of its exchanges is in
        progress (a purge would skip it): what a dry run reports."""
        busy = exists().where(
            Message.conversation_id == Conversation.id, Message.is_success.is_(None)
        )
        found: list[tuple[Expired, bool]] = []
        for rule in self.rules():
            query = select(
                Conversation.id,
                Conversation.owner_id,
                Conversation.message_count,
                busy.label("busy"),
            ).where(rule.where)
            found.extend(
                (Expired(uid, owner, count, rule.name), bool(in_progress))
                for uid, owner, count, in_progress in self.session.execute(query)
            )
        return sorted(found, key=lambda pair: pair[0].conversation_id)

    def claim_next(self, rule: Rule, after: Position | None) -> tuple[Expired, Position] | None:
        """The oldest conversation ``rule`` expires past ``after`` (where the walk left off),
        locked until the transaction ends, and its position; None when there is none left.

        PostgreSQL: ``FOR UPDATE SKIP LOCKED`` passes over rows another purge or a request
        holds, so purges on other workers and instances never wait on each other or take
        the same conversation, and the lock re-checks the rule on the row as it now is (one
        active again is passed over). SQLite's write transaction holds the whole database.
        """
        c = Conversation
        position = (rule.oldest_first, c.id)
        query = select(c.id, c.owner_id, c.message_count, rule.oldest_first).where(rule.where)
        if after is not None:
            bound = (literal(after[0], rule.oldest_first.type), literal(after[1], c.id.type))
            query = query.where(tuple_(*position) > tuple_(*bound))
        query = query.order_by(*position).limit(1).with_for_update(skip_locked=True, of=c)
        row = self.session.execute(query).one_or_none()
        if row is None:
            return None
        uid, owner_id, exchanges, at = row
        return Expired(uid, owner_id, exchanges, rule.name), (at, uid)
