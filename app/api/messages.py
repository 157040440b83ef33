"""/conversations/<id>/messages: a conversation's exchanges, and new ones."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from flask import Response
from flask.views import MethodView

from app.api import Blueprint
from app.api.auth import current_principal
from app.api.openapi import (
    CONVERSATION_NOT_FOUND,
    EXCHANGE_IN_PROGRESS,
    GENERATION_ERRORS,
    PARENT_DELETED,
    ErrorDoc,
    documents,
)
from app.api.paging import LINK_HEADER, next_link
from app.exchange.wire import sse_response
from app.models import CURRENT_EXCHANGE, Message
from app.schemas.messages import (
    MessageCreate,
    MessageListArgs,
    MessageOut,
    RegenerateIn,
    SseEventOut,
)
from app.services import conversations as conversations_service
from app.services import generation

blp = Blueprint("messages", __name__, url_prefix="/conversations", description="Messages")

SSE_DESCRIPTION = (
    "With stream: true, Server-Sent Events: `reasoning` events `{text}` (what a reasoning "
    "model thinks, if it says), `delta` events `{text}`, then `done` "
    "`{message}` (the saved MessageOut) or `error` `{code, message}`; the schema is that "
    "of one event."
)


NOT_ITS_EXCHANGE = ErrorDoc(
    HTTPStatus.UNPROCESSABLE_ENTITY, "parent_id, leaf or the exchange is not one of its exchanges."
)
MESSAGE_NOT_FOUND = ErrorDoc(
    HTTPStatus.NOT_FOUND,
    "No such conversation, no such message in it, or it is somebody else's (not revealed).",
)


@blp.route("/<id:conversation_id>/messages")
class Messages(MethodView):
    @blp.arguments(MessageListArgs, location="query")
    @blp.response(HTTPStatus.OK, MessageOut(many=True), headers=LINK_HEADER)
    @documents(blp, CONVERSATION_NOT_FOUND, NOT_ITS_EXCHANGE)
    def get(
        self, args: dict[str, Any], conversation_id: int
    ) -> tuple[list[Message], dict[str, str]]:
        """List a conversation's current branch, root first (?leaf=: another branch;
        ?branch=all: the whole tree, in creation order, to draw it by parent_id)."""
        page = conversations_service.list_messages(current_principal(), conversation_id, **args)
        return page.items, next_link(page, MessageListArgs)

    @blp.arguments(MessageCreate)
    @blp.response(HTTPStatus.CREATED, MessageOut)
    @blp.alt_response(
        HTTPStatus.OK,
        success=True,
        schema=SseEventOut,
        content_type="text/event-stream",
        description=SSE_DESCRIPTION,
    )
    @documents(blp, CONVERSATION_NOT_FOUND, NOT_ITS_EXCHANGE, PARENT_DELETED, *GENERATION_ERRORS)
    def post(self, body: dict[str, Any], conversation_id: int) -> Message | Response:
        """Send a prompt after the current exchange, or after parent_id (an edit); it
        becomes current, and is saved whatever happens to the stream."""
        parent_id = body.get("parent_id", CURRENT_EXCHANGE)
        if body["stream"]:
            return sse_response(
                generation.stream_reply(
                    current_principal(), conversation_id, body["prompt"], "messages", parent_id
                )
            )
        return generation.reply(current_principal(), conversation_id, body["prompt"], parent_id)


@blp.route("/<id:conversation_id>/messages/<id:message_id>")
class MessageById(MethodView):
    @blp.response(HTTPStatus.NO_CONTENT)
    @documents(blp, MESSAGE_NOT_FOUND, EXCHANGE_IN_PROGRESS)
    def delete(self, conversation_id: int, message_id: int) -> None:
        """Delete an exchange and every exchange below it (its subtree); if the current
        exchange was among them, its parent becomes current."""
        conversations_service.delete_message(current_principal(), conversation_id, message_id)


@blp.route("/<id:conversation_id>/messages/<id:message_id>/regenerate")
class Regenerate(MethodView):
    @blp.arguments(RegenerateIn, required=False)
    @blp.response(HTTPStatus.CREATED, MessageOut)
    @blp.alt_response(
        HTTPStatus.OK,
        success=True,
        schema=SseEventOut,
        content_type="text/event-stream",
        description=SSE_DESCRIPTION,
    )
    @documents(blp, MESSAGE_NOT_FOUND, PARENT_DELETED, *GENERATION_ERRORS)
    def post(
        self, body: dict[str, Any], conversation_id: int, message_id: int
    ) -> Message | Response:
        """Another answer to an exchange's prompt: a new exchange with the same prompt and
        parent (a sibling), streamed or not like a new prompt; it becomes current."""
        if body.get("stream"):
            return sse_response(
                generation.stream_regeneration(current_principal(), conversation_id, message_id)
            )
        return generation.regenerate(current_principal(), conversation_id, message_id)
