"""Exchanges read as the Responses API's responses and items: one owner's, by id, and the
branch that ends at one of them (a ``previous_response_id`` chain), in one statement."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, select, update

from app.models import Conversation, Message
from app.repositories.base import SqlAlchemyRepository


class ResponseRepository(SqlAlchemyRepository[Message]):
    """Exchanges of conversations in scope (``owner_id`` None: everyone's, for admins)."""

    model = Message

    def __init__(self, session: Any, owner_id: int | None = None) -> None:
        super().__init__(session)
        self.owner_id = owner_id

    def _scope(self) -> list[ColumnElement[bool]]:
        if self.owner_id is None:
            return []
        owned = select(Conversation.id).where(Conversation.owner_id == self.owner_id)
        return [Message.conversation_id.in_(owned)]

    def find(self, uid: int) -> Message | None:
        """The exchange with this id, if it is in scope."""
        return self.session.scalar(select(Message).where(Message.id == uid, *self._scope()))

    def branch(self, leaf: int) -> list[Message]:
        """The exchanges from the root of ``leaf``'s tree down to ``leaf``, root first (empty
        if ``leaf`` is not in scope): one statement, a recursive walk up ``parent_id``."""
        table = Message.__table__
        anchor = select(table.c.id, table.c.parent_id).where(table.c.id == leaf)
        path = anchor.cte("path", recursive=True)
        up = path.alias("up")
        path = path.union_all(
            select(table.c.id, table.c.parent_id).where(table.c.id == up.c.parent_id)
        )
        query = (
            select(Message)
            .join(path, path.c.id == Message.id)
            .where(*self._scope())
            .order_by(Message.id)
        )
        rows = list(self.session.scalars(query))
        # Every exchange of a branch is in the leaf's conversation: one owner for all.
        return rows if rows and rows[-1].id == leaf else []

    def set_items(
        self,
        uid: int,
        input_items: Sequence[Any] | None,
        output_items: Sequence[Any] | None,
    ) -> None:
        """Rewrite an exchange's items (a deleted item leaves null at its position)."""
        self.session.execute(
            update(Message)
            .where(Message.id == uid)
            .values(
                input_items=None if input_items is None else list(input_items),
                output_items=None if output_items is None else list(output_items),
            ),
            execution_options={"synchronize_session": False},
        )
