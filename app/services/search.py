"""Full-text search over the actor's conversations: titles, prompts and answers."""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from flask import current_app

from app.extensions import db
from app.repositories.search import FIELDS, MARK_END, MARK_START, Filters, SearchRepository
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
    """The best matches first, ``take`` at a time; ``next_cursor`` continues after them."""
    filters = Filters(list_scope(actor, owner), model, since, until, meta)
    repository = SearchRepository(db.session, current_app.config["SEARCH_LANGUAGE"])
    hits = repository.hits(q, filters, take + 1, cursor)
    page, more = hits[:take], len(hits) > take
    snippets: dict[int, dict[int, str]] = {}
    for kind in {hit.kind for hit in page}:
        ids = [hit.message_id or hit.conversation_id for hit in page if hit.kind == kind]
        snippets[kind] = repository.snippets(kind, ids, q)
    results = [
        SearchResult(
            hit.conversation_id,
            hit.message_id,
            FIELDS[hit.kind],
            highlight(snippets[hit.kind].get(hit.message_id or hit.conversation_id, "")),
            hit.rank,
        )
        for hit in page
    ]
    last = page[-1] if page else None
    next_cursor = (
        Cursor(last.rank, last.kind, last.message_id or last.conversation_id).encode()
        if more and last is not None
        else None
    )
    return SearchPage(results, next_cursor)
