"""Feedback on exchanges: a rating (1 or -1) and an optional comment, per message."""

from __future__ import annotations

from app.errors import NotFound
from app.models import Feedback
from app.repositories.feedback import FeedbackRepository
from app.services.auth import Principal
from app.services.unit_of_work import unit_of_work


def _not_found(conversation_id: int, message_id: int) -> NotFound:
    return NotFound(f"Message {message_id} does not exist in conversation {conversation_id}.")


def set_feedback(
    actor: Principal, conversation_id: int, message_id: int, *, rating: int, comment: str | None
) -> Feedback:
    """Set (or replace) the feedback on a message of one of the actor's conversations."""
    with unit_of_work() as session:
        repository = FeedbackRepository(session, actor.scope)
        if not repository.message_exists(conversation_id, message_id):
            raise _not_found(conversation_id, message_id)
        return repository.put(message_id, rating, comment)


def remove_feedback(actor: Principal, conversation_id: int, message_id: int) -> None:
    """Remove a message's feedback; removing none is fine (DELETE is idempotent)."""
    with unit_of_work() as session:
        repository = FeedbackRepository(session, actor.scope)
        if not repository.message_exists(conversation_id, message_id):
            raise _not_found(conversation_id, message_id)
        repository.delete(message_id)
