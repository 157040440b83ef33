"""A: an exchange's INSERT without the conversation's row lock (INSERT ... VALUES, then the
conversation's UPDATE, in one statement); B: the code as it is (a CTE locks the row first and
the INSERT selects from it, so that deletes serialise with it).
``python -m bench.ab bench/ab/locked_insert.py``.
"""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import bindparam, insert, select

from app.models import Conversation, Message
from app.repositories import messages
from app.repositories.messages import INSERTED

NEW = messages._insert_returning_id


@functools.cache
def unlocked(dialect: str) -> Any:
    table, conversations = Message.__table__, Conversation.__table__
    values = {name: bindparam(f"v_{name}", type_=table.c[name].type) for name in INSERTED}
    inserted = insert(table).values(values)
    new = inserted.returning(table.c.id, table.c.conversation_id, table.c.created_at).cte("new")
    moved = messages._follow(conversations, new.c.id, new.c.created_at).where(
        conversations.c.id == new.c.conversation_id
    )
    return select(new.c.id).add_cte(moved.cte("moved"))


def swap_a() -> None:
    messages._insert_returning_id = unlocked


def swap_b() -> None:
    messages._insert_returning_id = NEW
