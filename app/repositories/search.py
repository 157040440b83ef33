"""Full-text search over titles, prompts and answers: PostgreSQL GIN, SQLite FTS5.

The columns and tables here are those migration 0005 creates (app/models.py).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Double,
    Integer,
    Select,
    Text,
    and_,
    bindparam,
    case,
    cast,
    column,
    func,
    literal,
    literal_column,
    null,
    or_,
    select,
    table,
    text,
    tuple_,
    union_all,
)
from sqlalchemy.dialects.postgresql import ARRAY
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
from app.repositories.search_query import RANK, RECENT, Cursor, SearchQuery, Term

# A query matching at most ``ranked_max`` fields (titles, prompts and answers together;
# SEARCH_RANKED_MAX) is ranked: all its matches are read and scored, on every page. A
# broader one lists its matches newest first, which the created_at indexes serve by walking
# back from the newest until a page is found: ranking a word found in 3 % of a million
# messages read 2,000 of its 30,000 matches per page and took 100 ms (BENCHMARKS.md, issue 25).
RANKED_MAX = 2000
VECTORS = {
    "title": TITLE_VECTOR,
    "prompt_content": PROMPT_VECTOR,
    "response_content": RESPONSE_VECTOR,
}
# Kinds of hit, in the order ties are broken.
TITLE, PROMPT, RESPONSE = 0, 1, 2
KINDS = {TITLE_VECTOR: TITLE, PROMPT_VECTOR: PROMPT, RESPONSE_VECTOR: RESPONSE}
FIELDS = ("title", "prompt", "response")
# Private-use characters mark the matches in snippets: the caller escapes the text, then
# turns them into <mark> tags (a "<mark>" typed in a message stays text).
MARK_START, MARK_END = "\ue000", "\ue001"
_CONFIG_NAME = re.compile(r"[a-z_][a-z0-9_]*")
# The texts a page's snippets are made from, by id (built once: aliasing a mapped table
# copies its every column, each time).
_SNIPPET_MESSAGE = table(
    "messages", column("id"), column("prompt_content"), column("response_content")
).alias("snippet_message")
_SNIPPET_CONVERSATION = table("conversations", column("id"), column("title")).alias(
    "snippet_conversation"
)


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
    owner first)."""

    def __init__(
        self, session: Session, language: str = "simple", ranked_max: int = RANKED_MAX
    ) -> None:
        if not _CONFIG_NAME.fullmatch(language):
            raise ValueError(f"not a text-search configuration name: {language!r}")
        self.session = session
        self.ranked_max = ranked_max
        self.postgresql = session.get_bind().dialect.name == "postgresql"
        # A literal, as in the index expressions (a bound parameter would not match them).
        self.config = literal_column(f"'{language}'::regconfig")

    # Hits.

    def hits(
        self, query: SearchQuery, filters: Filters, take: int, after: Cursor | None
    ) -> tuple[str, list[Hit]]:
        """The first ``take`` hits past ``after``, and their order: RANK (rank, then kind,
        then id) when the query matches at most ``ranked_max`` fields, RECENT (newest first,
        then kind, then id) when it matches more. A cursor keeps its first page's order."""
        if after is not None and after.order == RANK:
            return RANK, self._ranked(query, filters, take, after)[0]
        expected = self._estimates(query)
        broad = {kind for kind, rows in expected.items() if rows > self.ranked_max}
        if after is None and sum(expected.values()) <= self.ranked_max:
            hits, counts = self._ranked(query, filters, take, None)
            if sum(counts) <= self.ranked_max:
                return RANK, hits
            # More than the statistics foresaw (words found together more often than their
            # frequencies say, or statistics not gathered yet).
            broad |= {kind for kind, rows in enumerate(counts) if rows > self.ranked_max}
        return RECENT, self._recent(query, filters, take, after, broad)

    def _ranked(
        self, query: SearchQuery, filters: Filters, take: int, after: Cursor | None
    ) -> tuple[list[Hit], list[int]]:
        """The best ``take`` hits past ``after``; on a first page, also the matches of each
        kind of hit, counted up to ``ranked_max`` + 1 (each kind's window stops there)."""
        # The limit goes outside a materialized CTE, which PostgreSQL plans for all its rows
        # (a LIMIT inside tempts it to scan the table in the hope of finding the matches
        # early) yet runs lazily, stopping at the limit.
        windows = [
            select(
                statement.cte(f"matches_{kind}").prefix_with("MATERIALIZED", dialect="postgresql")
            )
            .limit(self.ranked_max + 1)
            .cte(f"window_{kind}")
            for kind, statement in enumerate(self._selects(query, filters))
        ]
        hits = union_all(*(select(window) for window in windows)).subquery("hits")
        counts = [
            select(func.count()).select_from(window).scalar_subquery().label(f"count_{kind}")
            for kind, window in enumerate(windows)
        ]
        ordered = select(hits, *(counts if after is None else ())).order_by(
            hits.c.rank.desc(), hits.c.kind, hits.c.ref
        )
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
        rows = self._page(
            ordered.limit(take), lambda page: (page.rank.desc(), page.kind, page.ref), query
        )
        # No row on a first page: nothing matched.
        matched = [rows[0]._mapping[c.name] for c in counts] if after is None and rows else []
        return self._hits(rows, query), matched or [0] * len(windows)

    def _recent(
        self,
        query: SearchQuery,
        filters: Filters,
        take: int,
        after: Cursor | None,
        broad: set[int],
    ) -> list[Hit]:
        """The newest ``take`` hits past ``after``; ``broad``: the kinds of hit expected to
        be many, whose matches are walked newest first (the others are read and sorted)."""
        branches = []
        for kind, statement in enumerate(self._selects(query, filters)):
            model = Conversation if kind == TITLE else Message
            if after is not None:
                statement = statement.where(_written_after(model, kind, after))
            if self.postgresql and kind not in broad:
                # Few matches: all of them through the GIN index, then sorted. Left to itself
                # the planner may walk the created_at index instead, for matches it only
                # guessed at (0.5 % of the rows for a word it has no statistics for), and
                # read every row.
                matches = statement.cte(f"matches_{kind}").prefix_with("MATERIALIZED")
                branch = select(matches).order_by(matches.c.written.desc(), matches.c.ref.desc())
            else:
                branch = statement.order_by(model.created_at.desc(), model.id.desc())
            branches.append(select(branch.limit(take).subquery()))
        hits = union_all(*branches).subquery("hits")
        newest = select(hits).order_by(*_newest_first(hits.c))
        return self._hits(self._page(newest.limit(take), _newest_first, query), query)

    def _page(
        self, page: Select[Any], order: Callable[[Any], tuple[Any, ...]], query: SearchQuery
    ) -> list[Any]:
        """The rows of a page of hits; on PostgreSQL with their snippets, made in the same
        statement (for the page's rows only): ``order`` gives its order by from its columns."""
        if not self.postgresql:
            return list(self.session.execute(page))
        hits = page.subquery("page")
        message, conversation = _SNIPPET_MESSAGE, _SNIPPET_CONVERSATION
        text = case(
            (hits.c.kind == TITLE, conversation.c.title),
            (hits.c.kind == PROMPT, message.c.prompt_content),
            else_=message.c.response_content,
        )
        statement = (
            select(hits, self._headline(text, query).label("snippet"))
            .outerjoin(message, message.c.id == hits.c.message_id)
            .outerjoin(
                conversation,
                and_(hits.c.kind == TITLE, conversation.c.id == hits.c.conversation_id),
            )
            .order_by(*order(hits.c))
        )
        return list(self.session.execute(statement))

    def _hits(self, rows: list[Any], query: SearchQuery) -> list[Hit]:
        """Hits from a page's rows; on SQLite, their snippets are made here (FTS5 makes them
        in a MATCH of its own table only)."""
        if self.postgresql:
            return [_hit(row, row.snippet) for row in rows]
        snippets: dict[int, dict[int, str]] = {}
        for kind in {row.kind for row in rows}:
            ids = [row.ref for row in rows if row.kind == kind]
            snippets[kind] = self._fts5_snippets(kind, ids, query)
        return [_hit(row, snippets[row.kind].get(row.ref, "")) for row in rows]

    def _estimates(self, query: SearchQuery) -> dict[int, float]:
        """The matches each kind of hit is expected to have, from PostgreSQL's statistics
        (none on SQLite): the rows, times the share of them each term is in. A word the
        statistics do not list, being rarer than all they do, counts as in none."""
        if not self.postgresql:
            return {}
        rows: dict[int, float] = {}
        shares: dict[int, dict[int, float]] = defaultdict(lambda: defaultdict(lambda: 1.0))
        terms = [" ".join(term.words) for term in query.terms]
        for name, column_rows, n, share in self.session.execute(self._statistics, {"terms": terms}):
            kind = KINDS[name]
            rows[kind] = column_rows
            # A phrase is in at most the share of rows its words are in together.
            shares[kind][n] *= share or 0.0
        expected = {}
        for kind, column_rows in rows.items():
            for n, term in enumerate(query.terms, start=1):
                share = shares[kind][n]  # 1 for a term without a lexeme (a stop word)
                column_rows *= 1 - share if term.excluded else share
            expected[kind] = column_rows
        return expected

    @property
    def _statistics(self) -> Any:
        # pg_stats: what ANALYZE keeps of each column; for a tsvector, its most common
        # lexemes (about 1,000) and the share of the non-null rows each is in.
        return text(
            f"""
            WITH terms AS (
                SELECT t.n, l.lexeme
                FROM unnest(CAST(:terms AS text[])) WITH ORDINALITY AS t(words, n)
                CROSS JOIN LATERAL unnest(
                    tsvector_to_array(to_tsvector({self.config}, t.words))
                ) AS l(lexeme)
            ), columns AS (
                SELECT s.tablename, s.attname, s.null_frac, s.most_common_elem_freqs AS shares,
                       CAST(CAST(s.most_common_elems AS text) AS text[]) AS lexemes
                FROM pg_stats AS s
                WHERE s.schemaname = current_schema() AND NOT s.inherited
                  AND (s.tablename, s.attname) IN (
                      ('conversations', '{TITLE_VECTOR}'),
                      ('messages', '{PROMPT_VECTOR}'),
                      ('messages', '{RESPONSE_VECTOR}'))
            )
            SELECT c.attname, greatest(r.reltuples, 0) * (1 - c.null_frac), terms.n,
                   c.shares[array_position(c.lexemes, terms.lexeme)]
            FROM columns AS c
            JOIN pg_class AS r
              ON r.oid = to_regclass(quote_ident(current_schema()) || '.' || c.tablename)
            CROSS JOIN terms
            """
        ).bindparams(bindparam("terms", type_=ARRAY(Text)))

    def _selects(self, query: SearchQuery, filters: Filters) -> list[Select[Any]]:
        """Each kind of hit's matches, in the order of their kinds."""
        return [self._titles(query, filters), *self._messages(query, filters)]

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
            Conversation.created_at.label("written"),
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
                Message.created_at.label("written"),
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

    def _fts5_snippets(self, kind: int, ids: list[int], query: SearchQuery) -> dict[int, str]:
        """SQLite: the matched field's text around its matches, by conversation or message id."""
        fts_name = (FTS_TITLES, FTS_PROMPTS, FTS_RESPONSES)[kind]
        fts = fts_table(fts_name)
        snippet = func.snippet(literal_column(fts_name), 0, MARK_START, MARK_END, "…", 24)
        statement = select(fts.c.rowid, snippet).where(
            fts.c[fts_name].op("MATCH")(bindparam(None, fts5_query(query))),
            fts.c.rowid.in_(ids),
        )
        return {int(uid): text for uid, text in self.session.execute(statement)}

    def _headline(self, text: ColumnElement[Any], query: SearchQuery) -> ColumnElement[str]:
        """PostgreSQL: ``text`` around the query's matches, marked."""
        options = (
            f"StartSel={MARK_START}, StopSel={MARK_END}, MaxWords=30, MinWords=10, "
            'ShortWord=0, MaxFragments=2, FragmentDelimiter=" … "'
        )
        text = func.coalesce(text, literal_column("''"))
        return func.ts_headline(self.config, text, self._tsquery(query), options)


def _hit(row: Any, snippet: str) -> Hit:
    return Hit(row.conversation_id, row.message_id, row.kind, float(row.rank), row.written, snippet)


def _newest_first(columns: Any) -> tuple[Any, ...]:
    return columns.written.desc(), columns.kind, columns.ref.desc()


def _written_after(model: Any, kind: int, after: Cursor) -> ColumnElement[bool]:
    """Hits of ``kind`` past ``after`` newest first: written earlier, or at the same time
    and of a later kind, or of the same kind with a lower id (the order's ties)."""
    if kind > after.kind:
        return model.created_at <= after.written
    if kind < after.kind:
        return model.created_at < after.written
    return tuple_(model.created_at, model.id) < (after.written, after.ref)


def fts5_query(query: SearchQuery) -> str:
    """The query in FTS5's syntax: every term a quoted phrase (words are letters and digits)."""

    def phrase(term: Term) -> str:
        return '"' + " ".join(term.words) + '"'

    expression = " AND ".join(phrase(term) for term in query.wanted)
    for term in query.excluded:
        expression = f"({expression}) NOT {phrase(term)}"
    return expression
