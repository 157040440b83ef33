"""Export and import: the convstore document and what an import reports."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from app.models import FEEDBACK_COMMENT_MAX, RATINGS
from app.schemas.common import (
    PROMPT_MAX,
    JsonInteger,
    Owner,
    Text,
    UtcDateTime,
    metadata_field,
    model_type_field,
    strict_boolean,
    title_field,
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
    created_at = UtcDateTime(required=True)
    updated_at = UtcDateTime(required=True)


_COUNT = validate.Range(min=0, max=2**31 - 1)


def _count() -> fields.Integer:
    # JSON integers, as the document says (not "5").
    return JsonInteger(load_default=None, allow_none=True, validate=_COUNT)


_ENDED_ONLY = "Must be true or false: only ended exchanges can be imported."


class ExportedMessage(Schema):
    id = JsonInteger(metadata={"description": "The id in the exporting instance."})
    prompt_content = Text(required=True, validate=validate.Length(max=PROMPT_MAX))
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
    feedback = fields.Nested(ExportedFeedback, load_default=None, allow_none=True)
    created_at = UtcDateTime(required=True)
    updated_at = UtcDateTime(required=True)


class ExportedConversation(Schema):
    id = JsonInteger(metadata={"description": "The id in the exporting instance."})
    title = title_field(load_default=None, allow_none=True)
    model_type = model_type_field(required=True)
    meta = metadata_field(load_default=dict)
    created_at = UtcDateTime(required=True)
    updated_at = UtcDateTime(required=True)
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
