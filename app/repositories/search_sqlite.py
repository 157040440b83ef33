"""SQLite's parts of the search statements: FTS5 MATCH and bm25 over the FTS5 tables, the
query in FTS5's syntax, snippets by id and metadata pairs through json_each."""

from __future__ import annotations

from functools import cache, lru_cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    bindparam,
    column,
    exists,
    func,
    literal_column,
    select,
    table,
)
from sqlalchemy.sql.expression import TableClause

from app.models import Conversation
from app.repositories.search_fields import MARK_END, MARK_START, SOURCES
from app.repositories.search_query import SearchQuery, Term


@cache  # one object per table: SQLAlchemy tells FROM elements apart by identity
def fts_table(name: str) -> TableClause:
    """An FTS5 table: its rowid, and the hidden column of its own name that MATCH takes."""
    return table(name, column(name), column("rowid"))


def match(fts_name: str) -> tuple[ColumnElement[bool], ColumnElement[float]]:
    """The match of the FTS5 table ``fts_name`` against ``fts``, and its rank."""
    fts = fts_table(fts_name)
    matched = fts.c[fts_name].op("MATCH")(bindparam("fts"))
    # bm25 is lower for better matches.
    rank = (-func.bm25(literal_column(fts_name))).label("rank")
    return matched, rank


def from_matches(statement: Select[Any], fts_name: str, model: Any) -> Select[Any]:
    """``statement`` reading the FTS5 table ``fts_name``, joined to the rows it indexes."""
    fts = fts_table(fts_name)
    return statement.select_from(fts).join(model, model.id == fts.c.rowid)


def metadata_matches(pairs: int) -> ColumnElement[bool]:
    """Conversations whose metadata holds every pair, bound as metadata_key_n and
    metadata_value_n, as app.repositories.conversations.metadata_matches does it for values."""
    entries = func.json_each(Conversation.meta).table_valued("key", "value")
    return and_(
        *(
            exists()
            .select_from(entries)
            .where(
                entries.c.key == bindparam(f"metadata_key_{n}"),
                entries.c.value == bindparam(f"metadata_value_{n}"),
            )
            for n in range(pairs)
        )
    )


@lru_cache(maxsize=4)
def snippets_statement(kind: int) -> Select[Any]:
    """The matched field's text around the matches of ``fts``, by id (``ids``): FTS5 makes
    snippets in a MATCH of its own table only."""
    fts_name = SOURCES[kind][3]
    fts = fts_table(fts_name)
    snippet = func.snippet(literal_column(fts_name), 0, MARK_START, MARK_END, "…", 24)
    return select(fts.c.rowid, snippet).where(
        fts.c[fts_name].op("MATCH")(bindparam("fts")),
        fts.c.rowid.in_(bindparam("ids", expanding=True)),
    )


def fts5_query(query: SearchQuery) -> str:
    """The query in FTS5's syntax: every term a quoted phrase (words are letters and digits)."""

    def phrase(term: Term) -> str:
        return '"' + " ".join(term.words) + '"'

    expression = " AND ".join(phrase(term) for term in query.wanted)
    for term in query.excluded:
        expression = f"({expression}) NOT {phrase(term)}"
    return expression
