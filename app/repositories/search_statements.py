"""The search's SELECT statements, ranked and newest first, assembled from each engine's parts
and built once per shape (the values are bound parameters)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Integer,
    Select,
    and_,
    bindparam,
    false,
    func,
    literal,
    null,
    or_,
    select,
    tuple_,
    union_all,
)

from app.models import Conversation, Message, UTCDateTime
from app.repositories import search_postgres, search_sqlite
from app.repositories.search_fields import SOURCES, TITLE

_WRITTEN = UTCDateTime()
TAKE = bindparam("take", type_=Integer)


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


# The shapes in use are few (a query's terms, wanted or excluded, and its filters), and each
# statement is a large tree of Python objects: they are cached, not built per search.


@lru_cache(maxsize=32)
def ranked_statement(shape: Shape, paged: bool) -> Select[Any]:
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
def newest_statement(shape: Shape, after_kind: int | None, walked: frozenset[int]) -> Select[Any]:
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
            # guessed at, and read every row.
            matches = statement.cte(f"matches_{kind}").prefix_with("MATERIALIZED")
            branch = select(matches).order_by(matches.c.written.desc(), matches.c.ref.desc())
        else:
            branch = statement.order_by(model.created_at.desc(), model.id.desc())
        branches.append(select(branch.limit(TAKE).subquery()))
    hits = union_all(*branches).subquery("hits")
    ordered = select(hits).order_by(*_newest_first(hits.c))
    return _page(shape, ordered, _newest_first, ranked=not shape.postgresql)


def _page(shape: Shape, ordered: Select[Any], order: Any, *, ranked: bool = True) -> Select[Any]:
    """``ordered``, limited to ``take``; on PostgreSQL with each row's snippet, and its rank
    unless ``ranked`` already (``order`` gives its order by from columns)."""
    page = ordered.limit(TAKE)
    if not shape.postgresql:
        return page
    return search_postgres.with_snippets(page, order, shape.language, shape.excluded, ranked=ranked)


def _selects(shape: Shape, *, ranked: bool = True) -> list[Select[Any]]:
    """Each kind of hit's matches, in the order of their kinds: conversation_id,
    message_id, kind, ref (the title's conversation or the message), written, and rank if
    ``ranked``."""
    selects = []
    for kind, (source, _, vector, fts_name) in enumerate(SOURCES):
        model = Conversation if kind == TITLE else Message
        if shape.postgresql:
            match, rank = search_postgres.match(source, vector, shape.language, shape.excluded)
        else:
            match, rank = search_sqlite.match(fts_name)
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
            statement = search_sqlite.from_matches(statement, fts_name, model)
        if kind != TITLE:
            statement = statement.join(Conversation, Conversation.id == Message.conversation_id)
        selects.append(statement.where(match, *_conditions(shape, model.created_at)))
    return selects


def _conditions(shape: Shape, created_at: Any) -> list[ColumnElement[bool]]:
    # Temporary conversations are never found: they are meant to leave no trace.
    conditions: list[ColumnElement[bool]] = [Conversation.temporary == false()]
    if shape.owner:
        conditions.append(Conversation.owner_id == bindparam("owner_id", type_=BigInteger))
    if shape.model:
        conditions.append(Conversation.model_type == bindparam("model"))
    if shape.since:
        conditions.append(created_at >= bindparam("since", type_=_WRITTEN))
    if shape.until:
        conditions.append(created_at < bindparam("until", type_=_WRITTEN))
    if shape.metadata:
        conditions.append(
            search_postgres.metadata_matches()
            if shape.postgresql
            else search_sqlite.metadata_matches(shape.metadata)
        )
    return conditions


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


def _best_first(columns: Any) -> tuple[Any, ...]:
    return columns.rank.desc(), columns.kind, columns.ref


def _newest_first(columns: Any) -> tuple[Any, ...]:
    return columns.written.desc(), columns.kind, columns.ref.desc()
