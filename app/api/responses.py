"""/v1/responses and /v1/conversations: OpenAI's Responses and Conversations APIs, stored
here, in the same conversations as REST's, for any Chat Completions upstream."""

from __future__ import annotations

import json
from typing import Any

from flask import Response
from flask.views import MethodView

from app.api import Blueprint
from app.api.auth import current_principal
from app.api.openai_errors import COMMON_ERRORS, ErrorDoc, openai_errors
from app.exchange.responses_wire import responses_response
from app.schemas.openai import TemporaryHeader
from app.schemas.openai_conversations import (
    ConversationMetadataUpdate,
    ConversationObjectCreate,
    ItemsCreate,
)
from app.schemas.responses import IncludeArgs, ItemListArgs, ResponseCreate, ResponseGetArgs
from app.schemas.responses_out import (
    ConversationObjectOut,
    DeletedOut,
    ItemListOut,
    ItemOut,
    ResponseEventOut,
    ResponseOut,
)
from app.services import openai_conversations, responses
from app.services.gateway import exchange_headers

blp = Blueprint(
    "responses",
    __name__,
    url_prefix="/v1",
    description="OpenAI's Responses and Conversations APIs, translated to the upstream's Chat "
    "Completions; conv_<id> is REST's conversation <id>. Errors take OpenAI's shape.",
)

_BODY_ERRORS: tuple[ErrorDoc, ...] = (
    (400, "The body is not valid, or asks for what is not supported (named in param).", None),
    (413, "The body is larger than MAX_CONTENT_LENGTH.", None),
    (415, "The body is not JSON.", None),
)
_UNKNOWN: ErrorDoc = (404, "No such response, conversation or item of yours.", None)
_IN_PROGRESS: ErrorDoc = (
    409,
    "An exchange it would delete is in progress (its id in the message): retry once ended.",
    None,
)
_QUERY_ERRORS: tuple[ErrorDoc, ...] = ((400, "A query parameter is not valid.", None),)


def _json(value: Any, status: int = 200) -> Response:
    return Response(
        json.dumps(value, ensure_ascii=False), status=status, content_type="application/json"
    )


@blp.route("/responses")
class Responses(MethodView):
    @blp.arguments(TemporaryHeader, location="headers", as_kwargs=True)
    @blp.arguments(ResponseCreate)
    @blp.response(200, ResponseOut, description="The Response, once the exchange has ended.")
    @blp.alt_response(
        200,
        success=True,
        schema=ResponseEventOut,
        content_type="text/event-stream",
        description="With stream: true, OpenAI's semantic events, each with an event: line.",
    )
    @openai_errors(
        blp,
        *COMMON_ERRORS,
        *_BODY_ERRORS,
        (404, "No such previous_response_id or conversation of yours.", None),
        (502, "The upstream failed or could not be reached.", None),
        (504, "The upstream did not answer in time.", None),
    )
    def post(self, body: dict[str, Any], temporary: bool = False) -> Response:
        """Create a response through the upstream; it is saved as an exchange."""
        started = responses.create_response(current_principal(), body, temporary=temporary)
        return responses_response(
            started.exchange,
            started.items,
            started.snapshot,
            started.final,
            body["stream"],
            exchange_headers(started.exchange.pending),
        )


@blp.route("/responses/<string:response_id>")
class ResponseById(MethodView):
    @blp.arguments(ResponseGetArgs, location="query")
    @blp.response(200, ResponseOut)
    @openai_errors(blp, *COMMON_ERRORS, *_QUERY_ERRORS, _UNKNOWN)
    def get(self, _args: dict[str, Any], response_id: str) -> Response:
        """A stored response (any exchange of yours reads as one)."""
        return _json(responses.get_response(current_principal(), response_id))

    @blp.response(200, DeletedOut)
    @openai_errors(blp, *COMMON_ERRORS, _UNKNOWN, _IN_PROGRESS)
    def delete(self, response_id: str) -> Response:
        """Delete one response: its content goes, the responses that continue it stay."""
        return _json(responses.delete_response(current_principal(), response_id))


@blp.route("/responses/<string:response_id>/input_items")
class ResponseInputItems(MethodView):
    @blp.arguments(ItemListArgs, location="query")
    @blp.response(200, ItemListOut)
    @openai_errors(blp, *COMMON_ERRORS, *_QUERY_ERRORS, _UNKNOWN)
    def get(self, args: dict[str, Any], response_id: str) -> Response:
        """The input items a response added (cursor-paged; newest first by default)."""
        page = responses.input_items(
            current_principal(), response_id, args["after"], args["limit"], args["order"]
        )
        return _json(page)


@blp.route("/conversations")
class Conversations(MethodView):
    @blp.arguments(TemporaryHeader, location="headers", as_kwargs=True)
    @blp.arguments(ConversationObjectCreate, required=False)
    @blp.response(200, ConversationObjectOut)
    @openai_errors(blp, *COMMON_ERRORS, *_BODY_ERRORS)
    def post(self, body: dict[str, Any], temporary: bool = False) -> Response:
        """Create a conversation (a REST conversation too), with up to 20 items."""
        return _json(
            openai_conversations.create_conversation(
                current_principal(), body["items"], body["metadata"], temporary=temporary
            )
        )


@blp.route("/conversations/<string:conversation_id>")
class ConversationById(MethodView):
    @blp.response(200, ConversationObjectOut)
    @openai_errors(blp, *COMMON_ERRORS, _UNKNOWN)
    def get(self, conversation_id: str) -> Response:
        """A conversation of yours."""
        return _json(openai_conversations.get_conversation(current_principal(), conversation_id))

    @blp.arguments(ConversationMetadataUpdate)
    @blp.response(200, ConversationObjectOut)
    @openai_errors(blp, *COMMON_ERRORS, *_BODY_ERRORS, _UNKNOWN)
    def post(self, body: dict[str, Any], conversation_id: str) -> Response:
        """Replace a conversation's metadata."""
        return _json(
            openai_conversations.update_conversation(
                current_principal(), conversation_id, body["metadata"]
            )
        )

    @blp.response(200, DeletedOut)
    @openai_errors(blp, *COMMON_ERRORS, _UNKNOWN, _IN_PROGRESS)
    def delete(self, conversation_id: str) -> Response:
        """Delete a conversation and all its exchanges."""
        return _json(openai_conversations.delete_conversation(current_principal(), conversation_id))


@blp.route("/conversations/<string:conversation_id>/items")
class ConversationItems(MethodView):
    @blp.arguments(ItemListArgs, location="query")
    @blp.response(200, ItemListOut)
    @openai_errors(blp, *COMMON_ERRORS, *_QUERY_ERRORS, _UNKNOWN)
    def get(self, args: dict[str, Any], conversation_id: str) -> Response:
        """The items of the conversation's current branch (newest first by default)."""
        page = openai_conversations.list_items(
            current_principal(), conversation_id, args["after"], args["limit"], args["order"]
        )
        return _json(page)

    @blp.arguments(IncludeArgs, location="query")
    @blp.arguments(ItemsCreate)
    @blp.response(200, ItemListOut)
    @openai_errors(blp, *COMMON_ERRORS, *_BODY_ERRORS, _UNKNOWN)
    def post(self, _args: dict[str, Any], body: dict[str, Any], conversation_id: str) -> Response:
        """Add up to 20 items after the conversation's current exchange (no answer)."""
        return _json(
            openai_conversations.add_items(current_principal(), conversation_id, body["items"])
        )


@blp.route("/conversations/<string:conversation_id>/items/<string:item_id>")
class ConversationItem(MethodView):
    @blp.arguments(IncludeArgs, location="query")
    @blp.response(200, ItemOut)
    @openai_errors(blp, *COMMON_ERRORS, *_QUERY_ERRORS, _UNKNOWN)
    def get(self, _args: dict[str, Any], conversation_id: str, item_id: str) -> Response:
        """One item of the conversation."""
        return _json(openai_conversations.get_item(current_principal(), conversation_id, item_id))

    @blp.response(200, ConversationObjectOut)
    @openai_errors(blp, *COMMON_ERRORS, _UNKNOWN, _IN_PROGRESS)
    def delete(self, conversation_id: str, item_id: str) -> Response:
        """Delete one item's content (the others keep theirs, and their ids); returns the
        conversation."""
        return _json(
            openai_conversations.delete_item(current_principal(), conversation_id, item_id)
        )
