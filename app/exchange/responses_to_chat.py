"""A Responses request in Chat Completions terms: the upstream's request body, and the
prompt and system text its exchange keeps."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from app.exchange.responses_types import Item


def _text_of(parts: Iterable[Any], kind: str = "output_text") -> str:
    return "".join(
        p.get("text", "") if p.get("type") == kind else p.get("refusal", "")
        for p in parts
        if isinstance(p, Mapping)
    )


def _user_content(parts: Sequence[Mapping[str, Any]]) -> Any:
    if len(parts) == 1 and parts[0]["type"] == "input_text":
        return parts[0]["text"]
    content = []
    for part in parts:
        if part["type"] == "input_text":
            content.append({"type": "text", "text": part["text"]})
        elif part["type"] == "input_image":
            content.append(
                {
                    "type": "image_url",
                    "image_url": {"url": part["image_url"], "detail": part.get("detail", "auto")},
                }
            )
    return content


def _tool_output(output: Any) -> str:
    if isinstance(output, str):
        return output
    # A tool message is text: an image a tool returned is noted, not dropped silently.
    return "\n".join(
        p.get("text", "") if p.get("type") == "input_text" else "[image]"
        for p in output
        if isinstance(p, Mapping)
    )


def chat_messages(items: Iterable[Item]) -> list[dict[str, Any]]:
    """Responses items as Chat Completions messages: function calls join the assistant
    message before them, outputs become tool messages, developer is system (what local
    servers' chat templates know), reasoning is not sent back (chat templates drop it)."""
    messages: list[dict[str, Any]] = []
    for item in items:
        kind = item.get("type")
        if kind == "message":
            role = item["role"]
            if role == "assistant":
                messages.append({"role": "assistant", "content": _text_of(item["content"])})
            else:
                messages.append(
                    {
                        "role": "system" if role == "developer" else role,
                        "content": _user_content(item["content"]),
                    }
                )
        elif kind == "function_call":
            call = {
                "id": item["call_id"],
                "type": "function",
                "function": {"name": item["name"], "arguments": item["arguments"]},
            }
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(call)
                if last["content"] == "":
                    last["content"] = None
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            messages.append(
                {
                    "role": "tool",
                    "tool_call_id": item["call_id"],
                    "content": _tool_output(item["output"]),
                }
            )
    return messages


def chat_body(
    request: Mapping[str, Any], context: Sequence[Item], output_param: str
) -> dict[str, Any]:
    """The Chat Completions request for a Responses request (streamed, usage asked for by
    the client), ``context`` the earlier items; ``output_param``: the field that bounds the
    answer's tokens (MAX_OUTPUT_TOKENS_PARAM)."""
    messages: list[dict[str, Any]] = []
    if request.get("instructions"):
        messages.append({"role": "system", "content": request["instructions"]})
    messages += chat_messages([*context, *request["input"]])
    body: dict[str, Any] = {"model": request["model"], "messages": messages, "stream": True}
    tools = request.get("tools") or []
    if tools:
        body["tools"] = [
            {
                "type": "function",
                "function": {
                    key: tool[key]
                    for key in ("name", "description", "parameters", "strict")
                    if tool.get(key) is not None
                },
            }
            for tool in tools
        ]
        choice = request.get("tool_choice", "auto")
        body["tool_choice"] = (
            {"type": "function", "function": {"name": choice["name"]}}
            if isinstance(choice, Mapping)
            else choice
        )
        if request.get("parallel_tool_calls") is False:
            body["parallel_tool_calls"] = False
    for key in ("temperature", "top_p", "user", "safety_identifier"):
        if request.get(key) is not None:
            body[key] = request[key]
    if request.get("max_output_tokens") is not None:
        body[output_param] = request["max_output_tokens"]
    text = request.get("text") or {}
    fmt = text.get("format") or {"type": "text"}
    if fmt["type"] == "json_object":
        body["response_format"] = {"type": "json_object"}
    elif fmt["type"] == "json_schema":
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {
                key: fmt[key]
                for key in ("name", "schema", "description", "strict")
                if fmt.get(key) is not None
            },
        }
    if text.get("verbosity"):
        body["verbosity"] = text["verbosity"]
    effort = (request.get("reasoning") or {}).get("effort")
    if effort:
        body["reasoning_effort"] = effort
    return body


def prompt_text(items: Sequence[Item]) -> str:
    """What ``prompt_content`` keeps of a request's input: its user messages' text (images
    noted), or, for a turn that only returns tool results, those results."""
    texts = []
    for item in items:
        if item.get("type") == "message" and item.get("role") == "user":
            texts.append(
                "\n".join(
                    p["text"] if p["type"] == "input_text" else "[image]" for p in item["content"]
                )
            )
    if texts:
        return "\n".join(texts)
    return "\n".join(
        _tool_output(item["output"]) for item in items if item.get("type") == "function_call_output"
    )


def system_text(request: Mapping[str, Any]) -> str | None:
    """The instructions and the input's system and developer messages, as ``system_prompt``."""
    texts = [request["instructions"]] if request.get("instructions") else []
    texts += [
        _text_of(item["content"], "input_text")
        for item in request["input"]
        if item.get("type") == "message" and item.get("role") in ("system", "developer")
    ]
    return "\n\n".join(texts) if texts else None
