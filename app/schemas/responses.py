"""OpenAI's Responses and Conversations APIs: requests, checked and put in one stored form.

What cannot be honoured over a Chat Completions upstream is refused by name (a 400 whose
``param`` is the field), never ignored: built-in and MCP tools, ``background``, stored
prompts, ``include`` (but ``reasoning.encrypted_content``), ``truncation`` other than
disabled/auto, input files and audio.
Items are kept in the form the Responses API returns them (without their ids, which are
given by position: app/exchange/responses_items.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from marshmallow import (
    INCLUDE,
    RAISE,
    Schema,
    ValidationError,
    fields,
    post_load,
    validate,
    validates,
)

from app.schemas.fields import JSON_SCHEMA, JsonInteger, Text, model_type_field, strict_boolean
from app.schemas.metadata import metadata_field
from app.schemas.paging import MAX_PAGE

INPUT_ROLES = ("user", "system", "developer", "assistant")
# ``include`` values that are answered as they are: a reasoning item always carries
# ``encrypted_content`` (null: the upstream's reasoning is not encrypted, its text is the
# item's ``content``). pydantic-ai asks for it with every OpenAI reasoning model's name.
INCLUDABLE = frozenset({"reasoning.encrypted_content"})
MAX_CONVERSATION_ITEMS = 20  # per POST /v1/conversations or .../items, as OpenAI allows
# Tool types and item types the Responses API has that a Chat Completions upstream cannot run.
_WHY_BUILT_IN = (
    "is a built-in tool OpenAI runs itself; this service translates to Chat Completions, "
    "where only function tools exist"
)


def _problem(where: str, message: str) -> ValidationError:
    return ValidationError(f"{where}: {message}")


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise _problem(where, "must be a string.")
    if "\x00" in value:
        raise _problem(where, "must not contain NUL characters.")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        raise _problem(where, "must be valid Unicode text.") from error
    return value


def _object(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _problem(where, "must be an object.")
    return value


def _content_part(part: Any, role: str, where: str) -> dict[str, Any]:
    part = _object(part, where)
    kind = part.get("type")
    if role == "assistant":
        if kind == "output_text":
            return {
                "type": "output_text",
                "text": _text(part.get("text"), f"{where}.text"),
                "annotations": [],
                "logprobs": [],
            }
        if kind == "refusal":
            return {"type": "refusal", "refusal": _text(part.get("refusal"), f"{where}.refusal")}
        raise _problem(
            where, f"an assistant message's parts are output_text or refusal, not {kind!r}."
        )
    if kind == "input_text":
        return {"type": "input_text", "text": _text(part.get("text"), f"{where}.text")}
    if kind == "input_image":
        if not isinstance(part.get("image_url"), str):
            raise _problem(
                where,
                "input_image needs image_url (a URL or a data: URL); uploaded files (file_id) "
                "are not supported: this service keeps no files.",
            )
        detail = part.get("detail") or "auto"
        if detail not in ("auto", "low", "high"):
            raise _problem(f"{where}.detail", "must be auto, low or high.")
        return {
            "type": "input_image",
            "image_url": _text(part["image_url"], f"{where}.image_url"),
            "detail": detail,
        }
    if kind in ("input_file", "input_audio"):
        raise _problem(where, f"{kind} parts are not supported: the service keeps no files.")
    raise _problem(where, f"unknown content part type {kind!r}.")


def _message(item: Mapping[str, Any], where: str) -> dict[str, Any]:
    role = item.get("role")
    if role not in INPUT_ROLES:
        raise _problem(f"{where}.role", f"must be one of {', '.join(INPUT_ROLES)}.")
    content = item.get("content")
    if isinstance(content, str):
        text = _text(content, f"{where}.content")
        parts = [
            {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
            if role == "assistant"
            else {"type": "input_text", "text": text}
        ]
    elif isinstance(content, list):
        parts = [
            _content_part(part, role, f"{where}.content[{index}]")
            for index, part in enumerate(content)
        ]
    else:
        raise _problem(f"{where}.content", "must be a string or a list of content parts.")
    return {"type": "message", "role": role, "content": parts}


def input_item(item: Any, where: str) -> dict[str, Any]:
    """One input item in its stored form; ValidationError naming what is not supported."""
    item = _object(item, where)
    kind = item.get("type", "message" if "role" in item or "id" not in item else "item_reference")
    if kind == "message":
        return _message(item, where)
    if kind == "function_call":
        return {
            "type": "function_call",
            "call_id": _text(item.get("call_id"), f"{where}.call_id"),
            "name": _text(item.get("name"), f"{where}.name"),
            "arguments": _text(item.get("arguments"), f"{where}.arguments"),
        }
    if kind == "function_call_output":
        output = item.get("output")
        if isinstance(output, list):
            stored: Any = [
                _content_part(part, "user", f"{where}.output[{index}]")
                for index, part in enumerate(output)
            ]
        else:
            stored = _text(output, f"{where}.output")
        return {
            "type": "function_call_output",
            "call_id": _text(item.get("call_id"), f"{where}.call_id"),
            "output": stored,
        }
    if kind == "reasoning":
        summary = item.get("summary") or []
        content = item.get("content") or []
        if not isinstance(summary, list) or not isinstance(content, list):
            raise _problem(where, "summary and content must be lists.")
        return {
            "type": "reasoning",
            "summary": [
                {"type": "summary_text", "text": _text(_object(s, where).get("text"), where)}
                for s in summary
            ],
            "content": [
                {"type": "reasoning_text", "text": _text(_object(c, where).get("text"), where)}
                for c in content
            ],
        }
    if kind == "item_reference":
        # Resolved to the stored item it names (app/services/responses.py).
        return {"type": "item_reference", "id": _text(item.get("id"), f"{where}.id")}
    raise _problem(
        f"{where}.type",
        f"{kind!r} items are not supported: only message, function_call, "
        "function_call_output and reasoning items translate to Chat Completions.",
    )


def input_items(value: Any, field: str = "input") -> list[dict[str, Any]]:
    """``input`` (a string, or a list of items) as a list of stored items."""
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": _text(value, field)}
        ]}]  # fmt: skip
    if not isinstance(value, list):
        raise ValidationError("Must be a string or a list of input items.")
    return [input_item(item, f"{field}[{index}]") for index, item in enumerate(value)]


def function_tool(tool: Any, where: str) -> dict[str, Any]:
    tool = _object(tool, where)
    kind = tool.get("type")
    if kind != "function":
        raise _problem(f"{where}.type", f"{kind!r} {_WHY_BUILT_IN}.")
    parameters = tool.get("parameters")
    if parameters is not None and not isinstance(parameters, Mapping):
        raise _problem(f"{where}.parameters", "must be a JSON Schema object.")
    strict = tool.get("strict")
    if strict is not None and not isinstance(strict, bool):
        raise _problem(f"{where}.strict", "must be a boolean.")
    description = tool.get("description")
    unknown = set(tool) - {"type", "name", "description", "parameters", "strict"}
    if unknown:
        raise _problem(where, f"unknown field(s) {', '.join(sorted(unknown))}.")
    return {
        "type": "function",
        "name": _text(tool.get("name"), f"{where}.name"),
        "description": None if description is None else _text(description, f"{where}.description"),
        "parameters": dict(parameters) if parameters is not None else None,
        "strict": strict,
    }


def _tool_choice(value: Any) -> Any:
    if value in ("none", "auto", "required"):
        return value
    if isinstance(value, Mapping) and value.get("type") == "function":
        return {"type": "function", "name": _text(value.get("name"), "tool_choice.name")}
    kind = value.get("type") if isinstance(value, Mapping) else value
    raise ValidationError(
        f"{kind!r} is not supported: tool_choice is none, auto, required or "
        '{"type": "function", "name": ...}.'
    )


def _text_config(value: Any) -> dict[str, Any]:
    value = _object(value, "text")
    unknown = set(value) - {"format", "verbosity"}
    if unknown:
        raise ValidationError(f"unknown field(s) {', '.join(sorted(unknown))}.")
    fmt = value.get("format") or {"type": "text"}
    fmt = _object(fmt, "text.format")
    kind = fmt.get("type")
    if kind in ("text", "json_object"):
        stored: dict[str, Any] = {"type": kind}
    elif kind == "json_schema":
        schema = fmt.get("schema")
        if not isinstance(schema, Mapping):
            raise ValidationError("text.format.schema: must be a JSON Schema object.")
        stored = {
            "type": "json_schema",
            "name": _text(fmt.get("name"), "text.format.name"),
            "schema": dict(schema),
            "description": fmt.get("description"),
            "strict": fmt.get("strict"),
        }
    else:
        raise ValidationError(
            f"text.format.type: must be text, json_object or json_schema, not {kind!r}."
        )
    verbosity = value.get("verbosity")
    if verbosity not in (None, "low", "medium", "high"):
        raise ValidationError("text.verbosity: must be low, medium or high.")
    return {"format": stored, "verbosity": verbosity}


def _reasoning(value: Any) -> dict[str, Any]:
    value = _object(value, "reasoning")
    unknown = set(value) - {"effort", "summary", "generate_summary"}
    if unknown:
        raise ValidationError(f"unknown field(s) {', '.join(sorted(unknown))}.")
    effort = value.get("effort")
    if effort not in (None, "none", "minimal", "low", "medium", "high", "xhigh"):
        raise ValidationError(
            "reasoning.effort: must be none, minimal, low, medium, high or xhigh."
        )
    if value.get("summary") is not None or value.get("generate_summary") is not None:
        raise ValidationError(
            "reasoning.summary is not supported: a Chat Completions upstream streams its "
            "reasoning whole (returned as the reasoning item's content), never summarised."
        )
    return {"effort": effort, "summary": None}


class ResponseCreate(Schema):
    """POST /v1/responses."""

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
        # say which response this one continues (app/services/responses.py).
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
        check("tool_choice", lambda v: "auto" if v is None else _tool_choice(v))
        check("text", lambda v: _text_config(v or {}))
        check("reasoning", lambda v: _reasoning(v or {}))
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


def conversation_ref(value: Any) -> str | None:
    """``conversation``: an id, or ``{"id": ...}``."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        value = value.get("id")
    if not isinstance(value, str):
        raise ValidationError('Must be a conversation id or {"id": ...}.')
    return value


# ------------------------------------------------------------------ conversations
def _items_field(**kwargs: Any) -> fields.List:
    return fields.List(
        fields.Raw(),
        validate=validate.Length(max=MAX_CONVERSATION_ITEMS),
        **kwargs,
        metadata={"description": f"Up to {MAX_CONVERSATION_ITEMS} input items."},
    )


def _field_items(items: list[Any]) -> list[dict[str, Any]]:
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


# ------------------------------------------------------------------ objects (documentation)
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
