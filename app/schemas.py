"""marshmallow schemas: what the API accepts and what it returns."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, validate

from app.models import MODEL_MAX, TITLE_MAX

# Bound OFFSET to what a signed 64-bit integer holds: PostgreSQL rejects anything larger.
MAX_OFFSET = 2**63 - 1
MAX_PAGE = 100
MAX_ID = 2**63 - 1
PROMPT_MAX = 100_000


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


def _title(**kwargs: Any) -> Text:
    return Text(validate=[validate.Length(min=1, max=TITLE_MAX), not_blank], **kwargs)


def _model_type(**kwargs: Any) -> Text:
    return Text(validate=[validate.Length(min=1, max=MODEL_MAX), not_blank], **kwargs)


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


class Owner(fields.Field):
    """``me``, ``all`` or a user id."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str | int:
        text = str(value).strip()
        if text in {"me", "all"}:
            return text
        if text.isascii() and text.isdigit() and 0 < int(text) <= MAX_ID:
            return int(text)
        raise ValidationError("Must be me, all, or a user id.")


class ConversationListArgs(PageArgs):
    owner = Owner(
        load_default="me",
        metadata={
            "description": "Whose conversations: me (default); admins also all or a user id.",
            "type": "string",
        },
    )


class ConversationCreate(Schema):
    title = _title(
        load_default=None,
        metadata={"description": "Omit it to have one generated from the first prompt."},
    )
    model_type = _model_type(
        load_default=None,
        metadata={"description": "The model name sent to the LLM; DEFAULT_MODEL if omitted."},
    )


class ConversationUpdate(Schema):
    title = _title(required=True)
    model_type = _model_type(required=True)


def _prompt(**kwargs: Any) -> Text:
    return Text(
        required=True, validate=[validate.Length(min=1, max=PROMPT_MAX), not_blank], **kwargs
    )


class MessageCreate(Schema):
    prompt = _prompt(metadata={"description": "The user's message."})
    stream = fields.Boolean(
        load_default=False,
        metadata={"description": "true: answer as Server-Sent Events while the LLM writes."},
    )


class GenerateArgs(Schema):
    prompt = _prompt()
    conversation_id = fields.Integer(required=True, validate=validate.Range(min=1, max=MAX_ID))


class ConversationOut(Schema):
    id = fields.Integer()
    owner_id = fields.Integer()
    title = fields.String(allow_none=True)
    model_type = fields.String()
    created_at = fields.AwareDateTime()
    updated_at = fields.AwareDateTime()


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
    created_at = fields.AwareDateTime()
    updated_at = fields.AwareDateTime()


class HealthOut(Schema):
    status = fields.String(metadata={"description": "ok, or unavailable"})
    detail = fields.String(metadata={"description": "What is wrong, when something is."})
