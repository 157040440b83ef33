"""Reads for exports: pages of plain rows in id order (keyset), never ORM objects."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import Conversation, Feedback, Message
from app.repositories.base import keyset

CONVERSATION_COLUMNS = (
    Conversation.id,
    Conversation.title,
    Conversation.model_type,
    Conversation.meta,
    Conversation.created_at,
    Conversation.updated_at,
    Conversation.last_activity_at,
    Conversation.archived,
    Conversation.pinned,
    Conversation.current_message_id,
)
MESSAGE_COLUMNS = (
    Message.id,
    Message.conversation_id,
    Message.parent_id,
    Message.prompt_content,
    Message.response_content,
    Message.prompt_tokens,
    Message.response_tokens,
    Message.total_tokens,
    Message.is_success,
    Message.status_code,
    Message.outcome,
    Message.reasoning_content,
    Message.model,
    Message.endpoint,
    Message.request_id,
    Message.finish_reason,
    Message.ttft_ms,
    Message.duration_ms,
    Message.tool_calls,
    Message.request_params,
    Message.system_prompt,
    Message.input_items,
    Message.usage_estimated,
    Message.refusal_content,
    Message.cached_tokens,
    Message.reasoning_tokens,
    Message.output_items,
    Message.deleted_at,
    Message.created_at,
    Message.updated_at,
)
FEEDBACK_COLUMNS = (
    Feedback.rating.label("feedback_rating"),
    Feedback.comment.label("feedback_comment"),
    Feedback.created_at.label("feedback_created_at"),
    Feedback.updated_at.label("feedback_updated_at"),
)


class ExportRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def conversations(
        self, owner_id: int | None, *, after: int | None, take: int, only: int | None = None
    ) -> list[dict[str, Any]]:
        """Conversations past id ``after`` (one owner's, or just ``only``), in id order."""
        query = select(*CONVERSATION_COLUMNS).where(*keyset(Conversation.id, after))
        if owner_id is not None:
            query = query.where(Conversation.owner_id == owner_id)
        if only is not None:
            query = query.where(Conversation.id == only)
        rows = self.session.execute(query.order_by(Conversation.id).limit(take)).mappings()
        return [dict(row) for row in rows]

    def messages(
        self, conversation_id: int, *, after: int | None, take: int
    ) -> list[dict[str, Any]]:
        """A conversation's messages past id ``after``, with their feedback, in id order."""
        query = (
            select(*MESSAGE_COLUMNS, *FEEDBACK_COLUMNS)
            .outerjoin(Feedback, Feedback.message_id == Message.id)
            .where(Message.conversation_id == conversation_id, *keyset(Message.id, after))
            .order_by(Message.id)
            .limit(take)
        )
        return [dict(row) for row in self.session.execute(query).mappings()]
