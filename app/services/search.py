"""Full-text search over the actor's conversations: titles, prompts and answers."""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from flask import current_app

from app.extensions import db
from app.repositories.search import Filters, SearchRepository
from app.repositories.search_fields import FIELDS, MARK_END, MARK_START
from app.repositories.search_query import Cursor, SearchQuery
from app.services.auth import Principal
from app.services.conversations import OWNER_ME, list_scope


@dataclass(frozen=True)
class SearchResult:
    conversation_id: int
    message_id: int | None
    field: str
    snippet: str
    rank: float


@dataclass(frozen=True)
class SearchPage:
    results: list[SearchResult]
    next_cursor: str | None
    order: str  # RANK (best first) or RECENT (newest first): see SearchRepository.hits


def highlight(snippet: str) -> str:
    """Escape a snippet for HTML, then mark its matches with <mark> tags."""
    escaped = html.escape(snippet, quote=False)
    return escaped.replace(MARK_START, "<mark>").replace(MARK_END, "</mark>")


def search(
    actor: Principal,
    *,
    q: SearchQuery,
    take: int,
    cursor: Cursor | None = None,
    model: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    meta: Mapping[str, str] | None = None,
    owner: str | int = OWNER_ME,
) -> SearchPage:
    """The best matches first (the newest first for a broad query), ``take`` at a time;
    ``next_cursor`` continues after them, in the same order."""
    filters = Filters(list_scope(actor, owner), model, since, until, meta)
    config = current_app.config
    repository = SearchRepository(
        db.session, config["SEARCH_LANGUAGE"], config["SEARCH_RANKED_MAX"]
    )
    order, hits = repository.hits(q, filters, take + 1, cursor)
    page, more = hits[:take], len(hits) > take
    results = [
        SearchResult(
            hit.conversation_id,
            hit.message_id,
            FIELDS[hit.kind],
            highlight(hit.snippet),
            hit.rank,
        )
        for hit in page
    ]
    next_cursor = page[-1].cursor(order).encode() if more else None
    return SearchPage(results, next_cursor, order)
