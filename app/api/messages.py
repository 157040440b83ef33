"""/conversations/<id>/messages: a conversation's exchanges."""

from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint

from app.models import Message
from app.schemas import MessageOut, PageArgs
from app.services import conversations as service

blp = Blueprint("messages", __name__, url_prefix="/conversations", description="Messages")


@blp.route("/<id:conversation_id>/messages")
class Messages(MethodView):
    @blp.arguments(PageArgs, location="query")
    @blp.response(200, MessageOut(many=True))
    def get(self, page: dict[str, int], conversation_id: int) -> list[Message]:
        """List a conversation's messages in creation order."""
        return service.list_messages(conversation_id, **page)
