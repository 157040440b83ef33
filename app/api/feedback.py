"""/conversations/<id>/messages/<message_id>/feedback: rate an exchange."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from flask.views import MethodView

from app.api import Blueprint
from app.api.auth import current_principal
from app.api.openapi import ErrorDoc, documents
from app.models import Feedback
from app.schemas.messages import FeedbackIn, FeedbackOut
from app.services import feedback as service

blp = Blueprint("feedback", __name__, url_prefix="/conversations", description="Feedback")

MESSAGE_NOT_FOUND = ErrorDoc(
    HTTPStatus.NOT_FOUND,
    "No such conversation, no such message in it, or it is somebody else's (not revealed).",
)


@blp.route("/<id:conversation_id>/messages/<id:message_id>/feedback")
class MessageFeedback(MethodView):
    @blp.arguments(FeedbackIn)
    @blp.response(HTTPStatus.OK, FeedbackOut)
    @documents(blp, MESSAGE_NOT_FOUND)
    def put(self, body: dict[str, Any], conversation_id: int, message_id: int) -> Feedback:
        """Rate an exchange: 1 or -1, with an optional comment (replaces earlier feedback)."""
        return service.set_feedback(current_principal(), conversation_id, message_id, **body)

    @blp.response(HTTPStatus.NO_CONTENT)
    @documents(blp, MESSAGE_NOT_FOUND)
    def delete(self, conversation_id: int, message_id: int) -> None:
        """Remove an exchange's feedback (204 also when it had none)."""
        service.remove_feedback(current_principal(), conversation_id, message_id)
