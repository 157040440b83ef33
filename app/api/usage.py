"""/usage: exchanges, tokens and latency per day, model and user, from the daily rollups."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from flask.views import MethodView

from app.api import Blueprint
from app.api.auth import current_principal
from app.api.openapi import ErrorDoc, documents
from app.schemas.usage import UsageArgs, UsageOut
from app.services import usage as service

blp = Blueprint("usage", __name__, url_prefix="/usage", description="Usage")

OTHERS_FORBIDDEN = ErrorDoc(
    HTTPStatus.FORBIDDEN, "Only an admin can see other users' usage (owner)."
)


@blp.route("")
class Usage(MethodView):
    @blp.arguments(UsageArgs, location="query")
    @blp.response(HTTPStatus.OK, UsageOut)
    @documents(blp, OTHERS_FORBIDDEN)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """Usage over a range of UTC days, grouped by any of day, model and user."""
        return service.usage_report(current_principal(), **args)
