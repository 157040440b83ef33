"""Which conversations have expired: the retention rules as SQL, and a purge's claim on one."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, false, or_, select
from sqlalchemy.orm import Session

from app.models import Conversation, Message, User

# The rule that expired a conversation (a metric's label and the CLI's words).
EXPIRES_AT = "expires_at"
TEMPORARY = "temporary"
POLICY = "policy"
RULES = (EXPIRES_AT, TEMPORARY, POLICY)


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
    scan walks oldest first (an index of its own)."""

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

    def candidates(self, take: int, exclude: set[int]) -> list[Expired]:
        """Up to ``take`` expired conversations not in ``exclude``, each rule's oldest
        first (read without a lock: ``claim`` takes each one's)."""
        found: list[Expired] = []
        for rule in self.rules():
            if len(found) >= take:
                break
            query = (
                select(Conversation.id, Conversation.owner_id, Conversation.message_count)
                .where(rule.where)
                .order_by(rule.oldest_first, Conversation.id)
                .limit(take - len(found))
            )
            if exclude:
                query = query.where(Conversation.id.not_in(exclude))
            found.extend(Expired(*row, rule.name) for row in self.session.execute(query))
        return found

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

    def claim(self, conversation_id: int) -> bool:
        """Lock the conversation's row if it is still expired and no one else holds it
        (PostgreSQL: SKIP LOCKED, so purges on other workers never wait on each other or
        on a request writing to it); False otherwise. SQLite's write transaction holds the
        whole database already."""
        query = (
            select(Conversation.id)
            .where(Conversation.id == conversation_id, or_(*(r.where for r in self.rules())))
            .with_for_update(skip_locked=True, of=Conversation)
        )
        return self.session.execute(query).first() is not None
