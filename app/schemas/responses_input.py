"""The input items, tools and options of a Responses request: checked, refused by name when a
Chat Completions upstream cannot honour them, and put in the form they are stored in."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, NotRequired, TypedDict

from marshmallow import ValidationError

INPUT_ROLES = ("user", "system", "developer", "assistant")
# Tool types and item types the Responses API has that a Chat Completions upstream cannot run.
_WHY_BUILT_IN = (
    "is a built-in tool OpenAI runs itself; this service translates to Chat Completions, "
    "where only function tools exist"
)

# Items are kept in the form the Responses API returns them, without their ids (given by
# position: app/exchange/responses_items.py).


class InputTextPart(TypedDict):
    type: Literal["input_text"]
    text: str


class InputImagePart(TypedDict):
    type: Literal["input_image"]
    image_url: str
    detail: str


class OutputTextPart(TypedDict):
    type: Literal["output_text"]
    text: str
    annotations: list[Any]
    logprobs: list[Any]


class RefusalPart(TypedDict):
    type: Literal["refusal"]
    refusal: str


ContentPart = InputTextPart | InputImagePart | OutputTextPart | RefusalPart


class MessageItem(TypedDict):
    type: Literal["message"]
    role: str
    content: list[ContentPart]


class FunctionCallItem(TypedDict):
    type: Literal["function_call"]
    call_id: str
    name: str
    arguments: str


class FunctionCallOutputItem(TypedDict):
    type: Literal["function_call_output"]
    call_id: str
    output: str | list[ContentPart]


class SummaryText(TypedDict):
    type: Literal["summary_text"]
    text: str


class ReasoningText(TypedDict):
    type: Literal["reasoning_text"]
    text: str


class ReasoningItem(TypedDict):
    type: Literal["reasoning"]
    summary: list[SummaryText]
    content: list[ReasoningText]


class ItemReference(TypedDict):
    type: Literal["item_reference"]
    id: str


InputItem = MessageItem | FunctionCallItem | FunctionCallOutputItem | ReasoningItem | ItemReference


class FunctionTool(TypedDict):
    type: Literal["function"]
    name: str
    description: str | None
    parameters: dict[str, Any] | None
    strict: bool | None


class FunctionChoice(TypedDict):
    type: Literal["function"]
    name: str


class TextFormat(TypedDict):
    type: Literal["text", "json_object", "json_schema"]
    name: NotRequired[str]  # json_schema's, as are the next three
    schema: NotRequired[dict[str, Any]]
    description: NotRequired[Any]
    strict: NotRequired[Any]


class TextConfig(TypedDict):
    format: TextFormat
    verbosity: str | None


class ReasoningConfig(TypedDict):
    effort: str | None
    summary: None


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


def _content_part(part: Any, role: str, where: str) -> ContentPart:
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


def _message(item: Mapping[str, Any], where: str) -> MessageItem:
    role = item.get("role")
    if role not in INPUT_ROLES:
        raise _problem(f"{where}.role", f"must be one of {', '.join(INPUT_ROLES)}.")
    content = item.get("content")
    if isinstance(content, str):
        text = _text(content, f"{where}.content")
        parts: list[ContentPart] = [
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


def input_item(item: Any, where: str) -> InputItem:
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
            stored: str | list[ContentPart] = [
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
        # Resolved to the stored item it names by the Responses service.
        return {"type": "item_reference", "id": _text(item.get("id"), f"{where}.id")}
    raise _problem(
        f"{where}.type",
        f"{kind!r} items are not supported: only message, function_call, "
        "function_call_output and reasoning items translate to Chat Completions.",
    )


def input_items(value: Any, field: str = "input") -> list[InputItem]:
    """``input`` (a string, or a list of items) as a list of stored items."""
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": _text(value, field)}
        ]}]  # fmt: skip
    if not isinstance(value, list):
        raise ValidationError("Must be a string or a list of input items.")
    return [input_item(item, f"{field}[{index}]") for index, item in enumerate(value)]


def function_tool(tool: Any, where: str) -> FunctionTool:
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


def tool_choice(value: Any) -> str | FunctionChoice:
    """``tool_choice``: none, auto, required, or a function by name."""
    if value in ("none", "auto", "required"):
        return value
    if isinstance(value, Mapping) and value.get("type") == "function":
        return {"type": "function", "name": _text(value.get("name"), "tool_choice.name")}
    kind = value.get("type") if isinstance(value, Mapping) else value
    raise ValidationError(
        f"{kind!r} is not supported: tool_choice is none, auto, required or "
        '{"type": "function", "name": ...}.'
    )


def text_config(value: Any) -> TextConfig:
    """``text``: the output's format (text, json_object or json_schema) and verbosity."""
    value = _object(value, "text")
    unknown = set(value) - {"format", "verbosity"}
    if unknown:
        raise ValidationError(f"unknown field(s) {', '.join(sorted(unknown))}.")
    fmt = value.get("format") or {"type": "text"}
    fmt = _object(fmt, "text.format")
    kind = fmt.get("type")
    if kind in ("text", "json_object"):
        stored: TextFormat = {"type": kind}
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


def reasoning_config(value: Any) -> ReasoningConfig:
    """``reasoning``: its effort; a summary is refused (the upstream's reasoning comes whole)."""
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


def conversation_ref(value: Any) -> str | None:
    """``conversation``: an id, or ``{"id": ...}``."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        value = value.get("id")
    if not isinstance(value, str):
        raise ValidationError('Must be a conversation id or {"id": ...}.')
    return value
