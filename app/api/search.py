"""/search: full-text search over the caller's conversations."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from flask.views import MethodView

from app.api import Blueprint
from app.api.auth import current_principal
from app.api.conversations import OTHERS_FORBIDDEN
from app.api.openapi import URL_TOO_LONG, documents
from app.api.paging import LINK_HEADER, link_to
from app.schemas.search import SearchArgs, SearchPageOut
from app.services import search as service
from app.services.search import SearchPage

blp = Blueprint("search", __name__, url_prefix="/search", description="Search")


@blp.route("")
class Search(MethodView):
    @blp.arguments(SearchArgs, location="query")
    @blp.response(HTTPStatus.OK, SearchPageOut, headers=LINK_HEADER)
    @documents(blp, OTHERS_FORBIDDEN, URL_TOO_LONG)
    def get(self, args: dict[str, Any]) -> tuple[SearchPage, dict[str, str]]:
        """Search titles, prompts and answers: best first; filter by metadata[key]=value."""
        page = service.search(current_principal(), **args)
        return page, link_to("cursor", page.next_cursor, SearchArgs) if page.next_cursor else {}
