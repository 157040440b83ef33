"""Export and import: the convstore document and what an import reports."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from app.bounds import FINISH_REASON_MAX
from app.models import (
    ENDPOINT_MAX,
    FEEDBACK_COMMENT_MAX,
    MODEL_MAX,
    RATINGS,
    REQUEST_ID_MAX,
)
from app.schemas.fields import (
    MAX_ID,
    JsonInteger,
    Owner,
    Text,
    UtcDateTime,
    json_values,
    model_type_field,
    strict_boolean,
    title_field,
)
from app.schemas.metadata import metadata_field


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
    created_at = UtcDateTime(required=True)
    updated_at = UtcDateTime(required=True)


_COUNT = validate.Range(min=0, max=2**31 - 1)
OUTCOMES = ("complete", "failed", "client_closed", "interrupted")


def reject_unstorable_strings(value: Any) -> None:
    """Reject a JSON value no database can store: a string (or key) with a NUL or a lone
    surrogate (NaN and infinities never get past the body's parser, app/schemas/json_text.py)."""
    for item in json_values(value):
        if isinstance(item, str):
            if "\x00" in item:
                raise ValidationError("Must not contain NUL characters.")
            try:
                item.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise ValidationError("Must be valid Unicode text.") from exc


def _optional(field: type[fields.Field], *args: Any, **kwargs: Any) -> fields.Field:
    return field(*args, load_default=None, allow_none=True, **kwargs)


def _bounded(length: int) -> fields.Field:
    return _optional(Text, validate=validate.Length(max=length))


_ID = validate.Range(min=1, max=MAX_ID)


def _count() -> fields.Integer:
    # JSON integers, as the document says (not "5").
    return JsonInteger(load_default=None, allow_none=True, validate=_COUNT)


# What a deleted exchange (a tombstone) is exported without, and imported without: its
# content is gone, and an import never brings it back.
CONTENT_FIELDS = frozenset(
    {
        "prompt_content",
        "response_content",
        "reasoning_content",
        "refusal_content",
        "tool_calls",
        "request_params",
        "system_prompt",
        "input_items",
        "output_items",
        "feedback",
    }
)
_NO_CONTENT = "A deleted exchange has no content: leave it out."

# An entry of a Responses exchange's layout (app/exchange/responses_items.py).
_LAYOUT_ENTRY = r"^(reasoning|message|fc:(0|[1-9][0-9]{0,2}))$"
_ENDED_ONLY = "Must be true or false: only ended exchanges can be imported."


class ExportedMessage(Schema):
    id = JsonInteger(metadata={"description": "The id in the exporting instance."})
    parent_id = JsonInteger(
        allow_none=True,
        validate=_ID,
        metadata={
            "description": "The id (in this document) of the exchange it follows; null: a "
            "first exchange. Omitted (older exports): the message before it."
        },
    )
    deleted = strict_boolean(
        load_default=False,
        metadata={
            "description": "A deleted exchange (a tombstone): its place in the tree and its "
            "tokens, without content (no prompt, answer, items or feedback)."
        },
    )
    # Unbounded but by the body's size: a /v1 prompt may be longer than the API's prompts.
    # Required unless deleted (checked with the others below).
    prompt_content = Text(load_default=None)
    response_content = Text(load_default="")
    prompt_tokens = _count()
    response_tokens = _count()
    total_tokens = _count()
    # Only ended exchanges: one "in progress" would be the reaper's to end (and count).
    is_success = strict_boolean(
        required=True,
        error_messages={
            "required": _ENDED_ONLY,
            "null": _ENDED_ONLY,
        },
        metadata={"description": "The exchange's outcome: an import holds ended ones only."},
    )
    status_code = JsonInteger(
        load_default=None, allow_none=True, validate=validate.Range(min=100, max=599)
    )
    # Absent from documents older than these fields: an outcome then follows is_success.
    outcome = _optional(fields.String, validate=validate.OneOf(OUTCOMES))
    reasoning_content = _optional(Text)
    model = _bounded(MODEL_MAX)
    endpoint = _bounded(ENDPOINT_MAX)
    request_id = _bounded(REQUEST_ID_MAX)
    finish_reason = _bounded(FINISH_REASON_MAX)
    ttft_ms = _optional(JsonInteger, validate=_COUNT)
    duration_ms = _optional(JsonInteger, validate=_COUNT)
    # null where a function call was deleted through the Conversations API
    tool_calls = _optional(
        fields.List, fields.Dict(allow_none=True), validate=reject_unstorable_strings
    )
    request_params = _optional(fields.Dict, validate=reject_unstorable_strings)
    system_prompt = _optional(Text)
    usage_estimated = strict_boolean(
        load_default=False,
        metadata={
            "description": "Its tokens are the service's estimate (the LLM's usage was not "
            "received)."
        },
    )
    # null where an item was deleted through the Conversations API
    input_items = _optional(
        fields.List, fields.Dict(allow_none=True), validate=reject_unstorable_strings
    )
    # Absent from documents older than these fields: no refusal, details not reported.
    refusal_content = _optional(Text)
    cached_tokens = _count()
    reasoning_tokens = _count()
    # The Responses API's output items' layout (null where an item was deleted).
    output_items = _optional(
        fields.List, fields.String(allow_none=True, validate=validate.Regexp(_LAYOUT_ENTRY))
    )
    feedback = fields.Nested(ExportedFeedback, load_default=None, allow_none=True)
    created_at = UtcDateTime(required=True)
    updated_at = UtcDateTime(required=True)

    @validates_schema(pass_original=True)
    def _content_unless_deleted(self, data: dict[str, Any], original: Any, **_kwargs: Any) -> None:
        if not data["deleted"]:
            if data["prompt_content"] is None:
                raise ValidationError("Missing data for required field.", "prompt_content")
            return
        given = sorted(
            name for name in CONTENT_FIELDS if original.get(name) not in (None, "", [], {})
        )
        if given:
            raise ValidationError({name: [_NO_CONTENT] for name in given})

    @validates_schema
    def _outcome_agrees(self, data: dict[str, Any], **_kwargs: Any) -> None:
        outcome, success = data.get("outcome"), data.get("is_success")
        if outcome is not None and success is not None and (outcome == "complete") != success:
            raise ValidationError("complete if and only if is_success is true.", "outcome")


class ExportedConversation(Schema):
    id = JsonInteger(metadata={"description": "The id in the exporting instance."})
    title = title_field(load_default=None, allow_none=True)
    model_type = model_type_field(required=True)
    meta = metadata_field(load_default=dict)
    created_at = UtcDateTime(required=True)
    updated_at = UtcDateTime(required=True)
    last_activity_at = UtcDateTime(
        load_default=None, metadata={"description": "Omitted: its last exchange's or creation."}
    )
    archived = strict_boolean(load_default=False)
    pinned = strict_boolean(load_default=False)
    current_message_id = JsonInteger(
        allow_none=True,
        validate=_ID,
        metadata={
            "description": "The id (in this document) of its current exchange. Omitted: "
            "its last message."
        },
    )
    messages = fields.List(fields.Nested(ExportedMessage), load_default=list)


class ExportDocument(Schema):
    """The JSON export: what GET /conversations/<id>/export gives and POST /import takes."""

    format = fields.String(required=True, validate=validate.Equal("convstore"))
    version = JsonInteger(required=True, validate=validate.Equal(1))
    conversations = fields.List(fields.Nested(ExportedConversation), required=True)


class ImportedOut(Schema):
    source_id = fields.Integer(
        allow_none=True, metadata={"description": "Its id in the export, when it had one."}
    )
    id = fields.Integer(metadata={"description": "Its id here."})
    messages = fields.Integer(metadata={"description": "Messages imported with it."})


class ImportOut(Schema):
    conversations = fields.List(fields.Nested(ImportedOut))
