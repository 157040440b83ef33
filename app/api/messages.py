"""/conversations/<id>/messages: a conversation's exchanges, and new ones."""

from __future__ import annotations

from typing import Any

from flask import Response
from flask.views import MethodView

from app.api import Blueprint
from app.api.auth import current_principal
from app.api.openapi import CONVERSATION_NOT_FOUND, GENERATION_ERRORS, documents
from app.api.paging import LINK_HEADER, next_link
from app.exchange.wire import sse_response
from app.models import Message
from app.schemas.common import PageArgs
from app.schemas.messages import MessageCreate, MessageOut, SseEventOut
from app.services import conversations as conversations_service
from app.services import generation

blp = Blueprint("messages", __name__, url_prefix="/conversations", description="Messages")

SSE_DESCRIPTION = (
    "With stream: true, Server-Sent Events: `reasoning` events `{text}` (what a reasoning "
    "model thinks, if it says), `delta` events `{text}`, then `done` "
    "`{message}` (the saved MessageOut) or `error` `{code, message}`; the schema is that "
    "of one event."
)


@blp.route("/<id:conversation_id>/messages")
class Messages(MethodView):
    @blp.arguments(PageArgs, location="query")
    @blp.response(200, MessageOut(many=True), headers=LINK_HEADER)
    @documents(blp, CONVERSATION_NOT_FOUND)
    def get(
        self, args: dict[str, int], conversation_id: int
    ) -> tuple[list[Message], dict[str, str]]:
        """List a conversation's messages in creation order."""
        page = conversations_service.list_messages(current_principal(), conversation_id, **args)
        return page.items, next_link(page, PageArgs)

    @blp.arguments(MessageCreate)
    @blp.response(201, MessageOut)
    @blp.alt_response(
        200,
        success=True,
        schema=SseEventOut,
        content_type="text/event-stream",
        description=SSE_DESCRIPTION,
    )
    @documents(blp, CONVERSATION_NOT_FOUND, *GENERATION_ERRORS)
    def post(self, body: dict[str, Any], conversation_id: int) -> Message | Response:
        """Send a prompt; the exchange is saved whatever happens to the stream."""
        if body["stream"]:
            return sse_response(
                generation.stream_reply(
                    current_principal(), conversation_id, body["prompt"], "messages"
                )
            )
        return generation.reply(current_principal(), conversation_id, body["prompt"])
