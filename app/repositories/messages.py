"""Data access for exchanges: insert, list a branch, delete a subtree, checkpoint, end, reap."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    CTE,
    BigInteger,
    ColumnElement,
    Executable,
    Integer,
    Select,
    Text,
    bindparam,
    case,
    func,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import joinedload

from app.conflicts import ConversationGone, ParentGone
from app.models import Conversation, Message, utcnow
from app.repositories.base import SqlAlchemyRepository
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
        """Insert one exchange's row, make it its conversation's current exchange (count and
        activity move too) and return its id: prebuilt Core on the session's connection,
        without the ORM's flush and execution layers, which cost more CPU than the
        statement's round trip. One statement on PostgreSQL, two on SQLite.
        ParentGone or ConversationGone if a delete took either away since it was read."""
        now = utcnow()
        params = dict.fromkeys(INSERTED) | {
            "response_content": "",
            "usage_estimated": False,
            "created_at": now,
            "updated_at": now,
            **values,
        }
        connection = self.session.connection()
        dialect = connection.dialect.name
        bound = {f"v_{name}": value for name, value in params.items()}
        try:
            uid = connection.execute(_insert_returning_id(dialect), bound).scalar_one_or_none()
        except IntegrityError as error:
            raise self._gone(error, params["conversation_id"], params["parent_id"]) from error
        if uid is None:  # PostgreSQL: no conversation row was left to lock
            raise ConversationGone(params["conversation_id"])
        if dialect != "postgresql":
            follow = {
                "message_id": uid,
                "at": params["created_at"],
                "cid": params["conversation_id"],
            }
            connection.execute(_follow_inserted(), follow)
        return uid

    def _gone(
        self, error: IntegrityError, conversation_id: int, parent_id: int | None
    ) -> Exception:
        """What a failed INSERT's foreign key says was deleted under it (PostgreSQL names
        the constraint; SQLite does not, and its transaction can still read); else
        ``error`` itself."""
        constraint = getattr(getattr(error.orig, "diag", None), "constraint_name", None)
        if constraint == PARENT_FOREIGN_KEY and parent_id is not None:
            return ParentGone(parent_id)
        if constraint == CONVERSATION_FOREIGN_KEY:
            return ConversationGone(conversation_id)
        if constraint is None and "FOREIGN KEY" in str(error.orig):
            there = select(Conversation.id).where(Conversation.id == conversation_id)
            if self.session.scalar(there) is None:
                return ConversationGone(conversation_id)
            if parent_id is not None:
                return ParentGone(parent_id)
        return error

    def first_prompt(self, conversation_id: int) -> str | None:
        """The prompt of a conversation's first exchange that is not a tombstone, or None."""
        query = (
            select(Message.prompt_content)
            .where(Message.conversation_id == conversation_id, Message.deleted_at.is_(None))
            .order_by(Message.id)
            .limit(1)
        )
        return self.session.scalar(query)

    def list_for_conversation(
        self,
        conversation_id: int,
        *,
        skip: int = 0,
        take: int = 100,
        after: int | None = None,
        leaf: int | None = None,
    ) -> list[Message]:
        """One conversation's messages in creation order, with their feedback and their
        ``siblings`` (the other exchanges after the same parent); only the branch from the
        root to exchange ``leaf`` if given (a parent is older than its children: root first).
        """
        params = {"cid": conversation_id, "after": after, "leaf": leaf, "skip": skip, "take": take}
        query = _listed(after is not None, leaf is not None)
        messages = []
        for message, count in self.session.execute(query, params):
            message.siblings = count
            messages.append(message)
        return messages

    def in_conversation(
        self,
        conversation_id: int,
        message_id: int,
        owner_id: int | None = None,
        *,
        live_only: bool = False,
    ) -> tuple[str, int | None] | None:
        """Exchange ``message_id``'s (prompt, parent id) if it is one of the conversation's
        (and the conversation ``owner_id``'s, if given; and not a tombstone if
        ``live_only``), else None."""
        query = select(Message.prompt_content, Message.parent_id).where(
            Message.id == message_id, Message.conversation_id == conversation_id
        )
        if live_only:
            query = query.where(Message.deleted_at.is_(None))
        if owner_id is not None:
            owned = select(Conversation.id).where(
                Conversation.id == conversation_id, Conversation.owner_id == owner_id
            )
            query = query.where(Message.conversation_id.in_(owned))
        row = self.session.execute(query).one_or_none()
        return None if row is None else (row[0], row[1])

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

    def rewrite_ending(self, uid: int, values: Mapping[str, Any]) -> Message | None:
        """Write an ending over an earlier one (the reaper's, while the owner's save waited
        out an outage); None if the row is gone. The row is locked first, as deletes read
        it: on an exchange whose content was deleted since (a tombstone, or an item: a null
        slot), only the accounting is rewritten, so nothing deleted comes back."""
        query = select(Message.deleted_at, Message.input_items, Message.output_items)
        row = self.session.execute(query.where(Message.id == uid).with_for_update()).one_or_none()
        if row is None:
            return None
        if row.deleted_at is not None or any(
            None in (items or ()) for items in (row.input_items, row.output_items)
        ):
            values = {k: v for k, v in values.items() if k not in ERASED_COLUMNS}
        return self.update(uid, values)

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
            # A row without a heartbeat comes from a worker of an earlier release (a rolling
            # deploy): its last update stands in for one.
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


@functools.cache
def _listed(with_after: bool, with_leaf: bool) -> Select[Any]:
    """``list_for_conversation``'s statement, built once per shape: the recursive CTE, the
    sibling counts and the joined feedback are costly to build per call. Bind parameters
    cid, skip, take, and after and leaf when used."""
    siblings = (children_count(Message.parent_id, Message.conversation_id) - 1).label("siblings")
    where = [Message.conversation_id == bindparam("cid")]
    if with_after:
        where.append(Message.id > bindparam("after"))
    if with_leaf:
        table = Message.__table__.c
        branch = ancestors(
            (table.id == bindparam("leaf", type_=BigInteger))
            & (table.conversation_id == bindparam("cid"))
        )
        where.append(Message.id.in_(select(branch.c.id)))
    return (
        select(Message, siblings)
        .options(joinedload(Message.feedback))
        .where(*where)
        .order_by(Message.id)
        .offset(bindparam("skip", type_=BigInteger))
        .limit(bindparam("take", type_=Integer))
    )


def ancestors(anchor: ColumnElement[bool]) -> CTE:
    """A recursive CTE of the exchange ``anchor`` selects in ``messages`` and every exchange
    above it, to the root (columns id, parent_id). One statement on both engines."""
    messages = Message.__table__
    path = select(messages.c.id, messages.c.parent_id).where(anchor).cte("path", recursive=True)
    up = path.alias("up")
    step = select(messages.c.id, messages.c.parent_id).where(messages.c.id == up.c.parent_id)
    return path.union_all(step)


def descendants(anchor: ColumnElement[bool]) -> CTE:
    """A recursive CTE of the exchange ``anchor`` selects in ``messages`` and every exchange
    below it (column id): a subtree, each level one seek per exchange on
    ix_messages_parent_id_conversation_id."""
    messages = Message.__table__
    tree = select(messages.c.id).where(anchor).cte("subtree", recursive=True)
    down = tree.alias("down")
    return tree.union_all(select(messages.c.id).where(messages.c.parent_id == down.c.id))


def children_count(parent_id: ColumnElement[Any], conversation_id: ColumnElement[Any]) -> Any:
    """How many exchanges follow ``parent_id`` (NULL: the conversation's first exchanges):
    one seek on ix_messages_parent_id_conversation_id either way."""
    other = Message.__table__.alias("sibling")
    count = select(func.count()).select_from(other)
    return case(
        (
            parent_id.is_(None),
            count.where(
                other.c.parent_id.is_(None), other.c.conversation_id == conversation_id
            ).scalar_subquery(),
        ),
        else_=count.where(other.c.parent_id == parent_id).scalar_subquery(),
    )


def tombstone(model: str | None) -> dict[str, Any]:
    """What a deleted response keeps of its content: nothing but its model (its request's
    parameters, instructions and tool descriptions are the client's text)."""
    return {
        "prompt_content": "",
        "response_content": "",
        "reasoning_content": None,
        "refusal_content": None,
        "tool_calls": None,
        "system_prompt": None,
        "input_items": None,
        "output_items": [],
        "history_fingerprint": None,
        "request_params": None if model is None else {"model": model},
    }


# The columns a tombstone erases: what the client sent, the model answered, or is derived
# from both (the fingerprint of the history it ended).
ERASED_COLUMNS = frozenset(tombstone(None))

# The foreign keys a delete can break under a new exchange's INSERT (the naming convention's).
PARENT_FOREIGN_KEY = "fk_messages_parent_id_messages"
CONVERSATION_FOREIGN_KEY = "fk_messages_conversation_id_conversations"

# What an exchange's INSERT may set; Python-side defaults are bound explicitly, as a
# data-modifying CTE would not apply them.
INSERTED = (
    "conversation_id",
    "parent_id",
    "prompt_content",
    "response_content",
    "model",
    "endpoint",
    "request_id",
    "heartbeat_at",
    "request_params",
    "system_prompt",
    "input_items",
    "prompt_tokens",
    "usage_estimated",
    "created_at",
    "updated_at",
    "input_items",  # the Responses API's (app/exchange/responses_items.py)
)


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
def _insert_returning_id(dialect: str) -> Executable:
    """A new exchange's INSERT, returning its id; on PostgreSQL, with its conversation's
    UPDATE in the same statement (data-modifying CTEs): the exchange becomes current, the
    count and the activity move. Bind parameters: INSERTED, each prefixed v_.

    On PostgreSQL the statement locks the conversation's row before it inserts, as every
    delete does first (app/repositories/deletes.py): a delete never runs between this
    INSERT's foreign-key checks and its commit. No row to lock (the conversation is gone):
    nothing is inserted and nothing returned. SQLite's write transaction serialises both."""
    table, conversations = Message.__table__, Conversation.__table__
    # Not named after the columns: such names are reserved for the VALUES clause.
    values = {name: bindparam(f"v_{name}", type_=table.c[name].type) for name in INSERTED}
    if dialect != "postgresql":
        return insert(table).values(values).returning(table.c.id)
    locked = (
        select(conversations.c.id)
        .where(conversations.c.id == values["conversation_id"])
        .with_for_update(key_share=True)  # FOR NO KEY UPDATE: the lock its UPDATE takes
        .cte("locked")
    )
    inserted = insert(table).from_select(list(values), select(*values.values()).select_from(locked))
    new = inserted.returning(table.c.id, table.c.conversation_id, table.c.created_at).cte("new")
    moved = _follow(conversations, new.c.id, new.c.created_at).where(
        conversations.c.id == new.c.conversation_id
    )
    return select(new.c.id).add_cte(moved.cte("moved"))


def _follow(conversations: Any, message_id: Any, at: Any) -> Any:
    """The UPDATE that makes ``message_id`` its conversation's current exchange."""
    return update(conversations).values(
        current_message_id=message_id,
        message_count=conversations.c.message_count + 1,
        last_activity_at=at,
        updated_at=at,
    )


@functools.cache
def _follow_inserted() -> Executable:
    """SQLite's second statement of an exchange's INSERT (``_insert_returning_id``)."""
    conversations = Conversation.__table__
    return _follow(
        conversations, bindparam("message_id", type_=conversations.c.id.type), bindparam("at")
    ).where(conversations.c.id == bindparam("cid", type_=conversations.c.id.type))
