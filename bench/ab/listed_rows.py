"""A: a page of conversations loaded as ORM objects (as before); B: as rows, which the
same response schema reads (the code as it is).
``python -m bench.ab bench/ab/listed_rows.py --target list``.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Integer, bindparam, select

from app.models import Conversation
from app.repositories.conversations import ConversationRepository

NEW = ConversationRepository.list_matching


@functools.cache
def _objects(scoped: bool, paged: bool) -> Any:
    """The statement as it was: built once per shape, loading ORM objects."""
    scope = [Conversation.owner_id == bindparam("owner_id")] if scoped else []
    after = [Conversation.id > bindparam("after")] if paged else []
    return (
        select(Conversation)
        .where(*scope, Conversation.archived == bindparam("archived"), *after)
        .order_by(Conversation.id)
        .offset(bindparam("skip", type_=Integer))
        .limit(bindparam("take", type_=Integer))
    )


def objects(
    self: ConversationRepository,
    *,
    skip: int = 0,
    take: int = 100,
    after: int | None = None,
    metadata: Mapping[str, str] | None = None,
    archived: bool = False,
) -> list[Any]:
    statement = _objects(self.owner_id is not None, after is not None)
    params = {"owner_id": self.owner_id, "archived": archived, "after": after}
    return list(self.session.scalars(statement, {**params, "skip": skip, "take": take}))


def swap_a() -> None:
    ConversationRepository.list_matching = objects  # type: ignore[method-assign]


def swap_b() -> None:
    ConversationRepository.list_matching = NEW  # type: ignore[method-assign]
