"""What erasing a person reads and deletes beyond their conversations: those conversations'
ids a page at a time, their keys, and their user row."""

from __future__ import annotations

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from app.models import ApiKey, Conversation, Message, User
from app.repositories.base import keyset
from app.repositories.deletes import DeleteRepository


class PersonRepository:
    """One user's rows, by id."""

    def __init__(self, session: Session, user_id: int) -> None:
        self.session = session
        self.user_id = user_id

    def conversation_ids(self, *, after: int | None, up_to: int | None, take: int) -> list[int]:
        """Ids of the user's conversations past ``after`` (at most ``up_to``), in id order."""
        query = select(Conversation.id).where(
            Conversation.owner_id == self.user_id, *keyset(Conversation.id, after)
        )
        if up_to is not None:
            query = query.where(Conversation.id <= up_to)
        return list(self.session.scalars(query.order_by(Conversation.id).limit(take)))

    def newest_conversation_id(self) -> int | None:
        """The id of the user's newest conversation (None: they have none)."""
        query = select(func.max(Conversation.id)).where(Conversation.owner_id == self.user_id)
        return self.session.scalar(query)

    def refuse_in_progress(self) -> None:
        """ExchangeInProgress, naming the oldest, if an exchange of the user's is in progress."""
        owned = select(Conversation.id).where(Conversation.owner_id == self.user_id)
        DeleteRepository(self.session).refuse_in_progress(Message.conversation_id.in_(owned))

    def lock(self) -> bool:
        """Lock the user's row until the transaction ends; False if it is gone."""
        query = select(User.id).where(User.id == self.user_id).with_for_update()
        return self.session.scalar(query) is not None

    def key_count(self) -> int:
        query = select(func.count()).select_from(ApiKey).where(ApiKey.user_id == self.user_id)
        return int(self.session.scalar(query) or 0)

    def delete(self) -> None:
        """Delete the user's keys, then their row; the database refuses while they still own
        a conversation (no cascade there, on purpose)."""
        keys, users = ApiKey.__table__, User.__table__
        self.session.execute(delete(keys).where(keys.c.user_id == self.user_id))
        self.session.execute(delete(users).where(users.c.id == self.user_id))
