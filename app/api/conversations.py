"""/conversations: create, list, read, update (whole or partial), delete (one, or all)."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from flask import url_for
from flask.views import MethodView
from sqlalchemy.engine import Row

from app.api import Blueprint
from app.api.auth import current_principal
from app.api.openapi import (
    CONVERSATION_NOT_FOUND,
    EXCHANGE_IN_PROGRESS,
    URL_TOO_LONG,
    ErrorDoc,
    documents,
)
from app.api.paging import LINK_HEADER, cursor_link, next_link
from app.models import Conversation
from app.schemas.conversations import (
    ConversationCreate,
    ConversationListArgs,
    ConversationOut,
    ConversationPatch,
    ConversationUpdate,
    DeleteAllArgs,
    DeletedAllOut,
    recent_cursor,
)
from app.services import conversations as service
from app.services import erasure

blp = Blueprint("conversations", __name__, url_prefix="/conversations", description="Conversations")

OTHERS_FORBIDDEN = ErrorDoc(
    HTTPStatus.FORBIDDEN, "Only an admin can list other users' conversations (owner)."
)


@blp.route("")
class Conversations(MethodView):
    @blp.arguments(ConversationListArgs, location="query")
    @blp.response(HTTPStatus.OK, ConversationOut(many=True), headers=LINK_HEADER)
    @documents(blp, OTHERS_FORBIDDEN, URL_TOO_LONG)
    def get(self, args: dict[str, Any]) -> tuple[list[Row[Any]], dict[str, str]]:
        """List your conversations (admins: anyone's), oldest first, or with order=recent
        pinned first, then most recently active first; archived ones only with archived=true.

        Filter by metadata with metadata[key]=value (every pair must match).
        """
        page = service.list_conversations(current_principal(), **args)
        if args["order"] == "recent":
            return page.items, cursor_link(page, _recent_cursor, ConversationListArgs)
        return page.items, next_link(page, ConversationListArgs)

    @blp.arguments(ConversationCreate, required=False)
    @blp.response(
        HTTPStatus.CREATED, ConversationOut, headers={"Location": {"schema": {"type": "string"}}}
    )
    def post(self, body: dict[str, Any]) -> tuple[Conversation, dict[str, str]]:
        """Create a conversation."""
        conversation = service.create_conversation(current_principal(), **body)
        location = url_for("conversations.ConversationById", conversation_id=conversation.id)
        return conversation, {"Location": location}

    @blp.arguments(DeleteAllArgs, location="query")
    @blp.response(HTTPStatus.OK, DeletedAllOut)
    @documents(blp, EXCHANGE_IN_PROGRESS)
    def delete(self, _args: dict[str, Any]) -> dict[str, int]:
        """Delete all your conversations (admins too: only their own) and their messages;
        ?all=true confirms it. Take your export (GET /export) first.

        Those that exist when asked go, archived and pinned ones too, each whole or not at
        all. 409 naming an exchange of yours in progress, and nothing is deleted."""
        return {"deleted": erasure.delete_all_conversations(current_principal())}


def _recent_cursor(conversation: Row[Any]) -> str:
    return recent_cursor(conversation.pinned, conversation.last_activity_at, conversation.id)


@blp.route("/<id:conversation_id>")
class ConversationById(MethodView):
    @blp.response(HTTPStatus.OK, ConversationOut)
    @documents(blp, CONVERSATION_NOT_FOUND)
    def get(self, conversation_id: int) -> Conversation:
        """Read a conversation."""
        return service.get_conversation(current_principal(), conversation_id)

    @blp.arguments(ConversationUpdate)
    @blp.response(HTTPStatus.ACCEPTED, ConversationOut)
    @documents(blp, CONVERSATION_NOT_FOUND)
    def put(self, body: dict[str, Any], conversation_id: int) -> Conversation:
        """Replace a conversation's title, model and metadata (omitted: emptied)."""
        return service.update_conversation(current_principal(), conversation_id, **body)

    @blp.arguments(ConversationPatch, required=False)
    @blp.response(HTTPStatus.OK, ConversationOut)
    @documents(blp, CONVERSATION_NOT_FOUND)
    def patch(self, body: dict[str, Any], conversation_id: int) -> Conversation:
        """Change some of a conversation's fields; metadata is merged (null removes a key).

        current_message_id switches branches; archived and pinned file it in the lists."""
        return service.patch_conversation(current_principal(), conversation_id, **body)

    @blp.response(HTTPStatus.NO_CONTENT)
    @documents(blp, CONVERSATION_NOT_FOUND, EXCHANGE_IN_PROGRESS)
    def delete(self, conversation_id: int) -> None:
        """Delete a conversation and its messages."""
        service.delete_conversation(current_principal(), conversation_id)
