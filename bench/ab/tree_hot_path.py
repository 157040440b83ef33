"""A: a stream's two statements before the tree (7bacb58): the history read of the newest
exchanges by conversation, the plain INSERT; B: the code as it is (the branch read by a
recursive CTE; the INSERT that moves the conversation's current exchange, count and
activity in the same statement). ``python -m bench.ab bench/ab/tree_hot_path.py``.

A runs the old statements on today's schema; it writes no parent and moves no current
exchange, which is exactly the work the tree added to each stream.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Integer, Select, bindparam, insert, select, true

from app.models import CURRENT_EXCHANGE, Conversation, Message, utcnow
from app.repositories.conversations import ConversationRepository, GenerationContext
from app.repositories.messages import INSERTED, MessageRepository

NEW_CONTEXT = ConversationRepository.generation_context
NEW_INSERT = MessageRepository.insert


@functools.cache
def _old_context(scoped: bool) -> Select[Any]:
    conversations, messages = Conversation.__table__.c, Message.__table__.c
    uid = bindparam("uid")
    history = (
        select(messages.id, messages.prompt_content, messages.response_content)
        .where(messages.conversation_id == uid, messages.is_success.is_(True))
        .order_by(messages.id.desc())
        .limit(bindparam("history_limit", type_=Integer))
        .subquery()
    )
    scope = [conversations.owner_id == bindparam("owner_id")] if scoped else []
    return (
        select(
            conversations.model_type,
            conversations.title,
            history.c.prompt_content,
            history.c.response_content,
        )
        .select_from(Conversation.__table__)
        .outerjoin(history, true())
        .where(conversations.id == uid, *scope)
        .order_by(history.c.id.desc())
    )


def old_context(
    self: ConversationRepository, uid: int, history_limit: int, parent_id: Any = CURRENT_EXCHANGE
) -> GenerationContext | None:
    params = {"uid": uid, "history_limit": history_limit, "owner_id": self.owner_id}
    rows = self.session.connection().execute(_old_context(self.owner_id is not None), params)
    rows = rows.all()
    if not rows:
        return None
    exchanges = [(prompt, response) for _, _, prompt, response in rows if prompt is not None]
    return GenerationContext(rows[0][0], rows[0][1] is None, exchanges, None, 0)


@functools.cache
def _old_insert() -> Any:
    table = Message.__table__
    return insert(table).returning(table.c.id)


def old_insert(self: MessageRepository, values: Mapping[str, Any]) -> int:
    now = utcnow()
    params = dict.fromkeys(INSERTED) | {
        "response_content": "",
        "usage_estimated": False,
        "created_at": now,
        "updated_at": now,
        **values,
    }
    return self.session.connection().execute(_old_insert(), params).scalar_one()


def swap_a() -> None:
    ConversationRepository.generation_context = old_context  # type: ignore[method-assign]
    MessageRepository.insert = old_insert  # type: ignore[method-assign]


def swap_b() -> None:
    ConversationRepository.generation_context = NEW_CONTEXT  # type: ignore[method-assign]
    MessageRepository.insert = NEW_INSERT  # type: ignore[method-assign]
