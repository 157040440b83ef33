"""PostgreSQL's parts of the search statements: tsquery matches over the stored tsvectors,
ts_rank, ts_headline snippets and metadata containment."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Double,
    Select,
    Text,
    and_,
    bindparam,
    case,
    cast,
    column,
    func,
    literal_column,
    select,
    table,
    type_coerce,
)
from sqlalchemy.dialects.postgresql import JSONB

from app.models import Conversation
from app.models.unmanaged import PROMPT_VECTOR, RESPONSE_VECTOR, TITLE_VECTOR
from app.repositories.search_fields import MARK_END, MARK_START, PROMPT, TITLE

HEADLINE = (
    f"StartSel={MARK_START}, StopSel={MARK_END}, MaxWords=30, MinWords=10, "
    'ShortWord=0, MaxFragments=2, FragmentDelimiter=" … "'
)
# What a page's snippets (and newest-first ranks) are made from, by id (aliasing a mapped
# table would copy its every column).
PAGE_MESSAGE = table(
    "messages",
    column("id"),
    column("prompt_content"),
    column("response_content"),
    column(PROMPT_VECTOR),
    column(RESPONSE_VECTOR),
).alias("page_message")
PAGE_CONVERSATION = table(
    "conversations", column("id"), column("title"), column(TITLE_VECTOR)
).alias("page_conversation")


def match(
    source: str, vector: str, language: str, excluded: tuple[bool, ...]
) -> tuple[ColumnElement[bool], ColumnElement[float]]:
    """The match of ``source``'s stored tsvector ``vector`` against the query, and its rank."""
    indexed = literal_column(f"{source}.{vector}")
    return indexed.op("@@")(tsquery(language, excluded)), rank(language, excluded, indexed)


def metadata_matches() -> ColumnElement[bool]:
    """Conversations whose metadata holds every pair bound as ``metadata`` (@>, served by GIN)."""
    return type_coerce(Conversation.meta, JSONB).contains(bindparam("metadata", type_=JSONB))


def with_snippets(
    page: Select[Any],
    order: Callable[[Any], tuple[Any, ...]],
    language: str,
    excluded: tuple[bool, ...],
    *,
    ranked: bool,
) -> Select[Any]:
    """``page`` with each row's snippet, and its rank unless ``ranked`` already, made in the
    same statement for the page's rows only (``order`` gives its order by from columns)."""
    hits = page.subquery("page")
    message, conversation = PAGE_MESSAGE, PAGE_CONVERSATION

    def field(title: str, prompt: str, response: str) -> ColumnElement[Any]:
        return case(
            (hits.c.kind == TITLE, conversation.c[title]),
            (hits.c.kind == PROMPT, message.c[prompt]),
            else_=message.c[response],
        )

    matched = field("title", "prompt_content", "response_content")
    snippet = func.ts_headline(
        config(language),
        func.coalesce(matched, literal_column("''")),
        tsquery(language, excluded),
        HEADLINE,
    )
    columns = [hits, snippet.label("snippet")]
    if not ranked:
        columns.append(
            rank(language, excluded, field(TITLE_VECTOR, PROMPT_VECTOR, RESPONSE_VECTOR))
        )
    return (
        select(*columns)
        .outerjoin(message, message.c.id == hits.c.message_id)
        .outerjoin(
            conversation, and_(hits.c.kind == TITLE, conversation.c.id == hits.c.conversation_id)
        )
        .order_by(*order(hits.c))
    )


def rank(
    language: str, excluded: tuple[bool, ...], vector: ColumnElement[Any]
) -> ColumnElement[float]:
    """A tsvector's rank by the wanted terms alone (with a negation ts_rank comes out near 0),
    as double precision so that a cursor's rank compares exactly."""
    wanted = tsquery(language, excluded, wanted_only=True)
    return cast(func.ts_rank(vector, wanted), Double).label("rank")


def config(language: str) -> ColumnElement[Any]:
    # A literal, as in the index expressions (a bound parameter would not match them).
    return literal_column(f"'{language}'::regconfig")


def tsquery(
    language: str, excluded: tuple[bool, ...], *, wanted_only: bool = False
) -> ColumnElement[Any]:
    """The query's terms (term_0, term_1...) as a tsquery: every wanted one, then none of
    the excluded ones (``excluded``: each term, in order, excluded?)."""

    def phrase(n: int) -> ColumnElement[Any]:
        return func.phraseto_tsquery(config(language), bindparam(f"term_{n}", type_=Text))

    combined = None
    for n, is_excluded in enumerate(excluded):
        if not is_excluded:
            combined = phrase(n) if combined is None else func.tsquery_and(combined, phrase(n))
    for n, is_excluded in enumerate(excluded):
        if is_excluded and not wanted_only:
            combined = func.tsquery_and(combined, func.tsquery_not(phrase(n)))
    assert combined is not None  # a SearchQuery has at least one wanted term
    return combined
