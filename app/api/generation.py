"""/text/generate/stream: the raw text of the answer as the LLM produces it."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from flask import Response, request
from flask.views import MethodView

from app.api import Blueprint
from app.api.auth import current_principal
from app.api.openapi import CONVERSATION_NOT_FOUND, GENERATION_ERRORS, PARENT_DELETED, documents
from app.exchange.wire import STREAM_HEADERS, text_response
from app.schemas.messages import GenerateArgs
from app.services import generation

blp = Blueprint("generation", __name__, url_prefix="/text", description="Generation")

TEXT_PLAIN = "text/plain; charset=utf-8"


@blp.route("/generate/stream")
class GenerateStream(MethodView):
    @blp.arguments(GenerateArgs, location="query")
    @blp.response(
        HTTPStatus.OK,
        schema={"type": "string"},
        description="The answer as text/plain, streamed piece by piece.",
        content_type=TEXT_PLAIN,
    )
    @documents(blp, CONVERSATION_NOT_FOUND, PARENT_DELETED, *GENERATION_ERRORS)
    def get(self, args: dict[str, Any]) -> Response:
        """Stream the answer to a prompt in a conversation; the exchange is saved."""
        if request.method == "HEAD":
            # Flask answers HEAD with the GET view: say what a GET would, without calling
            # (and paying for) the LLM or recording an exchange nobody will read.
            generation.check_conversation(current_principal(), args["conversation_id"])
            return Response(status=HTTPStatus.OK, content_type=TEXT_PLAIN, headers=STREAM_HEADERS)
        return text_response(
            generation.stream_reply(
                current_principal(),
                args["conversation_id"],
                args["prompt"],
                "text",
                wants_saved_row=False,
            )
        )
