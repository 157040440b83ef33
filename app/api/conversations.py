"""/conversations: create, list, read, update, delete."""

from __future__ import annotations

from typing import Any

from flask import url_for
from flask.views import MethodView
from flask_smorest import Blueprint

from app.models import Conversation
from app.schemas import ConversationCreate, ConversationOut, ConversationUpdate, PageArgs
from app.services import conversations as service

blp = Blueprint("conversations", __name__, url_prefix="/conversations", description="Conversations")


@blp.route("")
class Conversations(MethodView):
    @blp.arguments(PageArgs, location="query")
    @blp.response(200, ConversationOut(many=True))
    def get(self, page: dict[str, int]) -> list[Conversation]:
        """List conversations, oldest first."""
        return service.list_conversations(**page)

    @blp.arguments(ConversationCreate)
    @blp.response(201, ConversationOut, headers={"Location": {"schema": {"type": "string"}}})
    def post(self, body: dict[str, Any]) -> tuple[Conversation, dict[str, str]]:
        """Create a conversation."""
        conversation = service.create_conversation(**body)
        location = url_for("conversations.ConversationById", conversation_id=conversation.id)
        return conversation, {"Location": location}


@blp.route("/<id:conversation_id>")
class ConversationById(MethodView):
    @blp.response(200, ConversationOut)
    def get(self, conversation_id: int) -> Conversation:
        """Read a conversation."""
        return service.get_conversation(conversation_id)

    @blp.arguments(ConversationUpdate)
    @blp.response(202, ConversationOut)
    def put(self, body: dict[str, Any], conversation_id: int) -> Conversation:
        """Replace a conversation's title and model."""
        return service.update_conversation(conversation_id, **body)

    @blp.response(204)
    def delete(self, conversation_id: int) -> None:
        """Delete a conversation and its messages."""
        service.delete_conversation(conversation_id)
