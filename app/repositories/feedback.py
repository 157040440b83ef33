"""Data access for feedback: one rating per message."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.models import Conversation, Feedback, Message, utcnow


class FeedbackRepository:
    """Feedback rows, reached through messages of conversations in scope."""

    def __init__(self, session: Session, owner_id: int | None = None) -> None:
        self.session = session
        self.owner_id = owner_id

    def message_exists(self, conversation_id: int, message_id: int) -> bool:
        """Whether the message belongs to the conversation, the conversation is in scope and
        the message is not a tombstone. Its row stays share-locked until the transaction
        ends: a delete that would make it a tombstone waits, then deletes what was written."""
        query = (
            select(Message.id)
            .join(Conversation, Conversation.id == Message.conversation_id)
            .where(
                Message.id == message_id,
                Message.conversation_id == conversation_id,
                Message.deleted_at.is_(None),
                *([] if self.owner_id is None else [Conversation.owner_id == self.owner_id]),
            )
            .with_for_update(read=True, of=Message)
        )
        return self.session.scalar(query) is not None

    def put(self, message_id: int, rating: int, comment: str | None) -> Feedback:
        """Insert or replace the message's feedback in one statement (an upsert)."""
        dialect = self.session.get_bind().dialect.name
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        now = utcnow()
        statement = insert(Feedback).values(
            message_id=message_id, rating=rating, comment=comment, created_at=now, updated_at=now
        )
        statement = statement.on_conflict_do_update(
            index_elements=[Feedback.message_id],
            set_={
                "rating": statement.excluded.rating,
                "comment": statement.excluded.comment,
                "updated_at": statement.excluded.updated_at,
            },
        ).returning(Feedback)
        options = {"populate_existing": True}
        return self.session.scalars(statement, execution_options=options).one()

    def delete(self, message_id: int) -> bool:
        """Delete the message's feedback; False if it had none."""
        result = self.session.execute(
            delete(Feedback).where(Feedback.message_id == message_id),
            execution_options={"synchronize_session": False},
        )
        return bool(result.rowcount)
