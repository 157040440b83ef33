"""Full-text search over titles, prompts and answers: PostgreSQL GIN, SQLite FTS5.

The columns and tables here are those migration 0005 creates (app/models.py). A query
matching at most ``ranked_max`` fields (titles, prompts and answers together;
SEARCH_RANKED_MAX) is ranked: all its matches are read and scored, on every page. A broader
one lists its matches newest first, which the created_at indexes of migration 0013 serve by
walking back from the newest until a page is found: ranking a word found in 3 % of a million
messages read 2,000 of its 30,000 matches per page (BENCHMARKS.md, issue 25).

Each statement is built once per shape (its values are bound parameters): building them per
call took about half of a search's time in Python.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cache, lru_cache
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Double,
    Integer,
    Select,
    Text,
    TextClause,
    and_,
    bindparam,
    case,
    cast,
    column,
    exists,
    func,
    literal,
    literal_column,
    null,
    or_,
    select,
    table,
    text,
    tuple_,
    type_coerce,
    union_all,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
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
    UTCDateTime,
)
from app.repositories.search_query import RANK, RECENT, Cursor, SearchQuery, Term

RANKED_MAX = 2000  # SEARCH_RANKED_MAX's default
# Of the rows holding all of a phrase's words, the share where they are next to each other:
# a guess, that keeps a phrase of common words walked newest first and reads one of words
# seldom side by side through the index (walking for it could read most of the table).
ADJACENT = 0.1
# Kinds of hit, in the order ties are broken.
TITLE, PROMPT, RESPONSE = 0, 1, 2
FIELDS = ("title", "prompt", "response")
# Per kind: the searched table and column, its stored tsvector (PostgreSQL), its FTS5 table.
SOURCES = (
    ("conversations", "title", TITLE_VECTOR, FTS_TITLES),
    ("messages", "prompt_content", PROMPT_VECTOR, FTS_PROMPTS),
    ("messages", "response_content", RESPONSE_VECTOR, FTS_RESPONSES),
)
KINDS = {vector: kind for kind, (_, _, vector, _) in enumerate(SOURCES)}
# Private-use characters mark the matches in snippets: the caller escapes the text, then
# turns them into <mark> tags (a "<mark>" typed in a message stays text).
MARK_START, MARK_END = "\ue000", "\ue001"
HEADLINE = (
    f"StartSel={MARK_START}, StopSel={MARK_END}, MaxWords=30, MinWords=10, "
    'ShortWord=0, MaxFragments=2, FragmentDelimiter=" … "'
)
_CONFIG_NAME = re.compile(r"[a-z_][a-z0-9_]*")
# What a page's snippets (and newest-first ranks) are made from, by id (aliasing a mapped
# table would copy its every column).
_PAGE_MESSAGE = table(
    "messages",
    column("id"),
    column("prompt_content"),
    column("response_content"),
    column(PROMPT_VECTOR),
    column(RESPONSE_VECTOR),
).alias("page_message")
_PAGE_CONVERSATION = table(
    "conversations", column("id"), column("title"), column(TITLE_VECTOR)
).alias("page_conversation")
_WRITTEN = UTCDateTime()
_TAKE = bindparam("take", type_=Integer)


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


@dataclass(frozen=True)
class Shape:
    """What the text of a search's statements depends on; the rest is bound parameters."""

    postgresql: bool
    language: str
    excluded: tuple[bool, ...]  # each term of the query, in order: excluded?
    owner: bool
    model: bool
    since: bool
    until: bool
    metadata: int  # pairs


class SearchRepository:
    """Full-text hits, ranked or newest first; every query is limited by ``Filters`` (the
    owner first)."""

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
        # What a ranked first page counted: the kinds of hit whose matches it counted in
        # full, and of the one whose matches filled its window, at least how many.
        full: set[int] = set()
        at_least: list[int | None] = [None] * len(SOURCES)
        if after is None and sum(e.matches for e in statistics.values()) <= self.ranked_max:
            hits, counts = self._ranked(shape, params, query, None)
            if sum(counts) <= self.ranked_max:
                return RANK, hits
            # More than the statistics foresaw (a word they do not list, words found
            # together more often than their shares say, or no statistics yet). The
            # window holds the kinds in turn: it filled up in the last one it holds.
            last = max(kind for kind, n in enumerate(counts) if n)
            full, at_least[last] = set(range(last)), counts[last]
        unknown = Expected(0.0, 0.0, float("inf"))  # no statistics: read, or walk past a window
        walked = frozenset(
            kind
            for kind in range(len(SOURCES))
            if kind not in full and statistics.get(kind, unknown).walked(take, at_least[kind])
        )
        after_kind = None
        if after is not None:
            after_kind = after.kind
            params |= {"after_written": after.written, "after_ref": after.ref}
        statement = _newest_statement(shape, after_kind, walked)
        return RECENT, self._hits(self.session.execute(statement, params).all(), query)

    def _ranked(
        self, shape: Shape, params: dict[str, Any], query: SearchQuery, after: Cursor | None
    ) -> tuple[list[Hit], list[int]]:
        """The best hits past ``after``; on a first page, also the matches of each kind of
        hit in the window (the first ``ranked_max`` + 1 matches, titles first)."""
        params = params | {"window": self.ranked_max + 1}
        if after is not None:
            params |= {"after_rank": after.rank, "after_kind": after.kind, "after_ref": after.ref}
        rows = self.session.execute(_ranked_statement(shape, after is not None), params).all()
        counts = [0] * len(SOURCES)  # no row on a first page: nothing matched
        if after is None and rows:
            counts = [rows[0]._mapping[f"count_{kind}"] for kind in range(len(SOURCES))]
        return self._hits(rows, query), counts

    def _hits(self, rows: list[Any], query: SearchQuery) -> list[Hit]:
        """Hits from a page's rows; on SQLite, their snippets are made here (FTS5 makes them
        in a MATCH of its own table only)."""
        if self.postgresql:
            return [_hit(row, row.snippet) for row in rows]
        snippets: dict[int, dict[int, str]] = {}
        for kind in {row.kind for row in rows}:
            ids = [row.ref for row in rows if row.kind == kind]
            found = self.session.execute(
                _fts5_snippets(kind), {"fts": fts5_query(query), "ids": ids}
            )
            snippets[kind] = {int(uid): text for uid, text in found}
        return [_hit(row, snippets[row.kind].get(row.ref, "")) for row in rows]

    def _statistics(self, query: SearchQuery) -> dict[int, Expected]:
        """What each kind of hit is expected to match, from PostgreSQL's statistics (none
        on SQLite, nor before ANALYZE)."""
        if not self.postgresql:
            return {}
        rows: dict[int, float] = {}
        shares: dict[int, dict[int, float]] = defaultdict(lambda: defaultdict(lambda: 1.0))
        most: dict[int, dict[int, float]] = defaultdict(lambda: defaultdict(lambda: 1.0))
        lexemes: dict[int, dict[int, int]] = defaultdict(lambda: defaultdict(int))
        terms = [" ".join(term.words) for term in query.terms]
        found = self.session.execute(_statistics(self.language), {"terms": terms})
        for vector, column_rows, least_share, n, share in found:
            kind = KINDS[vector]
            rows[kind] = column_rows
            shares[kind][n] *= share or 0.0
            # A lexeme not listed is in fewer rows than any that is (none listed: in any).
            unlisted = 1.0 if least_share is None else least_share
            most[kind][n] = min(most[kind][n], share or unlisted)
            lexemes[kind][n] += 1
        expected = {}
        for kind, column_rows in rows.items():
            matches, at_most = column_rows, 1.0
            for n, term in enumerate(query.terms, start=1):
                # 1 for a term without a lexeme (a stop word): it matches anything.
                share = shares[kind][n] * (ADJACENT if lexemes[kind][n] > 1 else 1.0)
                matches *= 1 - share if term.excluded else share
                if not term.excluded:
                    at_most = min(at_most, most[kind][n])
            expected[kind] = Expected(column_rows, matches, column_rows * at_most)
        return expected


@dataclass(frozen=True)
class Expected:
    """Of one kind of hit, from PostgreSQL's statistics: the rows searched, the matches
    expected (a word not listed counting as in none, the terms as found independently)
    and at most (those of the rarest wanted word, one not listed being in fewer rows than
    any that is)."""

    rows: float
    matches: float
    at_most: float

    def walked(self, take: int, at_least: int | None) -> bool:
        """Whether to walk the rows newest first rather than read every match: walking
        reads about take * rows / matches rows, reading reads the matches. ``at_least``:
        the matches a ranked first page counted before its window filled up."""
        if at_least is None:
            return self.matches * self.matches > take * self.rows
        # Walk unless reading all there can be costs less than the longest walk.
        return self.at_most > take * self.rows / at_least


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


# Statements, built once per shape: the shapes in use are few (a query's terms, wanted or
# excluded, and its filters), and a statement holds about 180 KiB of Python objects.


@lru_cache(maxsize=32)
def _ranked_statement(shape: Shape, paged: bool) -> Select[Any]:
    """The best ``take`` hits (past after_rank, after_kind, after_ref when ``paged``) of the
    first ``window`` matches, titles first, then prompts, then answers; a first page also
    counts each kind's matches among them (count_0 to count_2)."""
    # The window goes outside materialized CTEs, which PostgreSQL plans for all their rows
    # (a LIMIT inside tempts it to scan the table in the hope of finding the matches
    # early) yet runs lazily: reading the kinds in turn, it stops at the window.
    matches = [
        select(statement.cte(f"matches_{kind}").prefix_with("MATERIALIZED", dialect="postgresql"))
        for kind, statement in enumerate(_selects(shape))
    ]
    hits = union_all(*matches).limit(bindparam("window", type_=Integer)).cte("hits")
    counts = [
        select(func.count()).where(hits.c.kind == kind).scalar_subquery().label(f"count_{kind}")
        for kind in range(len(SOURCES))
    ]
    ordered = select(hits, *(() if paged else counts)).order_by(*_best_first(hits.c))
    if paged:
        rank, kind, ref = bindparam("after_rank"), bindparam("after_kind"), bindparam("after_ref")
        ordered = ordered.where(
            or_(
                hits.c.rank < rank,
                and_(
                    hits.c.rank == rank,
                    or_(hits.c.kind > kind, and_(hits.c.kind == kind, hits.c.ref > ref)),
                ),
            )
        )
    return _page(shape, ordered, _best_first)


@lru_cache(maxsize=32)
def _newest_statement(shape: Shape, after_kind: int | None, walked: frozenset[int]) -> Select[Any]:
    """The newest ``take`` hits (past after_written, ``after_kind``, after_ref when
    ``after_kind`` is given); ``walked``: the kinds of hit whose rows are walked newest first
    (the others' matches are read, then sorted)."""
    branches = []
    # PostgreSQL ranks the page's rows only (FTS5 ranks in a MATCH of its own table).
    for kind, statement in enumerate(_selects(shape, ranked=not shape.postgresql)):
        model = Conversation if kind == TITLE else Message
        if after_kind is not None:
            statement = statement.where(_written_after(model, kind, after_kind))
        if shape.postgresql and kind not in walked:
            # Few matches: all of them through the GIN index, then sorted. Left to itself
            # the planner may walk the created_at index instead, for matches it only
            # guessed at (0.5 % of the rows for a word it has no statistics for), and
            # read every row.
            matches = statement.cte(f"matches_{kind}").prefix_with("MATERIALIZED")
            branch = select(matches).order_by(matches.c.written.desc(), matches.c.ref.desc())
        else:
            branch = statement.order_by(model.created_at.desc(), model.id.desc())
        branches.append(select(branch.limit(_TAKE).subquery()))
    hits = union_all(*branches).subquery("hits")
    ordered = select(hits).order_by(*_newest_first(hits.c))
    return _page(shape, ordered, _newest_first, ranked=not shape.postgresql)


def _page(shape: Shape, ordered: Select[Any], order: Any, *, ranked: bool = True) -> Select[Any]:
    """``ordered``, limited to ``take``; on PostgreSQL with each row's snippet, and its rank
    unless ``ranked`` already, made in the same statement for the page's rows only
    (``order`` gives its order by from columns)."""
    page = ordered.limit(_TAKE)
    if not shape.postgresql:
        return page
    hits = page.subquery("page")
    message, conversation = _PAGE_MESSAGE, _PAGE_CONVERSATION

    def field(title: str, prompt: str, response: str) -> ColumnElement[Any]:
        return case(
            (hits.c.kind == TITLE, conversation.c[title]),
            (hits.c.kind == PROMPT, message.c[prompt]),
            else_=message.c[response],
        )

    matched = field("title", "prompt_content", "response_content")
    snippet = func.ts_headline(
        _config(shape), func.coalesce(matched, literal_column("''")), _tsquery(shape), HEADLINE
    )
    columns = [hits, snippet.label("snippet")]
    if not ranked:
        columns.append(_rank(shape, field(TITLE_VECTOR, PROMPT_VECTOR, RESPONSE_VECTOR)))
    return (
        select(*columns)
        .outerjoin(message, message.c.id == hits.c.message_id)
        .outerjoin(
            conversation, and_(hits.c.kind == TITLE, conversation.c.id == hits.c.conversation_id)
        )
        .order_by(*order(hits.c))
    )


def _selects(shape: Shape, *, ranked: bool = True) -> list[Select[Any]]:
    """Each kind of hit's matches, in the order of their kinds: conversation_id,
    message_id, kind, ref (the title's conversation or the message), written, and rank if
    ``ranked``."""
    selects = []
    for kind, (source, _, vector, fts_name) in enumerate(SOURCES):
        model = Conversation if kind == TITLE else Message
        if shape.postgresql:
            indexed = literal_column(f"{source}.{vector}")  # migration 0005's stored tsvector
            match = indexed.op("@@")(_tsquery(shape))
            rank = _rank(shape, indexed)
        else:
            fts = fts_table(fts_name)
            match = fts.c[fts_name].op("MATCH")(bindparam("fts"))
            # bm25 is lower for better matches.
            rank = (-func.bm25(literal_column(fts_name))).label("rank")
        if kind == TITLE:
            columns = [
                Conversation.id.label("conversation_id"),
                null().cast(Integer).label("message_id"),
                literal(kind).label("kind"),
                Conversation.id.label("ref"),
                Conversation.created_at.label("written"),
            ]
        else:
            columns = [
                Message.conversation_id.label("conversation_id"),
                Message.id.label("message_id"),
                literal(kind).label("kind"),
                Message.id.label("ref"),
                Message.created_at.label("written"),
            ]
        statement = select(*columns, *([rank] if ranked else []))
        if shape.postgresql:
            statement = statement.select_from(model)
        else:
            fts = fts_table(fts_name)
            statement = statement.select_from(fts).join(model, model.id == fts.c.rowid)
        if kind != TITLE:
            statement = statement.join(Conversation, Conversation.id == Message.conversation_id)
        selects.append(statement.where(match, *_conditions(shape, model.created_at)))
    return selects


def _conditions(shape: Shape, created_at: Any) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if shape.owner:
        conditions.append(Conversation.owner_id == bindparam("owner_id", type_=BigInteger))
    if shape.model:
        conditions.append(Conversation.model_type == bindparam("model"))
    if shape.since:
        conditions.append(created_at >= bindparam("since", type_=_WRITTEN))
    if shape.until:
        conditions.append(created_at < bindparam("until", type_=_WRITTEN))
    if shape.metadata:
        conditions.append(_metadata_matches(shape))
    return conditions


def _metadata_matches(shape: Shape) -> ColumnElement[bool]:
    """Conversations whose metadata holds every pair, bound as metadata (PostgreSQL: @>,
    served by GIN) or metadata_key_n and metadata_value_n (SQLite), as
    app.repositories.conversations.metadata_matches does it for values."""
    if shape.postgresql:
        return type_coerce(Conversation.meta, JSONB).contains(bindparam("metadata", type_=JSONB))
    entries = func.json_each(Conversation.meta).table_valued("key", "value")
    return and_(
        *(
            exists()
            .select_from(entries)
            .where(
                entries.c.key == bindparam(f"metadata_key_{n}"),
                entries.c.value == bindparam(f"metadata_value_{n}"),
            )
            for n in range(shape.metadata)
        )
    )


def _rank(shape: Shape, vector: ColumnElement[Any]) -> ColumnElement[float]:
    """PostgreSQL: a tsvector's rank by the wanted terms alone (with a negation ts_rank
    comes out near 0), as double precision so that a cursor's rank compares exactly."""
    return cast(func.ts_rank(vector, _tsquery(shape, wanted_only=True)), Double).label("rank")


def _config(shape: Shape) -> ColumnElement[Any]:
    # A literal, as in the index expressions (a bound parameter would not match them).
    return literal_column(f"'{shape.language}'::regconfig")


def _tsquery(shape: Shape, *, wanted_only: bool = False) -> ColumnElement[Any]:
    """The query's terms (term_0, term_1...) as a tsquery: every wanted one, then none of
    the excluded ones."""

    def phrase(n: int) -> ColumnElement[Any]:
        return func.phraseto_tsquery(_config(shape), bindparam(f"term_{n}", type_=Text))

    combined = None
    for n, excluded in enumerate(shape.excluded):
        if not excluded:
            combined = phrase(n) if combined is None else func.tsquery_and(combined, phrase(n))
    for n, excluded in enumerate(shape.excluded):
        if excluded and not wanted_only:
            combined = func.tsquery_and(combined, func.tsquery_not(phrase(n)))
    assert combined is not None  # a SearchQuery has at least one wanted term
    return combined


def _written_after(model: Any, kind: int, after_kind: int) -> ColumnElement[bool]:
    """Hits of ``kind`` past the cursor newest first: written earlier, or at the same time
    and of a later kind, or of the same kind with a lower id (the order's ties)."""
    written = bindparam("after_written", type_=_WRITTEN)
    if kind > after_kind:
        return model.created_at <= written
    if kind < after_kind:
        return model.created_at < written
    return tuple_(model.created_at, model.id) < tuple_(
        written, bindparam("after_ref", type_=BigInteger)
    )


@lru_cache(maxsize=4)
def _fts5_snippets(kind: int) -> Select[Any]:
    """SQLite: the matched field's text around the matches of ``fts``, by id (``ids``)."""
    fts_name = SOURCES[kind][3]
    fts = fts_table(fts_name)
    snippet = func.snippet(literal_column(fts_name), 0, MARK_START, MARK_END, "…", 24)
    return select(fts.c.rowid, snippet).where(
        fts.c[fts_name].op("MATCH")(bindparam("fts")),
        fts.c.rowid.in_(bindparam("ids", expanding=True)),
    )


@lru_cache(maxsize=4)
def _statistics(language: str) -> TextClause:
    """What PostgreSQL's statistics say of each term (``terms``, numbered from 1) in each
    searched column: rows of (column, its rows, the least share listed, term, share of the
    rows holding one of the term's lexemes, NULL when not listed). pg_stats keeps, of a
    tsvector column, its most common lexemes (about 1,000) and the share of its non-null
    rows each is in, followed by the least and greatest of those shares."""
    return text(
        f"""
        WITH terms AS (
            SELECT t.n, l.lexeme
            FROM unnest(CAST(:terms AS text[])) WITH ORDINALITY AS t(words, n)
            CROSS JOIN LATERAL unnest(
                tsvector_to_array(to_tsvector('{language}'::regconfig, t.words))
            ) AS l(lexeme)
        ), columns AS MATERIALIZED (
            SELECT s.tablename, s.attname, s.null_frac, s.most_common_elem_freqs AS shares,
                   CAST(CAST(s.most_common_elems AS text) AS text[]) AS lexemes
            FROM pg_stats AS s
            WHERE s.schemaname = current_schema() AND NOT s.inherited
              AND (s.tablename, s.attname) IN (
                  ('conversations', '{TITLE_VECTOR}'),
                  ('messages', '{PROMPT_VECTOR}'),
                  ('messages', '{RESPONSE_VECTOR}'))
        )
        SELECT c.attname, greatest(r.reltuples, 0) * (1 - c.null_frac),
               c.shares[cardinality(c.lexemes) + 1], terms.n,
               c.shares[array_position(c.lexemes, terms.lexeme)]
        FROM columns AS c
        JOIN pg_class AS r
          ON r.oid = to_regclass(quote_ident(current_schema()) || '.' || c.tablename)
        CROSS JOIN terms
        """
    ).bindparams(bindparam("terms", type_=ARRAY(Text)))


def _hit(row: Any, snippet: str) -> Hit:
    return Hit(row.conversation_id, row.message_id, row.kind, float(row.rank), row.written, snippet)


def _best_first(columns: Any) -> tuple[Any, ...]:
    return columns.rank.desc(), columns.kind, columns.ref


def _newest_first(columns: Any) -> tuple[Any, ...]:
    return columns.written.desc(), columns.kind, columns.ref.desc()


def fts5_query(query: SearchQuery) -> str:
    """The query in FTS5's syntax: every term a quoted phrase (words are letters and digits)."""

    def phrase(term: Term) -> str:
        return '"' + " ".join(term.words) + '"'

    expression = " AND ".join(phrase(term) for term in query.wanted)
    for term in query.excluded:
        expression = f"({expression}) NOT {phrase(term)}"
    return expression
