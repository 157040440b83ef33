"""Full-text search over titles, prompts and answers: PostgreSQL GIN, SQLite FTS5.

The columns and tables here are those migration 0005 creates (app/models.py).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Double,
    Integer,
    Select,
    and_,
    bindparam,
    cast,
    column,
    func,
    literal,
    literal_column,
    null,
    or_,
    select,
    table,
    union_all,
)
from sqlalchemy.orm import Session
from sqlalchemy.sql.expression import TableClause

from app.models import (
    FTS_PROMPTS,
    FTS_RESPONSES,
    FTS_TITLES,
    PROMPT_VECTOR,
    RESPONSE_VECTOR,
    TITLE_VECTOR,
    Conversation,
    Message,
)
from app.repositories.conversations import metadata_matches
from app.repositories.search_query import Cursor, SearchQuery, Term

# Matches ranked per field, at most. Past it, results are the best of the first RANK_WINDOW
# matches the index yields (the same ones on every page): more words or a filter narrow it.
RANK_WINDOW = 2000
VECTORS = {
    "title": TITLE_VECTOR,
    "prompt_content": PROMPT_VECTOR,
    "response_content": RESPONSE_VECTOR,
}
# Kinds of hit, in the order ties are broken.
TITLE, PROMPT, RESPONSE = 0, 1, 2
FIELDS = ("title", "prompt", "response")
# Private-use characters mark the matches in snippets: the caller escapes the text, then
# turns them into <mark> tags (a "<mark>" typed in a message stays text).
MARK_START, MARK_END = "\ue000", "\ue001"
_CONFIG_NAME = re.compile(r"[a-z_][a-z0-9_]*")


@cache  # one object per table: SQLAlchemy tells FROM elements apart by identity
def fts_table(name: str) -> TableClause:
    """An FTS5 table: its rowid, and the hidden column of its own name that MATCH takes."""
    return table(name, column(name), column("rowid"))


@dataclass(frozen=True)
class Hit:
    conversation_id: int
    message_id: int | None
    kind: int
    rank: float


@dataclass(frozen=True)
class Filters:
    owner_id: int | None
    model: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    metadata: Mapping[str, str] | None = None


class SearchRepository:
    """Ranked full-text hits; every query is limited by ``Filters`` (the owner first)."""

    def __init__(self, session: Session, language: str = "simple") -> None:
        if not _CONFIG_NAME.fullmatch(language):
            raise ValueError(f"not a text-search configuration name: {language!r}")
        self.session = session
        self.postgresql = session.get_bind().dialect.name == "postgresql"
        # A literal, as in the index expressions (a bound parameter would not match them).
        self.config = literal_column(f"'{language}'::regconfig")

    # Hits.

    def hits(
        self, query: SearchQuery, filters: Filters, take: int, after: Cursor | None
    ) -> list[Hit]:
        """The best ``take`` hits past ``after``: rank first, then kind, then id."""
        selects = [self._titles(query, filters), *self._messages(query, filters)]
        # Each field ranks at most RANK_WINDOW matches: a query matching most of a million
        # messages would otherwise rank them all. The limit goes outside a materialized CTE,
        # which PostgreSQL plans for all its rows (a LIMIT inside tempts it to scan the table
        # in the hope of finding 2,000 matches early) yet runs lazily, stopping at the limit.
        windows = [
            select(
                select(
                    statement.cte(f"matches_{n}").prefix_with("MATERIALIZED", dialect="postgresql")
                )
                .limit(RANK_WINDOW)
                .subquery()
            )
            for n, statement in enumerate(selects)
        ]
        hits = union_all(*windows).subquery("hits")
        ordered = select(hits).order_by(hits.c.rank.desc(), hits.c.kind, hits.c.ref)
        if after is not None:
            ordered = ordered.where(
                or_(
                    hits.c.rank < after.rank,
                    and_(
                        hits.c.rank == after.rank,
                        or_(
                            hits.c.kind > after.kind,
                            and_(hits.c.kind == after.kind, hits.c.ref > after.ref),
                        ),
                    ),
                )
            )
        rows = self.session.execute(ordered.limit(take))
        return [Hit(row.conversation_id, row.message_id, row.kind, float(row.rank)) for row in rows]

    def _conditions(self, filters: Filters, created_at: Any) -> list[ColumnElement[bool]]:
        conditions: list[ColumnElement[bool]] = []
        if filters.owner_id is not None:
            conditions.append(Conversation.owner_id == filters.owner_id)
        if filters.model is not None:
            conditions.append(Conversation.model_type == filters.model)
        if filters.since is not None:
            conditions.append(created_at >= filters.since)
        if filters.until is not None:
            conditions.append(created_at < filters.until)
        if filters.metadata:
            conditions.append(metadata_matches(self.session, filters.metadata))
        return conditions

    def _titles(self, query: SearchQuery, filters: Filters) -> Select[Any]:
        match, rank = self._match("conversations", "title", FTS_TITLES, query)
        statement = select(
            Conversation.id.label("conversation_id"),
            null().cast(Integer).label("message_id"),
            literal(TITLE).label("kind"),
            Conversation.id.label("ref"),
            rank.label("rank"),
        )
        if not self.postgresql:
            fts = fts_table(FTS_TITLES)
            statement = statement.select_from(fts).join(
                Conversation, Conversation.id == fts.c.rowid
            )
        return statement.where(match, *self._conditions(filters, Conversation.created_at))

    def _messages(self, query: SearchQuery, filters: Filters) -> list[Select[Any]]:
        selects = []
        for kind, field, fts_name in (
            (PROMPT, "prompt_content", FTS_PROMPTS),
            (RESPONSE, "response_content", FTS_RESPONSES),
        ):
            match, rank = self._match("messages", field, fts_name, query)
            statement = select(
                Message.conversation_id.label("conversation_id"),
                Message.id.label("message_id"),
                literal(kind).label("kind"),
                Message.id.label("ref"),
                rank.label("rank"),
            )
            if self.postgresql:
                statement = statement.select_from(Message)
            else:
                fts = fts_table(fts_name)
                statement = statement.select_from(fts).join(Message, Message.id == fts.c.rowid)
            statement = statement.join(Conversation, Conversation.id == Message.conversation_id)
            selects.append(statement.where(match, *self._conditions(filters, Message.created_at)))
        return selects

    def _match(
        self, source: str, field: str, fts_name: str, query: SearchQuery
    ) -> tuple[ColumnElement[bool], ColumnElement[float]]:
        """The match condition and the rank (higher is better) for one indexed field."""
        if self.postgresql:
            vector = self._vector(source, field)
            # Ranked by the wanted terms alone (with a negation ts_rank comes out near 0);
            # as double precision, so that a cursor's rank compares exactly.
            rank = cast(func.ts_rank(vector, self._tsquery(query, wanted_only=True)), Double)
            return vector.op("@@")(self._tsquery(query)), rank
        fts = fts_table(fts_name)
        match = fts.c[fts_name].op("MATCH")(bindparam(None, fts5_query(query)))
        # bm25 is lower for better matches.
        return match, -func.bm25(literal_column(fts_name))

    def _vector(self, source: str, field: str) -> ColumnElement[Any]:
        # The stored, indexed to_tsvector(SEARCH_LANGUAGE, field) of migration 0005.
        return literal_column(f"{source}.{VECTORS[field]}")

    def _tsquery(self, query: SearchQuery, *, wanted_only: bool = False) -> ColumnElement[Any]:
        def phrase(term: Term) -> ColumnElement[Any]:
            return func.phraseto_tsquery(self.config, bindparam(None, " ".join(term.words)))

        combined = None
        for term in query.wanted:
            combined = (
                phrase(term) if combined is None else func.tsquery_and(combined, phrase(term))
            )
        for term in () if wanted_only else query.excluded:
            combined = func.tsquery_and(combined, func.tsquery_not(phrase(term)))
        assert combined is not None  # a SearchQuery has at least one wanted term
        return combined

    # Snippets.

    def snippets(self, kind: int, ids: list[int], query: SearchQuery) -> dict[int, str]:
        """The matched field's text around its matches, by conversation or message id."""
        if not ids:
            return {}
        source, field, fts_name = {
            TITLE: ("conversations", "title", FTS_TITLES),
            PROMPT: ("messages", "prompt_content", FTS_PROMPTS),
            RESPONSE: ("messages", "response_content", FTS_RESPONSES),
        }[kind]
        model = Conversation if kind == TITLE else Message
        if self.postgresql:
            options = (
                f"StartSel={MARK_START}, StopSel={MARK_END}, MaxWords=30, MinWords=10, "
                'ShortWord=0, MaxFragments=2, FragmentDelimiter=" … "'
            )
            text = func.coalesce(literal_column(f"{source}.{field}"), literal_column("''"))
            snippet = func.ts_headline(self.config, text, self._tsquery(query), options)
            statement = select(model.id, snippet).where(model.id.in_(ids))
        else:
            fts = fts_table(fts_name)
            snippet = func.snippet(literal_column(fts_name), 0, MARK_START, MARK_END, "…", 24)
            statement = select(fts.c.rowid, snippet).where(
                fts.c[fts_name].op("MATCH")(bindparam(None, fts5_query(query))),
                fts.c.rowid.in_(ids),
            )
        return {int(uid): text for uid, text in self.session.execute(statement)}


def fts5_query(query: SearchQuery) -> str:
    """The query in FTS5's syntax: every term a quoted phrase (words are letters and digits)."""

    def phrase(term: Term) -> str:
        return '"' + " ".join(term.words) + '"'

    expression = " AND ".join(phrase(term) for term in query.wanted)
    for term in query.excluded:
        expression = f"({expression}) NOT {phrase(term)}"
    return expression
