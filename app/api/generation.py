"""/text/generate/stream: the raw text of the answer as the LLM produces it."""

from __future__ import annotations

from typing import Any

from flask import Response
from flask.views import MethodView

from app.api import Blueprint
from app.api.auth import current_principal
from app.api.openapi import CONVERSATION_NOT_FOUND, GENERATION_ERRORS, documents
from app.schemas import GenerateArgs
from app.services import generation
from app.streaming import text_response

blp = Blueprint("generation", __name__, url_prefix="/text", description="Generation")


@blp.route("/generate/stream")
class GenerateStream(MethodView):
    @blp.arguments(GenerateArgs, location="query")
    @blp.response(
        200,
        schema={"type": "string"},
        description="The answer as text/plain, streamed piece by piece.",
        content_type="text/plain; charset=utf-8",
    )
    @documents(blp, CONVERSATION_NOT_FOUND, *GENERATION_ERRORS)
    def get(self, args: dict[str, Any]) -> Response:
        """Stream the answer to a prompt in a conversation; the exchange is saved."""
        return text_response(
            generation.stream_reply(
                current_principal(), args["conversation_id"], args["prompt"], keepalive=False
            )
        )
