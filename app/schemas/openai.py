"""The /v1 gateway's shapes: OpenAI's requests, objects and error."""

from __future__ import annotations

from typing import Any

from marshmallow import (
    EXCLUDE,
    INCLUDE,
    Schema,
    ValidationError,
    fields,
    validate,
)

from app.schemas.fields import JSON_SCHEMA, MAX_ID, JsonInteger, model_type_field, strict_boolean

CHAT_ROLES = ("system", "developer", "user", "assistant", "tool", "function")


def _chat_messages(messages: list[dict[str, Any]]) -> None:
    for index, message in enumerate(messages):
        if message.get("role") not in CHAT_ROLES:
            raise ValidationError(f"messages[{index}].role must be one of {', '.join(CHAT_ROLES)}.")


def _token_limit() -> fields.Integer:
    return JsonInteger(
        allow_none=True,
        validate=validate.Range(min=1, max=2**31 - 1),
        metadata={"description": "At most MAX_OUTPUT_TOKENS when that is set (clamped)."},
    )


class ChatCompletionCreate(Schema):
    """OpenAI's chat completion request: every field besides these goes to the upstream as is."""

    class Meta:
        unknown = INCLUDE

    model = model_type_field(required=True, metadata={"description": "The upstream's model name."})
    messages = fields.List(
        fields.Dict(),
        required=True,
        validate=[validate.Length(min=1), _chat_messages],
        metadata={
            "description": "The whole conversation so far, as OpenAI's SDKs send it.",
            JSON_SCHEMA: {
                "items": {
                    "type": "object",
                    "required": ["role"],
                    "properties": {"role": {"type": "string", "enum": list(CHAT_ROLES)}},
                }
            },
        },
    )
    stream = strict_boolean(load_default=False)
    # JSON integers only (100000.0 is loaded as 100000): MAX_OUTPUT_TOKENS clamps what it can
    # compare, and an upstream would coerce "100000" or true past the cap.
    max_tokens = _token_limit()
    max_completion_tokens = _token_limit()


# The request header that makes a conversation a /v1 call creates temporary (an SDK's
# default_headers sends it with every call).
TEMPORARY_HEADER = "X-Conversation-Temporary"


class TemporaryHeader(Schema):
    class Meta:
        unknown = EXCLUDE

    temporary = fields.Boolean(
        data_key=TEMPORARY_HEADER,
        load_default=False,
        metadata={
            "description": "true: a conversation this call creates is temporary (it expires "
            "TEMPORARY_RETENTION_HOURS after its last activity; lists and search leave it "
            "out). Calls that continue a conversation leave it as it is."
        },
    )


class ConversationHeader(TemporaryHeader):
    conversation_id = fields.Integer(
        data_key="X-Conversation-Id",
        load_default=None,
        allow_none=False,  # absent, or an id: "null" is not one
        validate=validate.Range(min=1, max=MAX_ID),
        metadata={
            "description": "Save the call in this conversation of yours; without it the call "
            "continues the conversation whose history its messages repeat, or starts one."
        },
    )


class ChatCompletionOut(Schema):
    """OpenAI's chat completion object, as the upstream sent it (only its outline here)."""

    class Meta:
        unknown = INCLUDE  # the upstream's other fields, relayed as they are

    id = fields.String()
    object = fields.String()
    created = fields.Integer()
    model = fields.String()
    choices = fields.List(fields.Dict())
    usage = fields.Dict(allow_none=True)


class ChatCompletionChunkOut(Schema):
    """One event of a streamed answer: ``data: <chat.completion.chunk JSON>``, then
    ``data: [DONE]``, or ``data: {"error": {...}}`` if it broke off."""

    event = fields.String(
        metadata={"description": "The SSE event type: message, the default (not sent)."}
    )
    data = fields.String(required=True)


class ModelOut(Schema):
    class Meta:
        unknown = INCLUDE  # the upstream's other fields, relayed as they are

    id = fields.String()
    object = fields.String()
    created = fields.Integer()
    owned_by = fields.String()


class ModelListOut(Schema):
    class Meta:
        unknown = INCLUDE  # the upstream's other fields, relayed as they are

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
