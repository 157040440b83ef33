"""marshmallow schemas: what the API accepts and what it returns."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

from marshmallow import (
    EXCLUDE,
    INCLUDE,
    Schema,
    ValidationError,
    fields,
    post_load,
    pre_load,
    validate,
)
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm.base import NO_VALUE
from webargs.fields import DelimitedList

from app.models import (
    FEEDBACK_COMMENT_MAX,
    METADATA_KEY_MAX,
    METADATA_MAX_PAIRS,
    METADATA_VALUE_MAX,
    MODEL_MAX,
    RATINGS,
    TITLE_MAX,
)
from app.search_query import QUERY_MAX, Cursor, QueryError, SearchQuery, parse

# Bound OFFSET to what a signed 64-bit integer holds: PostgreSQL rejects anything larger.
MAX_OFFSET = 2**63 - 1
MAX_PAGE = 100
MAX_ID = 2**63 - 1
PROMPT_MAX = 100_000
# A prompt sent in a query string must leave the whole request line within the 4094 bytes
# gunicorn accepts (its limit_request_line): at worst 12 bytes a character once percent-encoded
# (4 UTF-8 bytes, %XX each), plus the path and the other parameter.
QUERY_PROMPT_MAX = 300


class Text(fields.String):
    """A string a database can store: no NUL byte, no lone surrogate."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        if "\x00" in text:
            raise ValidationError("Must not contain NUL characters.")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValidationError("Must be valid Unicode text.") from exc
        return text


def not_blank(value: str) -> None:
    """Reject strings made only of white space (the empty string is Length's to report)."""
    if value and not value.strip():
        raise ValidationError("Must not be blank.")


# What Text with not_blank accepts, for the OpenAPI document: no NUL, and at least one
# character that is not white space as str.strip() sees it (listed: ECMA's \s differs).
_WHITE_SPACE = r"\t-\r\u001c-\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
NOT_BLANK_TEXT = rf"^[^\u0000]*[^\u0000{_WHITE_SPACE}][^\u0000]*$"


def _not_blank_text(max_length: int, **kwargs: Any) -> Text:
    metadata = {"pattern": NOT_BLANK_TEXT, **kwargs.pop("metadata", {})}
    return Text(
        validate=[validate.Length(min=1, max=max_length), not_blank], metadata=metadata, **kwargs
    )


def _title(**kwargs: Any) -> Text:
    return _not_blank_text(TITLE_MAX, **kwargs)


# What names a model, at any provider (gpt-4o-mini, llama3.1:8b, Qwen/Qwen2.5-7B-Instruct):
# printable ASCII, no white space. Anything else no LLM serves; a line break or a non-Latin-1
# character even breaks servers that echo the name in a response header. (The empty string
# is Length's to report.)
MODEL_NAME = r"^[!-~]*$"


def _model_type(**kwargs: Any) -> Text:
    return Text(
        validate=[
            validate.Length(min=1, max=MODEL_MAX),
            validate.Regexp(MODEL_NAME, error="Must be a model name: printable ASCII, no spaces."),
        ],
        **kwargs,
    )


class PageArgs(Schema):
    skip = fields.Integer(
        load_default=0,
        validate=validate.Range(min=0, max=MAX_OFFSET),
        metadata={"description": "Rows to skip."},
    )
    take = fields.Integer(
        load_default=MAX_PAGE,
        validate=validate.Range(min=1, max=MAX_PAGE),
        metadata={"description": f"Rows to return (1 to {MAX_PAGE})."},
    )
    after = fields.Integer(
        load_default=None,
        validate=validate.Range(min=0, max=MAX_ID),
        metadata={
            "description": "Only rows with a larger id: pass the last id of the previous page "
            "(as fast on the millionth row as on the first, unlike skip)."
        },
    )


_ID_DIGITS = len(str(MAX_ID))


class Owner(fields.Field):
    """``me`` (the default), ``all`` or a user id: whose ``whose`` a request reads."""

    def __init__(self, whose: str = "conversations", **kwargs: Any) -> None:
        # Documented as what it accepts: one of the two words, or an id.
        schema = {
            "oneOf": [
                {"type": "string", "enum": ["me", "all"]},
                {"type": "integer", "minimum": 1, "maximum": MAX_ID},
            ]
        }
        description = f"Whose {whose}: me (default); admins also all or a user id."
        metadata = {**schema, "description": description, **kwargs.pop("metadata", {})}
        super().__init__(load_default="me", metadata=metadata, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str | int:
        text = str(value).strip()
        if text in {"me", "all"}:
            return text
        # Count the digits first: int() refuses more than 4300 (a ValueError, so a 500).
        if (
            text.isascii()
            and text.isdigit()
            and len(text) <= _ID_DIGITS
            and 0 < int(text) <= MAX_ID
        ):
            return int(text)
        raise ValidationError("Must be me, all, or a user id.")


def _metadata(
    *, nullable_values: bool = False, description: str = "", **kwargs: Any
) -> fields.Dict:
    """A metadata object: at most 16 pairs of strings (OpenAI's limits)."""
    value = Text(validate=validate.Length(max=METADATA_VALUE_MAX), allow_none=nullable_values)
    description += (
        f"At most {METADATA_MAX_PAIRS} pairs; keys 1 to {METADATA_KEY_MAX} characters, "
        f"string values up to {METADATA_VALUE_MAX}."
    )
    if nullable_values:
        description += " Merged into the conversation's; a key set to null is removed."
    return fields.Dict(
        keys=Text(validate=validate.Length(min=1, max=METADATA_KEY_MAX)),
        values=value,
        validate=validate.Length(
            max=METADATA_MAX_PAIRS, error=f"At most {METADATA_MAX_PAIRS} pairs."
        ),
        data_key="metadata",
        metadata={"description": description},
        **kwargs,
    )


_METADATA_PARAM = re.compile(r"^metadata\[(.*)\]$", re.DOTALL)


class MetadataFilterArgs(Schema):
    """Query arguments that take ``metadata[key]=value`` filters (all must match)."""

    meta = _metadata(
        load_default=dict,
        description="Only conversations whose metadata has these pairs: metadata[key]=value. ",
    )

    @pre_load
    def collect_metadata(self, data: Any, **_kwargs: Any) -> Any:
        # The filters' keys are the user's own: gather metadata[key] parameters into one dict
        # for the metadata field to validate (limits as on a conversation).
        if not hasattr(data, "keys"):
            return data
        loaded: dict[str, Any] = {}
        wanted: dict[str, Any] = {}
        for key in data:
            match = _METADATA_PARAM.match(key)
            if match:
                wanted[match[1]] = data[key]
            else:
                loaded[key] = data[key]
        if wanted:
            loaded["metadata"] = wanted
        return loaded


class ConversationListArgs(PageArgs, MetadataFilterArgs):
    owner = Owner()


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
    model = _model_type(
        load_default=None, metadata={"description": "Only conversations with this model_type."}
    )
    since = fields.AwareDateTime(
        data_key="from",
        load_default=None,
        default_timezone=UTC,
        metadata={"description": "Only text written at or after this time (ISO 8601)."},
    )
    until = fields.AwareDateTime(
        data_key="to",
        load_default=None,
        default_timezone=UTC,
        metadata={"description": "Only text written before this time (ISO 8601)."},
    )
    owner = Owner()


class ConversationCreate(Schema):
    title = _title(
        load_default=None,
        metadata={"description": "Omit it to have one generated from the first prompt."},
    )
    model_type = _model_type(
        load_default=None,
        metadata={"description": "The model name sent to the LLM; DEFAULT_MODEL if omitted."},
    )
    meta = _metadata(load_default=dict)


class ConversationUpdate(Schema):
    title = _title(required=True)
    model_type = _model_type(required=True)
    meta = _metadata(load_default=dict)


class ConversationPatch(Schema):
    """A partial update: only the fields given change."""

    title = _title()
    model_type = _model_type()
    meta = _metadata(nullable_values=True)


def _prompt(max_length: int = PROMPT_MAX, **kwargs: Any) -> Text:
    return _not_blank_text(max_length, required=True, **kwargs)


class MessageCreate(Schema):
    prompt = _prompt(metadata={"description": "The user's message."})
    stream = fields.Boolean(
        load_default=False,
        metadata={"description": "true: answer as Server-Sent Events while the LLM writes."},
    )


class GenerateArgs(Schema):
    prompt = _prompt(
        QUERY_PROMPT_MAX,
        metadata={
            "description": f"At most {QUERY_PROMPT_MAX} characters, so that the URL fits the "
            "request line a server accepts; longer prompts go to "
            "POST /conversations/{conversation_id}/messages."
        },
    )
    conversation_id = fields.Integer(required=True, validate=validate.Range(min=1, max=MAX_ID))


class ConversationOut(Schema):
    id = fields.Integer()
    owner_id = fields.Integer()
    title = fields.String(allow_none=True)
    model_type = fields.String()
    meta = fields.Dict(keys=fields.String(), values=fields.String(), data_key="metadata")
    created_at = fields.AwareDateTime()
    updated_at = fields.AwareDateTime()


class FeedbackIn(Schema):
    rating = fields.Integer(
        required=True,
        strict=True,
        validate=validate.OneOf(RATINGS),
        metadata={"description": "1 (good) or -1 (bad)."},
    )
    comment = Text(
        load_default=None,
        allow_none=True,
        validate=validate.Length(max=FEEDBACK_COMMENT_MAX),
    )


class FeedbackOut(Schema):
    message_id = fields.Integer()
    rating = fields.Integer()
    comment = fields.String(allow_none=True)
    created_at = fields.AwareDateTime()
    updated_at = fields.AwareDateTime()


class LoadedOnly(fields.Nested):
    """A relationship serialized only if already loaded: never a lazy load (they raise).

    An exchange just generated has no feedback; lists join it in their one statement.
    """

    def get_value(self, obj: Any, attr: str, accessor: Any = None, default: Any = None) -> Any:
        state = sa_inspect(obj, raiseerr=False)
        if state is None:
            return super().get_value(obj, attr, accessor, default)
        value = state.attrs[attr].loaded_value
        return None if value is NO_VALUE else value


class MessageOut(Schema):
    id = fields.Integer()
    conversation_id = fields.Integer()
    prompt_content = fields.String()
    response_content = fields.String()
    prompt_tokens = fields.Integer(allow_none=True)
    response_tokens = fields.Integer(allow_none=True)
    total_tokens = fields.Integer(allow_none=True)
    is_success = fields.Boolean(
        allow_none=True, metadata={"description": "null while the exchange is in progress."}
    )
    status_code = fields.Integer(allow_none=True)
    outcome = fields.String(
        allow_none=True,
        metadata={
            "description": "complete, failed, client_closed or interrupted; null while the "
            "exchange is in progress."
        },
    )
    reasoning_content = fields.String(
        allow_none=True, metadata={"description": "What a reasoning model thought, if it said."}
    )
    model = fields.String(allow_none=True, metadata={"description": "The model that answered."})
    endpoint = fields.String(
        allow_none=True, metadata={"description": "The API that made it: text, messages, v1."}
    )
    request_id = fields.String(allow_none=True)
    finish_reason = fields.String(allow_none=True)
    ttft_ms = fields.Integer(
        allow_none=True,
        metadata={"description": "Request received to first piece of the answer relayed."},
    )
    duration_ms = fields.Integer(
        allow_none=True, metadata={"description": "Request received to exchange ended."}
    )
    feedback = LoadedOnly(
        FeedbackOut,
        allow_none=True,
        metadata={"description": "The user's rating of this exchange, or null."},
    )
    tool_calls = fields.List(
        fields.Dict(),
        allow_none=True,
        metadata={"description": "/v1: the tool calls the model requested ({id, type, function})."},
    )
    request_params = fields.Dict(
        allow_none=True,
        metadata={"description": "/v1: the request's parameters other than its messages."},
    )
    system_prompt = fields.String(
        allow_none=True, metadata={"description": "/v1: the request's system message(s)."}
    )
    created_at = fields.AwareDateTime()
    updated_at = fields.AwareDateTime()


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
    rank = fields.Float(metadata={"description": "Relevance: higher is better."})


class SearchPageOut(Schema):
    results = fields.List(fields.Nested(SearchResultOut), metadata={"description": "Best first."})
    next_cursor = fields.String(
        allow_none=True,
        metadata={"description": "Pass as cursor for the next page; null at the end."},
    )


class ExportArgs(Schema):
    format = fields.String(
        load_default="json",
        validate=validate.OneOf(["json", "markdown"]),
        metadata={"description": "json (what POST /import takes) or markdown (to read)."},
    )


class ExportAllArgs(Schema):
    format = fields.String(
        load_default="ndjson",
        validate=validate.OneOf(["ndjson"]),
        metadata={"description": "ndjson: a conversation a line, each followed by its messages."},
    )
    owner = Owner()


class ExportedFeedback(Schema):
    rating = fields.Integer(required=True, strict=True, validate=validate.OneOf(RATINGS))
    comment = Text(
        load_default=None, allow_none=True, validate=validate.Length(max=FEEDBACK_COMMENT_MAX)
    )
    created_at = fields.AwareDateTime(required=True)
    updated_at = fields.AwareDateTime(required=True)


_COUNT = validate.Range(min=0, max=2**31 - 1)


class ExportedMessage(Schema):
    id = fields.Integer(metadata={"description": "The id in the exporting instance."})
    prompt_content = Text(required=True, validate=validate.Length(max=PROMPT_MAX))
    response_content = Text(load_default="")
    prompt_tokens = fields.Integer(load_default=None, allow_none=True, validate=_COUNT)
    response_tokens = fields.Integer(load_default=None, allow_none=True, validate=_COUNT)
    total_tokens = fields.Integer(load_default=None, allow_none=True, validate=_COUNT)
    is_success = fields.Boolean(load_default=None, allow_none=True)
    status_code = fields.Integer(
        load_default=None, allow_none=True, validate=validate.Range(min=100, max=599)
    )
    feedback = fields.Nested(ExportedFeedback, load_default=None, allow_none=True)
    created_at = fields.AwareDateTime(required=True)
    updated_at = fields.AwareDateTime(required=True)


class ExportedConversation(Schema):
    id = fields.Integer(metadata={"description": "The id in the exporting instance."})
    title = _title(load_default=None, allow_none=True)
    model_type = _model_type(required=True)
    meta = _metadata(load_default=dict)
    created_at = fields.AwareDateTime(required=True)
    updated_at = fields.AwareDateTime(required=True)
    messages = fields.List(fields.Nested(ExportedMessage), load_default=list)


class ExportDocument(Schema):
    """The JSON export: what GET /conversations/<id>/export gives and POST /import takes."""

    format = fields.String(required=True, validate=validate.Equal("convstore"))
    version = fields.Integer(required=True, strict=True, validate=validate.Equal(1))
    conversations = fields.List(fields.Nested(ExportedConversation), required=True)


class ImportedOut(Schema):
    source_id = fields.Integer(
        allow_none=True, metadata={"description": "Its id in the export, when it had one."}
    )
    id = fields.Integer(metadata={"description": "Its id here."})
    messages = fields.Integer(metadata={"description": "Messages imported with it."})


class ImportOut(Schema):
    conversations = fields.List(fields.Nested(ImportedOut))


class SseEventOut(Schema):
    """One Server-Sent Event of a streamed answer (keep-alive comments are not events)."""

    event = fields.String(
        required=True, validate=validate.OneOf(["reasoning", "delta", "done", "error"])
    )
    data = fields.String(
        required=True,
        metadata={
            "description": "JSON. reasoning: {text}, the next piece of a reasoning model's "
            "thinking; delta: {text}, the next piece of the answer; done (last): {message}, "
            "the saved MessageOut; error (last): {code, message}, the LLM broke off or the "
            "answer could not be saved."
        },
    )


USAGE_GROUPS = ("day", "model", "user")
USAGE_MAX_DAYS = 366
USAGE_DEFAULT_DAYS = 30


class UsageArgs(Schema):
    start = fields.Date(
        data_key="from",
        load_default=None,
        metadata={"description": "First UTC day (YYYY-MM-DD); default: 29 days before to."},
    )
    end = fields.Date(
        data_key="to",
        load_default=None,
        metadata={"description": "Last UTC day, included; default: today (UTC)."},
    )
    group_by = DelimitedList(
        fields.String(validate=validate.OneOf(USAGE_GROUPS)),
        load_default=[],
        metadata={"description": "Comma-separated, any of day, model, user; none: one total."},
    )
    owner = Owner(whose="usage")

    @post_load
    def _range(self, data: dict[str, Any], **_kwargs: Any) -> dict[str, Any]:
        """Fill in the default range and check it: from <= to, at most USAGE_MAX_DAYS."""
        end = data["end"] or datetime.now(UTC).date()
        try:
            start = data["start"] or end - timedelta(days=USAGE_DEFAULT_DAYS - 1)
        except OverflowError:  # to= in the first days of year 1
            start = date.min
        if end < start:
            raise ValidationError("Must not be before from (default: today).", "to")
        if (end - start).days >= USAGE_MAX_DAYS:
            raise ValidationError(f"At most {USAGE_MAX_DAYS} days after from.", "to")
        return {**data, "start": start, "end": end}


class Percentiles(Schema):
    p50 = fields.Integer(allow_none=True)
    p95 = fields.Integer(allow_none=True)


class OutcomeCounts(Schema):
    complete = fields.Integer()
    failed = fields.Integer()
    client_closed = fields.Integer()
    interrupted = fields.Integer()
    rate_limited = fields.Integer(
        metadata={"description": "Failed because the LLM provider rate limited (429)."}
    )


class UsageRowOut(Schema):
    day = fields.Date(allow_none=True, metadata={"description": "null unless grouped by day."})
    model = fields.String(
        allow_none=True, metadata={"description": "null unless grouped by model (or unknown)."}
    )
    user_id = fields.Integer(
        allow_none=True, metadata={"description": "null unless grouped by user."}
    )
    exchanges = fields.Integer(metadata={"description": "Exchanges ended (titles excluded)."})
    succeeded = fields.Integer()
    failed = fields.Integer(metadata={"description": "Exchanges that did not complete."})
    outcomes = fields.Nested(OutcomeCounts)
    prompt_tokens = fields.Integer()
    response_tokens = fields.Integer()
    total_tokens = fields.Integer(metadata={"description": "Exchanges' and title calls'."})
    title_tokens = fields.Integer(metadata={"description": "Spent on title calls."})
    ttft_ms = fields.Nested(
        Percentiles, metadata={"description": "Histogram percentiles: see README precision."}
    )
    duration_ms = fields.Nested(Percentiles)


class Prebuilt(fields.Nested):
    """Documented as its nested schema; dumped as given, the service having built it field
    by field (marshmallow's dump of a month of day-by-model rows, 16 values each with
    nesting, cost several times the query)."""

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> Any:
        return value


class UsageOut(Schema):
    start = fields.Date(data_key="from")
    end = fields.Date(data_key="to")
    group_by = fields.List(fields.String())
    rows = Prebuilt(UsageRowOut, many=True)


class ErrorOut(Schema):
    """The one shape of every error (app/errors.py)."""

    code = fields.Integer(required=True, metadata={"description": "The HTTP status code."})
    status = fields.String(required=True, metadata={"description": "Its reason phrase."})
    message = fields.String(required=True, metadata={"description": "What went wrong."})
    errors = fields.Dict(
        keys=fields.String(),
        metadata={
            "description": "What is invalid (400, 422): by location (json, query), then by "
            "field, lists of messages."
        },
    )


class HealthOut(Schema):
    status = fields.String(metadata={"description": "ok, or unavailable"})
    detail = fields.String(metadata={"description": "What is wrong, when something is."})


# ------------------------------------------------------------------ the /v1 gateway
CHAT_ROLES = ("system", "developer", "user", "assistant", "tool", "function")


def _chat_messages(messages: list[dict[str, Any]]) -> None:
    for index, message in enumerate(messages):
        if message.get("role") not in CHAT_ROLES:
            raise ValidationError(f"messages[{index}].role must be one of {', '.join(CHAT_ROLES)}.")


class ChatCompletionCreate(Schema):
    """OpenAI's chat completion request: every field besides these goes to the upstream as is."""

    class Meta:
        unknown = INCLUDE

    model = _model_type(required=True, metadata={"description": "The upstream's model name."})
    messages = fields.List(
        fields.Dict(),
        required=True,
        validate=[validate.Length(min=1), _chat_messages],
        metadata={"description": "The whole conversation so far, as OpenAI's SDKs send it."},
    )
    stream = fields.Boolean(load_default=False)


class ConversationHeader(Schema):
    class Meta:
        unknown = EXCLUDE

    conversation_id = fields.Integer(
        data_key="X-Conversation-Id",
        load_default=None,
        validate=validate.Range(min=1, max=MAX_ID),
        metadata={
            "description": "Save the call in this conversation of yours; without it the call "
            "continues the conversation whose history its messages repeat, or starts one."
        },
    )


class ChatCompletionOut(Schema):
    """OpenAI's chat completion object, as the upstream sent it (only its outline here)."""

    id = fields.String()
    object = fields.String()
    created = fields.Integer()
    model = fields.String()
    choices = fields.List(fields.Dict())
    usage = fields.Dict(allow_none=True)


class ChatCompletionChunkOut(Schema):
    """One event of a streamed answer: ``data: <chat.completion.chunk JSON>``, then
    ``data: [DONE]``, or ``data: {"error": {...}}`` if it broke off."""

    data = fields.String(required=True)


class ModelOut(Schema):
    id = fields.String()
    object = fields.String()
    created = fields.Integer()
    owned_by = fields.String()


class ModelListOut(Schema):
    object = fields.String()
    data = fields.List(fields.Nested(ModelOut))


class OpenAIErrorDetailOut(Schema):
    message = fields.String(required=True)
    type = fields.String(required=True)
    param = fields.String(allow_none=True)
    code = fields.String(allow_none=True)


class OpenAIErrorOut(Schema):
    """Every error under /v1: OpenAI's shape, so that its SDKs raise their usual classes."""

    error = fields.Nested(OpenAIErrorDetailOut, required=True)
