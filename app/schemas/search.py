"""Full-text search: its query arguments and its page of results."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate

from app.repositories.search_plan import RANKED_MAX
from app.repositories.search_query import (
    QUERY_MAX,
    RANK,
    RECENT,
    Cursor,
    QueryError,
    SearchQuery,
    parse,
)
from app.schemas.fields import Owner, UtcDateTime, model_type_field
from app.schemas.metadata import MetadataFilterArgs
from app.schemas.paging import MAX_PAGE


class SearchQueryField(fields.String):
    """A search query, parsed: words, "quoted phrases", -exclusions."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> SearchQuery:
        text = super()._deserialize(value, attr, data, **kwargs)
        try:
            return parse(text)
        except QueryError as error:
            raise ValidationError(str(error)) from error


class CursorField(fields.String):
    """The opaque cursor of a page of search results."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Cursor:
        text = super()._deserialize(value, attr, data, **kwargs)
        try:
            return Cursor.decode(text)
        except QueryError as error:
            raise ValidationError(str(error)) from error


SEARCH_PAGE = 20


class SearchArgs(MetadataFilterArgs):
    q = SearchQueryField(
        required=True,
        metadata={
            "minLength": 1,
            "maxLength": QUERY_MAX,
            "description": 'Words (all must match), "quoted phrases", and -excluded words or '
            '-"phrases". Case is ignored; accents are not.',
        },
    )
    take = fields.Integer(
        load_default=SEARCH_PAGE,
        validate=validate.Range(min=1, max=MAX_PAGE),
        metadata={"description": f"Results to return (1 to {MAX_PAGE})."},
    )
    cursor = CursorField(
        load_default=None,
        metadata={"description": "next_cursor of the previous page (the Link header has it)."},
    )
    model = model_type_field(
        load_default=None, metadata={"description": "Only conversations with this model_type."}
    )
    since = UtcDateTime(
        data_key="from",
        load_default=None,
        default_timezone=UTC,
        metadata={"description": "Only text written at or after this time (ISO 8601)."},
    )
    until = UtcDateTime(
        data_key="to",
        load_default=None,
        default_timezone=UTC,
        metadata={"description": "Only text written before this time (ISO 8601)."},
    )
    owner = Owner()


class SearchResultOut(Schema):
    conversation_id = fields.Integer()
    message_id = fields.Integer(
        allow_none=True, metadata={"description": "null when the title matched."}
    )
    field = fields.String(
        validate=validate.OneOf(["title", "prompt", "response"]),
        metadata={"description": "What matched: title, prompt or response."},
    )
    snippet = fields.String(
        metadata={"description": "The text around the matches, HTML-escaped, matches in <mark>."}
    )
    rank = fields.Float(
        metadata={"description": "Relevance: higher is better (the order when order is rank)."}
    )


class SearchPageOut(Schema):
    results = fields.List(
        fields.Nested(SearchResultOut), metadata={"description": "In the page's order."}
    )
    next_cursor = fields.String(
        allow_none=True,
        metadata={"description": "Pass as cursor for the next page; null at the end."},
    )
    order = fields.String(
        validate=validate.OneOf([RANK, RECENT]),
        metadata={
            "description": f"{RANK}: best first, the query matching at most "
            f"SEARCH_RANKED_MAX ({RANKED_MAX:,} by default) titles, prompts and answers; "
            f"{RECENT}: newest first, for a broader query. Pages after the first keep the "
            "first page's order."
        },
    )
