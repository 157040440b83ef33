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
    validates_schema,
)

from app.schemas.common import MAX_ID, is_finite_json, model_type_field

CHAT_ROLES = ("system", "developer", "user", "assistant", "tool", "function")


def _chat_messages(messages: list[dict[str, Any]]) -> None:
    for index, message in enumerate(messages):
        if message.get("role") not in CHAT_ROLES:
            raise ValidationError(f"messages[{index}].role must be one of {', '.join(CHAT_ROLES)}.")


class ChatCompletionCreate(Schema):
    """OpenAI's chat completion request: every field besides these goes to the upstream as is."""

    class Meta:
        unknown = INCLUDE

    model = model_type_field(required=True, metadata={"description": "The upstream's model name."})
    messages = fields.List(
        fields.Dict(),
        required=True,
        validate=[validate.Length(min=1), _chat_messages],
        metadata={"description": "The whole conversation so far, as OpenAI's SDKs send it."},
    )
    stream = fields.Boolean(load_default=False)

    @validates_schema(pass_original=True)
    def _finite(self, _data: dict[str, Any], original: Any, **_kwargs: Any) -> None:
        # JSON has no NaN or Infinity; Python's parser takes them, the upstream call and
        # PostgreSQL's JSON columns would then fail (a 500).
        for key, value in original.items() if isinstance(original, dict) else ():
            if not is_finite_json(value):
                raise ValidationError("Must be JSON: no NaN or Infinity.", str(key))


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
