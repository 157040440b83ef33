"""/v1/chat/completions and /v1/models: the OpenAI-compatible gateway; any OpenAI SDK pointed
here gets its calls saved."""

from __future__ import annotations

from typing import Any

from flask import Response
from flask.views import MethodView

from app.api import Blueprint
from app.api.auth import current_principal
from app.api.openai_errors import COMMON_ERRORS, ErrorDoc, openai_errors
from app.exchange.openai_wire import chat_response, json_response
from app.schemas.openai import (
    ChatCompletionChunkOut,
    ChatCompletionCreate,
    ChatCompletionOut,
    ConversationHeader,
    ModelListOut,
)
from app.services import gateway

blp = Blueprint(
    "v1",
    __name__,
    url_prefix="/v1",
    description="OpenAI-compatible gateway: point an OpenAI SDK's base_url here. Errors take "
    "OpenAI's shape.",
)

_SAVED_AT = {
    "X-Conversation-Id": {"description": "The conversation it is saved in.", "schema": {}},
    "X-Message-Id": {"description": "The exchange's message id.", "schema": {}},
}
_CHAT_ERRORS: tuple[ErrorDoc, ...] = (
    (400, "The body is not valid (or the upstream said so).", None),
    (404, "No such conversation of yours (X-Conversation-Id), or no such model.", None),
    (413, "The body is larger than MAX_CONTENT_LENGTH.", None),
    (415, "The body is not JSON.", None),
    (502, "The upstream failed or could not be reached.", None),
    (504, "The upstream did not answer in time.", None),
)


@blp.route("/chat/completions")
class ChatCompletions(MethodView):
    @blp.arguments(ConversationHeader, location="headers", as_kwargs=True)
    @blp.arguments(ChatCompletionCreate)
    @blp.response(
        200,
        ChatCompletionOut,
        description="The upstream's chat.completion as received.",
        headers=_SAVED_AT,
    )
    @blp.alt_response(
        200,
        success=True,
        schema=ChatCompletionChunkOut,
        content_type="text/event-stream",
        description="With stream: true, the upstream's events as received, then "
        "data: [DONE] (the usage chunk only when stream_options.include_usage asked for it).",
    )
    @openai_errors(blp, *COMMON_ERRORS, *_CHAT_ERRORS)
    def post(
        self, body: dict[str, Any], conversation_id: int | None = None, temporary: bool = False
    ) -> Response:
        """Create a chat completion through the upstream; the call is saved as an exchange."""
        exchange = gateway.chat(current_principal(), body, conversation_id, temporary=temporary)
        return chat_response(exchange, gateway.exchange_headers(exchange.pending), body["stream"])


@blp.route("/models")
class Models(MethodView):
    @blp.response(200, ModelListOut, description="The upstream's model list as received.")
    @openai_errors(blp, *COMMON_ERRORS, (502, "The upstream failed.", None))
    def get(self) -> Response:
        """List the upstream's models (cached for MODELS_CACHE_SECONDS)."""
        return json_response(gateway.list_models())
