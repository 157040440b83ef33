"""Exports (/conversations/<id>/export, /export) and their way back in (/import)."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from flask import Response
from flask.views import MethodView

from app.api import Blueprint
from app.api.auth import current_principal
from app.api.conversations import OTHERS_FORBIDDEN
from app.api.openapi import CONVERSATION_NOT_FOUND, NO_STORE_KEY, documents
from app.schemas.export import ExportAllArgs, ExportArgs, ExportDocument, ImportOut
from app.services import export as service
from app.services import imports
from app.services.export import Download
from app.services.imports import Imported

blp = Blueprint("export", __name__, description="Export and import")


def download(file: Download) -> Response:
    """Stream an export as an attachment."""
    mimetype = file.mimetype
    if mimetype.startswith("text/"):
        mimetype += "; charset=utf-8"
    return Response(
        file.chunks,
        content_type=mimetype,
        headers={"Content-Disposition": f'attachment; filename="{file.filename}"'},
    )


ATTACHMENT = {
    "Content-Disposition": {
        "description": 'attachment; filename="..."',
        "schema": {"type": "string"},
    }
}


@blp.route("/conversations/<id:conversation_id>/export")
class ConversationExport(MethodView):
    @blp.arguments(ExportArgs, location="query")
    @blp.doc(
        responses={
            "200": {
                "description": "The conversation as an attachment: JSON (format=json, what "
                "POST /import takes) or Markdown (format=markdown), streamed.",
                "headers": ATTACHMENT,
                "content": {
                    "application/json": {"schema": ExportDocument},
                    "text/markdown": {"schema": {"type": "string"}},
                },
            }
        }
    )
    @documents(blp, CONVERSATION_NOT_FOUND)
    def get(self, args: dict[str, Any], conversation_id: int) -> Response:
        """Export a conversation and its messages (with feedback)."""
        return download(
            service.export_conversation(current_principal(), conversation_id, args["format"])
        )


@blp.route("/export")
class ExportAll(MethodView):
    @blp.arguments(ExportAllArgs, location="query")
    @blp.response(
        HTTPStatus.OK,
        schema={"type": "string"},
        description="NDJSON: each conversation ({type: conversation, ...}), then each of its "
        "messages ({type: message, ...}), a JSON object a line; streamed, however many.",
        content_type="application/x-ndjson",
        headers=ATTACHMENT,
    )
    @documents(blp, OTHERS_FORBIDDEN)
    def get(self, args: dict[str, Any]) -> Response:
        """Export all your conversations (admins: a chosen user's, or everyone's)."""
        return download(service.export_all(current_principal(), args["owner"]))


@blp.route("/import")
class Import(MethodView):
    @blp.arguments(ExportDocument)
    @blp.response(HTTPStatus.CREATED, ImportOut)
    @documents(blp, NO_STORE_KEY)
    def post(self, document: dict[str, Any]) -> dict[str, list[Imported]]:
        """Import a JSON export as your own conversations: new ids, the same timestamps."""
        return {
            "conversations": imports.import_document(current_principal(), document["conversations"])
        }
