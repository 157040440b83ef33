"""The outlines of the objects the Responses and Conversations APIs return, for the OpenAPI
document (every field is OpenAI's)."""

from __future__ import annotations

from marshmallow import INCLUDE, Schema, fields


class ResponseOut(Schema):
    """OpenAI's Response object (only its outline here; every field is OpenAI's)."""

    class Meta:
        unknown = INCLUDE  # OpenAI's object: every field it has

    id = fields.String(metadata={"description": "resp_<exchange id>"})
    object = fields.String()
    created_at = fields.Integer()
    status = fields.String()
    model = fields.String()
    output = fields.List(fields.Dict())
    usage = fields.Dict(allow_none=True)


class ConversationObjectOut(Schema):
    class Meta:
        unknown = INCLUDE  # OpenAI's object: every field it has

    id = fields.String(metadata={"description": "conv_<REST conversation id>"})
    object = fields.String()
    created_at = fields.Integer()
    metadata = fields.Dict()


class DeletedOut(Schema):
    class Meta:
        unknown = INCLUDE  # OpenAI's object: every field it has

    id = fields.String()
    object = fields.String()
    deleted = fields.Boolean()


class ItemOut(Schema):
    class Meta:
        unknown = INCLUDE  # OpenAI's object: every field it has

    id = fields.String(metadata={"description": "<msg|fc|fco|rs>_<exchange id><i|o><position>"})
    type = fields.String()


class ItemListOut(Schema):
    class Meta:
        unknown = INCLUDE  # OpenAI's object: every field it has

    object = fields.String()
    data = fields.List(fields.Nested(ItemOut))
    first_id = fields.String(allow_none=True)
    last_id = fields.String(allow_none=True)
    has_more = fields.Boolean()


class ResponseEventOut(Schema):
    """One semantic event: ``event: <type>`` and ``data: {type, sequence_number, ...}``."""

    data = fields.String(required=True)
