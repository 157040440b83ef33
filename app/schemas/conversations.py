"""Conversations: what the CRUD endpoints accept and return."""

from __future__ import annotations

from marshmallow import Schema, fields

from app.schemas.common import (
    FastDumpSchema,
    MetadataFilterArgs,
    Owner,
    PageArgs,
    metadata_field,
    model_type_field,
    title_field,
)


class ConversationListArgs(PageArgs, MetadataFilterArgs):
    owner = Owner()


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


class ConversationUpdate(Schema):
    title = title_field(required=True)
    model_type = model_type_field(required=True)
    meta = metadata_field(load_default=dict)


class ConversationPatch(Schema):
    """A partial update: only the fields given change."""

    title = title_field()
    model_type = model_type_field()
    meta = metadata_field(nullable_values=True)


class ConversationOut(FastDumpSchema):
    id = fields.Integer()
    owner_id = fields.Integer()
    title = fields.String(allow_none=True)
    model_type = fields.String()
    meta = fields.Dict(keys=fields.String(), values=fields.String(), data_key="metadata")
    created_at = fields.AwareDateTime()
    updated_at = fields.AwareDateTime()
