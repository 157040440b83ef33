"""Conversations: what the CRUD endpoints accept and return."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate

from app.models import utcnow
from app.schemas.fast_dump import FastDumpSchema
from app.schemas.fields import (
    MAX_ID,
    Owner,
    UtcDateTime,
    model_type_field,
    strict_boolean,
    title_field,
)
from app.schemas.metadata import MetadataFilterArgs, metadata_field
from app.schemas.paging import PageArgs

ORDERS = ("created", "recent")


def recent_cursor(pinned: bool, last_activity_at: datetime, uid: int) -> str:
    """order=recent's opaque cursor: where a page ended (pinned, last activity, id)."""
    data = json.dumps([int(pinned), last_activity_at.isoformat(), uid], separators=(",", ":"))
    return base64.urlsafe_b64encode(data.encode()).decode().rstrip("=")


class RecentCursor(fields.String):
    """An order=recent cursor, read back as (pinned, last_activity_at, id)."""

    def _deserialize(
        self, value: Any, attr: str | None, data: Any, **kwargs: Any
    ) -> tuple[bool, datetime, int]:
        text = super()._deserialize(value, attr, data, **kwargs)
        try:
            if len(text) > 200:
                raise ValueError
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            pinned, at, uid = json.loads(raw)
            moment = datetime.fromisoformat(at)
            if pinned not in (0, 1) or type(uid) is not int or not 0 < uid <= MAX_ID:
                raise ValueError
            if moment.tzinfo is None:
                raise ValueError
        except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
            raise ValidationError("Not a cursor this list gave out.") from None
        return bool(pinned), moment, uid


def in_the_future(moment: datetime) -> None:
    if moment <= utcnow():
        raise ValidationError("Must be in the future.")


def expires_at_field(**kwargs: Any) -> UtcDateTime:
    return UtcDateTime(
        validate=in_the_future,
        metadata={
            "description": "When the conversation is deleted (ISO 8601 with an offset, in "
            "the future), pinned or not; null: the retention policy decides.",
            "example": "2027-01-31T00:00:00Z",
        },
        **kwargs,
    )


class ConversationListArgs(PageArgs, MetadataFilterArgs):
    owner = Owner()
    order = fields.String(
        load_default="created",
        validate=validate.OneOf(ORDERS),
        metadata={
            "description": "created (default): oldest first, paged with after. recent: "
            "pinned ones first, then by last activity, newest first, paged with cursor."
        },
    )
    cursor = RecentCursor(
        load_default=None,
        metadata={
            "description": "order=recent: the opaque cursor of the Link rel=next header "
            "(where the previous page ended)."
        },
    )
    archived = fields.Boolean(
        load_default=False,
        metadata={"description": "true: only archived conversations; false (default): the others."},
    )
    temporary = fields.Boolean(
        load_default=False,
        metadata={
            "description": "true: only temporary conversations; false (default): the others."
        },
    )


class DeleteAllArgs(Schema):
    all = fields.String(
        required=True,
        validate=validate.OneOf(
            ["true"], error="Must be true: it confirms that all your conversations go."
        ),
        metadata={
            "description": "Must be true: the confirmation that every conversation of yours "
            "is to be deleted (without it, 422 and nothing is deleted)."
        },
    )


class DeletedAllOut(Schema):
    deleted = fields.Integer(metadata={"description": "How many conversations were deleted."})


class ConversationCreate(Schema):
    title = title_field(
        load_default=None,
        metadata={"description": "Omit it to have one generated from the first prompt."},
    )
    model_type = model_type_field(
        load_default=None,
        metadata={"description": "The model name sent to the LLM; DEFAULT_MODEL if omitted."},
    )
    meta = metadata_field(load_default=dict)
    expires_at = expires_at_field(load_default=None, allow_none=True)
    temporary = strict_boolean(
        load_default=False,
        metadata={
            "description": "true: it expires TEMPORARY_RETENTION_HOURS after its last "
            "activity, and lists and search leave it out."
        },
    )


class ConversationUpdate(Schema):
    title = title_field(required=True)
    model_type = model_type_field(required=True)
    meta = metadata_field(load_default=dict)


class ConversationPatch(Schema):
    """A partial update: only the fields given change."""

    title = title_field()
    model_type = model_type_field()
    meta = metadata_field(nullable_values=True)
    archived = strict_boolean(
        metadata={"description": "Archived conversations leave the lists (see archived=)."}
    )
    pinned = strict_boolean(
        metadata={
            "description": "Pinned ones come first in order=recent, and the retention "
            "policy leaves them alone."
        }
    )
    expires_at = expires_at_field(allow_none=True)
    current_message_id = fields.Integer(
        validate=validate.Range(min=1, max=MAX_ID),
        metadata={
            "description": "Switch branches: the exchange to make current (the leaf the "
            "messages list and the next prompt follow); one of the conversation's, else 422."
        },
    )


class ConversationOut(FastDumpSchema):
    id = fields.Integer()
    owner_id = fields.Integer()
    title = fields.String(allow_none=True)
    model_type = fields.String()
    meta = fields.Dict(keys=fields.String(), values=fields.String(), data_key="metadata")
    created_at = fields.AwareDateTime()
    updated_at = fields.AwareDateTime()
    last_activity_at = fields.AwareDateTime(
        metadata={
            "description": "Its creation, its last new exchange, or the last edit of its "
            "title, model or metadata: what order=recent sorts by."
        }
    )
    message_count = fields.Integer(metadata={"description": "Exchanges, in every branch."})
    archived = fields.Boolean()
    pinned = fields.Boolean()
    expires_at = fields.AwareDateTime(
        allow_none=True,
        metadata={
            "description": "Its own lifetime: when it is deleted; null: the retention "
            "policy decides (docs: retention)."
        },
    )
    temporary = fields.Boolean(
        metadata={"description": "Expires TEMPORARY_RETENTION_HOURS after its last activity."}
    )
    current_message_id = fields.Integer(
        allow_none=True,
        metadata={
            "description": "The current exchange: the leaf of the branch the user sees "
            "(null: no exchange yet)."
        },
    )
