"""POST /v1/responses, and the query arguments of stored responses and of item lists."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, post_load, validate, validates

from app.schemas.fields import JSON_SCHEMA, JsonInteger, Text, model_type_field, strict_boolean
from app.schemas.metadata import metadata_field
from app.schemas.paging import MAX_PAGE
from app.schemas.responses_input import (
    conversation_ref,
    function_tool,
    input_items,
    reasoning_config,
    text_config,
    tool_choice,
)

# ``include`` values that are answered as they are: a reasoning item always carries
# ``encrypted_content`` (null: the upstream's reasoning is not encrypted, its text is the
# item's ``content``). pydantic-ai asks for it with every OpenAI reasoning model's name.
INCLUDABLE = frozenset({"reasoning.encrypted_content"})


class ResponseCreate(Schema):
    """POST /v1/responses.

    What cannot be honoured over a Chat Completions upstream is refused by name (a 400 whose
    ``param`` is the field), never ignored: built-in and MCP tools, ``background``, stored
    prompts, ``include`` (but ``reasoning.encrypted_content``), ``truncation`` other than
    disabled/auto, input files and audio.
    """

    class Meta:
        unknown = RAISE

    model = model_type_field(required=True, metadata={"description": "The upstream's model name."})
    input = fields.Raw(
        load_default=None,
        metadata={
            "description": "A string, or a list of items; may be left out when "
            "previous_response_id or conversation gives the context."
        },
    )
    instructions = Text(load_default=None, allow_none=True)
    previous_response_id = Text(load_default=None, allow_none=True)
    conversation = fields.Raw(load_default=None, allow_none=True)
    store = strict_boolean(load_default=True, allow_none=True)
    stream = strict_boolean(load_default=False, allow_none=True)
    tools = fields.List(fields.Raw(), load_default=list, allow_none=True)
    tool_choice = fields.Raw(load_default="auto", allow_none=True)
    parallel_tool_calls = strict_boolean(load_default=True, allow_none=True)
    temperature = fields.Float(load_default=None, allow_none=True, validate=validate.Range(0, 2))
    top_p = fields.Float(load_default=None, allow_none=True, validate=validate.Range(0, 1))
    max_output_tokens = JsonInteger(
        load_default=None, allow_none=True, validate=validate.Range(min=16)
    )
    text = fields.Raw(load_default=None, allow_none=True)
    reasoning = fields.Raw(load_default=None, allow_none=True)
    metadata = metadata_field(load_default=dict, allow_none=True)
    user = Text(load_default=None, allow_none=True, validate=validate.Length(max=512))
    safety_identifier = Text(load_default=None, allow_none=True, validate=validate.Length(max=64))
    truncation = fields.String(
        load_default="disabled",
        allow_none=True,
        validate=validate.OneOf(
            ("disabled", "auto"), error="Must be disabled or auto (no other truncation exists)."
        ),
    )
    background = fields.Raw(load_default=None, allow_none=True)
    include = fields.Raw(load_default=None, allow_none=True)
    prompt = fields.Raw(load_default=None, allow_none=True)
    max_tool_calls = fields.Raw(load_default=None, allow_none=True)
    top_logprobs = fields.Raw(load_default=None, allow_none=True)
    stream_options = fields.Raw(load_default=None, allow_none=True)
    # Hints about OpenAI's own caching and billing: they change no answer, and are echoed.
    prompt_cache_key = Text(load_default=None, allow_none=True, validate=validate.Length(max=512))
    prompt_cache_retention = fields.Raw(load_default=None, allow_none=True)
    service_tier = fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.OneOf(
            ("auto", "default"), error="Only auto or default: the upstream has no tiers."
        ),
    )

    @validates("background")
    def _background(self, value: Any, **_: Any) -> None:
        if value not in (None, False):
            raise ValidationError(
                "background responses are not supported: a response is an exchange relayed "
                "while the request lasts (its stream can be resumed from its stored record)."
            )

    @validates("include")
    def _include(self, value: Any, **_: Any) -> None:
        if value is None:
            return
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValidationError("Must be a list of strings.")
        others = [v for v in value if v not in INCLUDABLE]
        if others:
            raise ValidationError(
                f"include {', '.join(map(repr, others))} is not supported: only "
                "reasoning.encrypted_content is (search results, tool outputs and logprobs "
                "do not exist over a Chat Completions upstream)."
            )

    @validates("prompt")
    def _prompt(self, value: Any, **_: Any) -> None:
        if value is not None:
            raise ValidationError("stored prompt templates are OpenAI's; use instructions.")

    @validates("max_tool_calls")
    def _max_tool_calls(self, value: Any, **_: Any) -> None:
        if value is not None:
            raise ValidationError("max_tool_calls is not supported: there are no built-in tools.")

    @validates("top_logprobs")
    def _top_logprobs(self, value: Any, **_: Any) -> None:
        if value not in (None, 0):
            raise ValidationError("top_logprobs is not supported.")

    @validates("stream_options")
    def _stream_options(self, value: Any, **_: Any) -> None:
        if value is not None and (
            not isinstance(value, Mapping) or set(value) - {"include_obfuscation"}
        ):
            raise ValidationError("stream_options may only hold include_obfuscation.")

    @post_load
    def _normalize(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        errors: dict[str, list[str]] = {}

        def check(field: str, convert: Any) -> None:
            try:
                data[field] = convert(data[field])
            except ValidationError as error:
                errors[field] = (
                    error.messages if isinstance(error.messages, list) else [str(error.messages)]
                )

        if data["input"] is None:
            if data.get("previous_response_id") is None and data.get("conversation") is None:
                errors["input"] = ["Missing data for required field."]
            data["input"] = []
        raw = data["input"]
        # The ids the client gave its items: replayed output items of a stored response
        # say which response this one continues (the Responses service).
        data["input_ids"] = [
            item.get("id")
            if isinstance(item, Mapping) and isinstance(item.get("id"), str)
            else None
            for item in (raw if isinstance(raw, list) else [])
        ]
        check("input", input_items)
        check(
            "tools",
            lambda tools: [function_tool(t, f"tools[{i}]") for i, t in enumerate(tools or [])],
        )
        check("tool_choice", lambda v: "auto" if v is None else tool_choice(v))
        check("text", lambda v: text_config(v or {}))
        check("reasoning", lambda v: reasoning_config(v or {}))
        check("conversation", conversation_ref)
        if data.get("previous_response_id") is not None and data.get("conversation") is not None:
            errors["conversation"] = [
                "conversation and previous_response_id cannot be used together: each one "
                "says what the context is."
            ]
        if data.get("store") is False and data.get("conversation") is not None:
            errors["store"] = [
                "store: false cannot be used with conversation: the conversation keeps the "
                "response's input and output, and store: false asks that they not be kept."
            ]
        if errors:
            raise ValidationError(errors)
        for key in ("store", "stream", "parallel_tool_calls", "truncation", "metadata"):
            if data.get(key) is None:
                data[key] = self.fields[key].load_default
                if callable(data[key]):
                    data[key] = data[key]()
        for key in ("background", "include", "prompt", "max_tool_calls", "top_logprobs",
                    "stream_options", "prompt_cache_retention"):  # fmt: skip
            data.pop(key, None)
        return data


class IncludeArgs(Schema):
    """``include`` on item reads: accepted empty only (there is nothing extra to include)."""

    class Meta:
        unknown = RAISE

    include = fields.List(
        fields.String(),
        load_default=list,
        data_key="include[]",
        metadata={
            "description": "Accepted empty only: there is nothing extra to include.",
            JSON_SCHEMA: {"maxItems": 0},
        },
    )

    @validates("include")
    def _include(self, value: list[str], **_: Any) -> None:
        if value:
            raise ValidationError("include is not supported: there is nothing extra to include.")


class ResponseGetArgs(IncludeArgs):
    """GET /v1/responses/{id}: a stored response, as JSON only."""

    stream = fields.Boolean(
        load_default=False,
        metadata={
            "description": "false only: a stored response is retrieved as JSON.",
            JSON_SCHEMA: {"enum": [False]},
        },
    )
    starting_after = fields.Integer(load_default=None)
    include_obfuscation = fields.Boolean(load_default=None)

    @validates("stream")
    def _stream(self, value: bool, **_: Any) -> None:
        if value:
            raise ValidationError(
                "Replaying a response's stream is not supported: retrieve it as JSON."
            )


class ItemListArgs(IncludeArgs):
    """Cursor paging of items: ``after`` an item id, ``limit`` 1-100, ``order``."""

    after = fields.String(load_default=None)
    limit = fields.Integer(load_default=20, validate=validate.Range(min=1, max=MAX_PAGE))
    order = fields.String(load_default="desc", validate=validate.OneOf(("asc", "desc")))
