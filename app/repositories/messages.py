"""Messages: one prompt and its answer each."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Insert, Text, case, func, insert, literal, select, update
from sqlalchemy.orm import joinedload

from app.models import Message, utcnow
from app.repositories.base import SqlAlchemyRepository, keyset
from app.repositories.functions import ms_between


@dataclass(frozen=True)
class Checkpoint:
    """What one live exchange relayed since its last checkpoint."""

    text: str = ""  # answer text added (the whole text so far when ``whole``)
    reasoning: str = ""  # reasoning added, likewise
    whole: bool = False  # the database's copy is unknown: write the texts whole
    tool_calls: list[dict[str, Any]] | None = None  # all the calls so far, if they changed


class MessageRepository(SqlAlchemyRepository[Message]):
    model = Message

    def insert(self, values: Mapping[str, Any]) -> int:
        """Insert one exchange's row and return its id: a prebuilt Core INSERT ... RETURNING
        on the session's connection, without the ORM's flush and execution layers, which
        cost more CPU than the statement's round trip (bench/ab/)."""
        return self.session.connection().execute(_insert_returning_id(), values).scalar_one()

    def list_for_conversation(
        self, conversation_id: int, *, skip: int = 0, take: int = 100, after: int | None = None
    ) -> list[Message]:
        """One conversation's messages in creation order, with their feedback."""
        query = (
            select(Message)
            .options(joinedload(Message.feedback))
            .where(Message.conversation_id == conversation_id, *keyset(Message.id, after))
            .order_by(Message.id)
            .offset(skip)
            .limit(take)
        )
        return list(self.session.scalars(query))

    def checkpoint(self, progress: Mapping[int, Checkpoint | None], now: datetime) -> int:
        """One statement for all of a worker's live exchanges: a heartbeat each, and what
        ``progress`` has for it (None: nothing): text and reasoning appended (or written
        whole), tool calls replaced. Exchanges already ended are left alone; returns how
        many rows moved."""
        ids = Message.id
        values: dict[str, Any] = {"heartbeat_at": now}
        texts, reasonings, calls = [], [], []
        for uid, point in progress.items():
            if point is None:
                continue
            if point.whole:
                texts.append((ids == uid, literal(point.text, Text)))
                reasonings.append((ids == uid, literal(point.reasoning or None, Text)))
            else:
                if point.text:
                    added = literal(point.text, Text)
                    texts.append((ids == uid, Message.response_content + added))
                if point.reasoning:
                    so_far = func.coalesce(Message.reasoning_content, "")
                    reasonings.append((ids == uid, so_far + literal(point.reasoning, Text)))
            if point.tool_calls is not None:
                calls.append((ids == uid, literal(point.tool_calls, Message.tool_calls.type)))
        if texts:
            values["response_content"] = case(*texts, else_=Message.response_content)
        if reasonings:
            values["reasoning_content"] = case(*reasonings, else_=Message.reasoning_content)
        if calls:
            values["tool_calls"] = case(*calls, else_=Message.tool_calls)
        result = self.session.execute(
            update(Message)
            .where(Message.id.in_(list(progress)), Message.is_success.is_(None))
            .values(**values),
            execution_options={"synchronize_session": False},
        )
        return result.rowcount

    def end(self, uid: int, values: Mapping[str, Any]) -> Message | None:
        """Write an exchange's ending if it is still in progress; None if it is not (ended
        already, by the reaper) or gone."""
        query = (
            update(Message)
            .where(Message.id == uid, Message.is_success.is_(None))
            .values(**values)
            .returning(Message)
            .execution_options(synchronize_session=False)
        )
        return self.session.scalars(query).one_or_none()

    def reap_stale(self, cutoff: datetime, values: Mapping[str, Any]) -> list[tuple[int, str]]:
        """End every exchange in progress whose heartbeat is older than ``cutoff`` with
        ``values``; the text stays that of its last checkpoint. Returns their (id, endpoint)."""
        last_heard = func.coalesce(Message.heartbeat_at, Message.updated_at)
        result = self.session.execute(
            update(Message)
            # A row without a heartbeat was written by a worker of an earlier release (a
            # rolling deploy): its last update stands in for one.
            .where(
                Message.is_success.is_(None),
                last_heard < cutoff,
            )
            .values(
                **values,
                # To the worker's last sign of life: as close as anyone can tell.
                duration_ms=ms_between(Message.created_at, last_heard),
                updated_at=utcnow(),
            )
            .returning(Message.id, func.coalesce(Message.endpoint, "")),
            execution_options={"synchronize_session": False},
        )
        return [(uid, endpoint) for uid, endpoint in result]


def estimated_usage(chars_per_token: int) -> dict[str, Any]:
    """SET clauses that charge an exchange ended without its worker: the prompt's estimate
    written at its start, and its answer's and reasoning's characters / ``chars_per_token``
    (rounded up), marked estimated."""
    received = func.length(Message.response_content) + func.length(
        func.coalesce(Message.reasoning_content, "")
    )
    response = (received + (chars_per_token - 1)) // chars_per_token
    return {
        "response_tokens": response,
        "total_tokens": func.coalesce(Message.prompt_tokens, 0) + response,
        "usage_estimated": True,
    }


@functools.cache
def _insert_returning_id() -> Insert:
    table = Message.__table__
    return insert(table).returning(table.c.id)
