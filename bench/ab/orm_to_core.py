"""A: the statements of a stream as they were at 7703c35 (each built per call, or run
through the ORM's session.execute/flush); B: the code as it is (prebuilt Core statements
run on the session's connection). /v1's thread lookup is in A as an ORM load.
Measured with ``python -m bench.ab bench/ab/orm_to_core.py``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, true

from app.models import Conversation, Message, utcnow
from app.repositories import usage
from app.repositories.base import SqlAlchemyRepository
from app.repositories.conversations import ConversationRepository, GenerationContext
from app.repositories.messages import MessageRepository
from app.repositories.threads import Thread, ThreadRepository

NEW = (
    ConversationRepository.generation_context,
    MessageRepository.insert,
    usage.UsageRepository.end_and_fold,
    ThreadRepository.find,
)


def generation_context(
    self: ConversationRepository, uid: int, history_limit: int, parent_id: int | None = -1
) -> GenerationContext | None:
    history = (
        select(Message.id, Message.prompt_content, Message.response_content)
        .where(Message.conversation_id == uid, Message.is_success.is_(True))
        .order_by(Message.id.desc())
        .limit(history_limit)
        .subquery()
    )
    query = (
        select(
            Conversation.model_type,
            Conversation.title,
            history.c.prompt_content,
            history.c.response_content,
        )
        .outerjoin(history, true())
        .where(Conversation.id == uid, *self._scope())
        .order_by(history.c.id.desc())
    )
    rows = self.session.execute(query).all()
    if not rows:
        return None
    exchanges = [(prompt, response) for _, _, prompt, response in rows if prompt is not None]
    return GenerationContext(rows[0][0], rows[0][1] is None, exchanges, None, 0)


def insert(self: MessageRepository, values: dict[str, Any]) -> int:
    return self.create(Message(**values)).id


_ORM_STATEMENTS: dict[int, Any] = {}


def end_and_fold(
    self: usage.UsageRepository, message_id: int, values: dict[str, Any]
) -> Message | None:
    params = {**values, "updated_at": utcnow(), "uid": message_id}
    core = usage._end_and_fold(tuple(sorted(params.keys() - {"uid"})))
    # Built once per shape, as 7703c35 did (the ORM wrapper was part of the cached statement).
    statement = _ORM_STATEMENTS.get(id(core))
    if statement is None:
        statement = _ORM_STATEMENTS[id(core)] = select(Message).from_statement(core)
    return self.session.scalars(statement, params).one_or_none()


def find(self: ThreadRepository, uid: int, fingerprint: str | None = None) -> Thread | None:
    # The base class's get, which built its statement per call (7703c35).
    conversation = SqlAlchemyRepository.get(self, uid)
    if conversation is None:
        return None
    return Thread(conversation.id, conversation.title is None, conversation.current_message_id)


def _install(context: Any, insert_: Any, fold: Any, find_: Any) -> None:
    ConversationRepository.generation_context = context
    MessageRepository.insert = insert_
    usage.UsageRepository.end_and_fold = fold
    ThreadRepository.find = find_


def swap_a() -> None:
    _install(generation_context, insert, end_and_fold, find)


def swap_b() -> None:
    _install(*NEW)
