"""Full-text search over titles, prompts and answers: a query's hits, a page at a time, best
or newest first, on PostgreSQL (GIN over stored tsvectors) or SQLite (FTS5)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row
from sqlalchemy.orm import Session

from app.repositories.search_fields import SOURCES
from app.repositories.search_plan import (
    RANKED_MAX,
    Expected,
    expected_matches,
    ranked_first,
    walked_kinds,
)
from app.repositories.search_query import RANK, RECENT, Cursor, SearchQuery
from app.repositories.search_sqlite import fts5_query, snippets_statement
from app.repositories.search_statements import Shape, newest_statement, ranked_statement

_CONFIG_NAME = re.compile(r"[a-z_][a-z0-9_]*")


@dataclass(frozen=True)
class Hit:
    conversation_id: int
    message_id: int | None
    kind: int
    rank: float
    written: datetime  # when the title's conversation or the message was created
    snippet: str  # the matched text around its matches, marked with MARK_START and MARK_END

    def cursor(self, order: str) -> Cursor:
        """The cursor of a page that ends with this hit, in ``order``."""
        ref = self.message_id or self.conversation_id
        if order == RANK:
            return Cursor(self.kind, ref, self.rank)
        return Cursor(self.kind, ref, written=self.written)


@dataclass(frozen=True)
class Filters:
    owner_id: int | None
    model: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    metadata: Mapping[str, str] | None = None


class SearchRepository:
    """Full-text hits, ranked or newest first; every query is limited by ``Filters`` (the
    owner first).

    A query matching at most ``ranked_max`` fields (titles, prompts and answers together;
    SEARCH_RANKED_MAX) is ranked: all its matches are read and scored, on every page. A
    broader one lists its matches newest first, walking the created_at indexes back from the
    newest until a page is found, where ranking would read most of its matches for every page.
    """

    def __init__(
        self, session: Session, language: str = "simple", ranked_max: int = RANKED_MAX
    ) -> None:
        if not _CONFIG_NAME.fullmatch(language):
            raise ValueError(f"not a text-search configuration name: {language!r}")
        self.session = session
        self.language = language
        self.ranked_max = ranked_max
        self.postgresql = session.get_bind().dialect.name == "postgresql"

    def hits(
        self, query: SearchQuery, filters: Filters, take: int, after: Cursor | None
    ) -> tuple[str, list[Hit]]:
        """The first ``take`` hits past ``after``, and their order: RANK (rank, then kind,
        then id) when the query matches at most ``ranked_max`` fields, RECENT (newest first,
        then kind, then id) when it matches more. A cursor keeps its first page's order."""
        shape = Shape(
            self.postgresql,
            self.language,
            tuple(term.excluded for term in query.terms),
            filters.owner_id is not None,
            filters.model is not None,
            filters.since is not None,
            filters.until is not None,
            len(filters.metadata or {}),
        )
        params = _parameters(shape, query, filters) | {"take": take}
        if after is not None and after.order == RANK:
            return RANK, self._ranked(shape, params, query, after)[0]
        statistics = self._statistics(query)
        window = None  # what a ranked first page counted, when its window filled up
        if after is None and ranked_first(statistics, self.ranked_max):
            hits, counts = self._ranked(shape, params, query, None)
            if sum(counts) <= self.ranked_max:
                return RANK, hits
            window = counts
        walked = walked_kinds(statistics, take, window)
        after_kind = None
        if after is not None:
            after_kind = after.kind
            params |= {"after_written": after.written, "after_ref": after.ref}
        statement = newest_statement(shape, after_kind, walked)
        return RECENT, self._hits(self.session.execute(statement, params).all(), query)

    def _ranked(
        self, shape: Shape, params: dict[str, Any], query: SearchQuery, after: Cursor | None
    ) -> tuple[list[Hit], list[int]]:
        """The best hits past ``after``; on a first page, also the matches of each kind of
        hit in the window (the first ``ranked_max`` + 1 matches, titles first)."""
        params = params | {"window": self.ranked_max + 1}
        if after is not None:
            params |= {"after_rank": after.rank, "after_kind": after.kind, "after_ref": after.ref}
        rows = self.session.execute(ranked_statement(shape, after is not None), params).all()
        counts = [0] * len(SOURCES)  # no row on a first page: nothing matched
        if after is None and rows:
            counts = [rows[0]._mapping[f"count_{kind}"] for kind in range(len(SOURCES))]
        return self._hits(rows, query), counts

    def _hits(self, rows: Sequence[Row[Any]], query: SearchQuery) -> list[Hit]:
        """Hits from a page's rows; on SQLite, their snippets are made here (FTS5 makes them
        in a MATCH of its own table only)."""
        if self.postgresql:
            return [_hit(row, row.snippet) for row in rows]
        snippets: dict[int, dict[int, str]] = {}
        for kind in {row.kind for row in rows}:
            ids = [row.ref for row in rows if row.kind == kind]
            found = self.session.execute(
                snippets_statement(kind), {"fts": fts5_query(query), "ids": ids}
            )
            snippets[kind] = {int(uid): text for uid, text in found}
        return [_hit(row, snippets[row.kind].get(row.ref, "")) for row in rows]

    def _statistics(self, query: SearchQuery) -> dict[int, Expected]:
        """What each kind of hit is expected to match (nothing known on SQLite)."""
        if not self.postgresql:
            return {}
        return expected_matches(self.session, self.language, query)


def _parameters(shape: Shape, query: SearchQuery, filters: Filters) -> dict[str, Any]:
    """The values of the statements ``shape`` gives."""
    params: dict[str, Any] = {f"term_{n}": " ".join(t.words) for n, t in enumerate(query.terms)}
    if not shape.postgresql:
        params["fts"] = fts5_query(query)
    if filters.owner_id is not None:
        params["owner_id"] = filters.owner_id
    if filters.model is not None:
        params["model"] = filters.model
    if filters.since is not None:
        params["since"] = filters.since
    if filters.until is not None:
        params["until"] = filters.until
    if filters.metadata and shape.postgresql:
        params["metadata"] = dict(filters.metadata)
    elif filters.metadata:
        for n, (key, value) in enumerate(filters.metadata.items()):
            params[f"metadata_key_{n}"], params[f"metadata_value_{n}"] = key, value
    return params


def _hit(row: Row[Any], snippet: str) -> Hit:
    return Hit(row.conversation_id, row.message_id, row.kind, float(row.rank), row.written, snippet)
