"""OpenAI's Conversations API requests: create a conversation with items, replace its
metadata, add items to it."""

from __future__ import annotations

from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, post_load, validate

from app.schemas.metadata import metadata_field
from app.schemas.responses_input import InputItem, input_items

MAX_CONVERSATION_ITEMS = 20  # per POST /v1/conversations or .../items, as OpenAI allows


def _items_field(**kwargs: Any) -> fields.List:
    return fields.List(
        fields.Raw(),
        validate=validate.Length(max=MAX_CONVERSATION_ITEMS),
        **kwargs,
        metadata={"description": f"Up to {MAX_CONVERSATION_ITEMS} input items."},
    )


def _field_items(items: list[Any]) -> list[InputItem]:
    try:
        return input_items(items, "items")
    except ValidationError as error:
        raise ValidationError({"items": error.messages}) from error


class ConversationObjectCreate(Schema):
    class Meta:
        unknown = RAISE

    items = _items_field()
    metadata = metadata_field(allow_none=True)

    @post_load
    def _normalize(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        data["items"] = _field_items(data.get("items") or [])
        data["metadata"] = data.get("metadata") or {}
        return data


class ConversationMetadataUpdate(Schema):
    class Meta:
        unknown = RAISE

    metadata = metadata_field(required=True)


class ItemsCreate(Schema):
    class Meta:
        unknown = RAISE

    items = _items_field(required=True)

    @post_load
    def _normalize(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        data["items"] = _field_items(data["items"])
        return data
