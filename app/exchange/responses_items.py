"""The Responses API's objects over exchanges: ids, items, the Response, the chat body.

Ids encode where a thing is stored, so none needs a column of its own:

- ``resp_<message id>``: a response is one exchange (a ``messages`` row);
- ``conv_<conversation id>``: the same conversation as REST's ``/conversations/<id>``;
- an item is ``<prefix>_<message id><i|o><position>``: the exchange's input (``i``) or
  output (``o``) item at that position, ``prefix`` saying its type (``msg``, ``fc``,
  ``fco``, ``rs``). A deleted item leaves ``null`` at its position, so ids never shift.

Input items are stored whole (``messages.input_items``). Output items are stored as their
layout only (``messages.output_items``: ``"reasoning"``, ``"message"``, ``"fc:<n>"``), the
texts and calls being the exchange's ``reasoning_content``, ``response_content``,
``refusal_content`` (the message's refusal part) and ``tool_calls`` as every endpoint
saves them; exchanges of other endpoints (no item columns)
read as a user message and an assistant message (and their function calls).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

RESPONSE_PREFIX = "resp_"
CONVERSATION_PREFIX = "conv_"
_ITEM_PREFIXES = {
    "message": "msg",
    "function_call": "fc",
    "function_call_output": "fco",
    "reasoning": "rs",
}
_ITEM_ID = re.compile(r"^(msg|fc|fco|rs)_([1-9][0-9]{0,18})([io])(0|[1-9][0-9]{0,5})$")
_NUMBER_ID = re.compile(r"^([1-9][0-9]{0,18})$")
MAX_ID = 2**63 - 1

Item = dict[str, Any]
Slot = tuple[int, Item]  # (position, item)


# ----------------------------------------------------------------------------- ids
def response_id(message_id: int) -> str:
    return f"{RESPONSE_PREFIX}{message_id}"


def conversation_id(uid: int) -> str:
    return f"{CONVERSATION_PREFIX}{uid}"


def _number(text: str, prefix: str) -> int | None:
    if not isinstance(text, str) or not text.startswith(prefix):
        return None
    match = _NUMBER_ID.match(text[len(prefix) :])
    value = int(match.group(1)) if match else None
    return value if value is not None and value <= MAX_ID else None


def parse_response_id(text: str) -> int | None:
    """The message id of ``resp_<id>``; None for anything else."""
    return _number(text, RESPONSE_PREFIX)


def parse_conversation_id(text: str) -> int | None:
    """The conversation id of ``conv_<id>``; None for anything else."""
    return _number(text, CONVERSATION_PREFIX)


def item_id(message_id: int, side: str, position: int, item: Mapping[str, Any]) -> str:
    return f"{_ITEM_PREFIXES[item['type']]}_{message_id}{side}{position}"


def parse_item_id(text: str) -> tuple[str, int, str, int] | None:
    """(prefix, message id, side, position) of an item id; None for anything else."""
    match = _ITEM_ID.match(text) if isinstance(text, str) else None
    if match is None or int(match.group(2)) > MAX_ID:
        return None
    return match.group(1), int(match.group(2)), match.group(3), int(match.group(4))


def item_prefix(item: Mapping[str, Any]) -> str:
    return _ITEM_PREFIXES[item["type"]]


def timestamp(moment: datetime | None) -> int:
    return int(moment.timestamp()) if moment is not None else 0


# --------------------------------------------------------------- an exchange's items
def default_layout(row: Any) -> list[str]:
    """The output items of an exchange saved without a layout: reasoning, text, calls."""
    layout = ["reasoning"] if row.reasoning_content else []
    if row.response_content or row.refusal_content or not row.tool_calls:
        layout.append("message")
    layout += [f"fc:{n}" for n in range(len(row.tool_calls or ()))]
    return layout


# Endpoints whose exchanges keep Responses input items; the others keep chat messages.
ITEM_ENDPOINTS = frozenset({"responses", "conversations"})


def stored_inputs(row: Any) -> list[Item | None]:
    """The exchange's input items by position (None where one was deleted)."""
    if row.input_items is not None:
        if row.endpoint in ITEM_ENDPOINTS:
            return list(row.input_items)
        return [_chat_input(message) for message in row.input_items]
    if not row.prompt_content:
        return []
    return [
        {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": row.prompt_content}],
        }
    ]


def _chat_input(message: Any) -> Item | None:
    """One chat message a client sent (the chat endpoints' input_items) as an input item:
    a tool result is a function call's output, anything else a message of its role (an
    assistant's tool calls, which clients only resend, are read from the answers)."""
    if not isinstance(message, Mapping):
        return None  # deleted through the Conversations API
    role = message.get("role")
    if role == "tool":
        return {
            "type": "function_call_output",
            "call_id": str(message.get("tool_call_id") or ""),
            "output": _chat_text(message.get("content")),
        }
    if role == "assistant":
        return {
            "type": "message",
            "role": "assistant",
            "status": "completed",
            "content": [
                {
                    "type": "output_text",
                    "text": _chat_text(message.get("content")),
                    "annotations": [],
                    "logprobs": [],
                }
            ],
        }
    return {
        "type": "message",
        "role": role if role in ("system", "developer") else "user",
        "content": [{"type": "input_text", "text": _chat_text(message.get("content"))}],
    }


def _chat_text(content: Any) -> str:
    """A chat message's content as text: a string, or its text parts joined."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part.get("text", "")
            for part in content
            if isinstance(part, Mapping) and isinstance(part.get("text"), str)
        )
    return ""


def stored_layout(row: Any) -> list[str | None]:
    return list(row.output_items) if row.output_items is not None else default_layout(row)


def output_item(row: Any, kind: str, status: str = "completed") -> Item | None:
    """One output item of an exchange from its layout entry; None if the call is gone."""
    if kind == "reasoning":
        return {
            "type": "reasoning",
            "summary": [],
            "content": [{"type": "reasoning_text", "text": row.reasoning_content or ""}],
            "encrypted_content": None,
            "status": "completed",
        }
    if kind == "message":
        return {"type": "message", "role": "assistant", "status": status, "content": parts(row)}
    index = int(kind.partition(":")[2] or 0)
    calls = row.tool_calls or []
    if index >= len(calls) or not isinstance(calls[index], Mapping):
        return None
    call = calls[index]
    function = call.get("function") if isinstance(call.get("function"), Mapping) else {}
    return {
        "type": "function_call",
        "call_id": str(call.get("id") or ""),
        "name": str(function.get("name") or ""),
        # "" is no JSON: the SDK parses a strict tool's arguments.
        "arguments": str(function.get("arguments") or "{}"),
        "status": status,
    }


def parts(row: Any) -> list[Item]:
    """An answer's content parts: its text (unless it is only a refusal), then its refusal."""
    refusal = row.refusal_content
    found: list[Item] = []
    if row.response_content or not refusal:
        found.append(
            {
                "type": "output_text",
                "text": row.response_content or "",
                "annotations": [],
                "logprobs": [],
            }
        )
    if refusal:
        found.append({"type": "refusal", "refusal": refusal})
    return found


def _with_id(message_id: int, side: str, position: int, item: Item) -> Item:
    return {"id": item_id(message_id, side, position, item), **item}


def input_slots(row: Any) -> list[Slot]:
    return [(n, item) for n, item in enumerate(stored_inputs(row)) if item is not None]


def output_slots(row: Any, status: str = "completed") -> list[Slot]:
    slots = []
    for n, kind in enumerate(stored_layout(row)):
        item = output_item(row, kind, status) if kind is not None else None
        if item is not None:
            slots.append((n, item))
    return slots


def listed_item(row: Any, side: str, position: int, item: Item) -> Item:
    """An item as the API lists it: its id first, ``status`` on the types that carry one."""
    listed = _with_id(row.id, side, position, item)
    if item["type"] in ("message", "function_call_output", "function_call"):
        listed.setdefault("status", "completed")
    return listed


def exchange_items(row: Any) -> list[Item]:
    """An exchange's items as a conversation lists them: its inputs, then its outputs."""
    status = response_status(row)[0]
    message_status = "incomplete" if status == "incomplete" else "completed"
    return [listed_item(row, "i", n, item) for n, item in input_slots(row)] + [
        listed_item(row, "o", n, item) for n, item in output_slots(row, message_status)
    ]


def find_item(row: Any, side: str, position: int) -> Item | None:
    for n, item in input_slots(row) if side == "i" else output_slots(row):
        if n == position:
            return listed_item(row, side, n, item)
    return None


# ------------------------------------------------------------------ the Response object
_FAILURES = {
    499: "The client closed the connection before the answer was complete.",
    502: "The upstream model failed or broke off while answering.",
    504: "The upstream model did not finish in time (GENERATION_TIMEOUT).",
}


def response_status(row: Any) -> tuple[str, dict[str, Any] | None, dict[str, Any] | None]:
    """(status, incomplete_details, error) of a response from its exchange's ending."""
    outcome = row.outcome
    if row.is_success is None:
        return "in_progress", None, None
    if outcome == "complete" or (outcome is None and row.is_success):
        if row.finish_reason == "length":
            return "incomplete", {"reason": "max_output_tokens"}, None
        if row.finish_reason == "content_filter":
            return "incomplete", {"reason": "content_filter"}, None
        return "completed", None, None
    if outcome == "client_closed":
        return "cancelled", None, None
    if outcome == "interrupted":
        message = "The service stopped while writing the answer; the text is its last checkpoint."
    else:
        message = _FAILURES.get(row.status_code or 0, "The answer failed.")
    return "failed", None, {"code": "server_error", "message": message}


def _usage(row: Any) -> dict[str, Any] | None:
    if row.prompt_tokens is None and row.response_tokens is None and row.total_tokens is None:
        return None
    prompt, output = row.prompt_tokens or 0, row.response_tokens or 0
    # Details the upstream did not report are 0 (the shape wants integers), not a guess.
    cached = row.cached_tokens or 0
    reasoning = row.reasoning_tokens or 0
    return {
        "input_tokens": prompt,
        # Chat Completions reports no cache writes.
        "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": 0},
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": row.total_tokens if row.total_tokens is not None else prompt + output,
    }


def public_tool(tool: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "type": "function",
        "name": tool["name"],
        "description": tool.get("description"),
        "parameters": tool.get("parameters"),
        "strict": tool.get("strict"),
    }


def response_object(row: Any, params: Mapping[str, Any], *, in_progress: bool = False) -> Item:
    """The Response of an exchange: ``row`` has a message's columns, ``params`` the request's
    echoed parameters (as ``messages.request_params`` keeps them). ``in_progress``: the
    snapshot sent by response.created (no output yet)."""
    if in_progress:
        status, incomplete, error = "in_progress", None, None
    else:
        status, incomplete, error = response_status(row)
    created = timestamp(row.created_at)
    duration = row.duration_ms
    finished = status == "completed" and duration is not None
    message_status = "incomplete" if status == "incomplete" else "completed"
    output = (
        []
        if in_progress
        else [_with_id(row.id, "o", n, item) for n, item in output_slots(row, message_status)]
    )
    conversation = params.get("conversation")
    text = params.get("text") or {"format": {"type": "text"}, "verbosity": None}
    return {
        "id": response_id(row.id),
        "object": "response",
        "created_at": created,
        "status": status,
        "background": False,
        "completed_at": created + round(duration / 1000) if finished else None,
        "error": error,
        "incomplete_details": incomplete,
        "instructions": params.get("instructions"),
        "max_output_tokens": params.get("max_output_tokens"),
        "max_tool_calls": None,
        "model": row.model or params.get("model") or "",
        "output": output,
        "parallel_tool_calls": params.get("parallel_tool_calls", True),
        "previous_response_id": params.get("previous_response_id"),
        "prompt_cache_key": params.get("prompt_cache_key"),
        "service_tier": params.get("service_tier"),
        "conversation": {"id": conversation} if conversation else None,
        "reasoning": params.get("reasoning") or {"effort": None, "summary": None},
        "safety_identifier": params.get("safety_identifier"),
        "store": params.get("store", True),
        "temperature": params.get("temperature"),
        "text": text,
        "tool_choice": params.get("tool_choice", "auto"),
        "tools": [public_tool(t) for t in params.get("tools") or ()],
        "top_p": params.get("top_p"),
        "truncation": params.get("truncation", "disabled"),
        "usage": None if in_progress else _usage(row),
        "user": params.get("user"),
        "metadata": params.get("metadata") or {},
    }


# Parameters a Response echoes, as ``messages.request_params`` keeps them.
ECHOED = (
    "model",
    "instructions",
    "previous_response_id",
    "conversation",
    "store",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "temperature",
    "top_p",
    "max_output_tokens",
    "text",
    "reasoning",
    "metadata",
    "user",
    "safety_identifier",
    "truncation",
    "prompt_cache_key",
    "service_tier",
)


# ------------------------------------------------------------- to Chat Completions
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


def chat_messages(items: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
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


def context_items(rows: Iterable[Any]) -> list[Item]:
    """The items of a chain of exchanges, oldest first: each one's inputs, then outputs."""
    items: list[Item] = []
    for row in rows:
        items += [item for _, item in input_slots(row)]
        items += [item for _, item in output_slots(row)]
    return items


def chat_body(
    request: Mapping[str, Any], context: Sequence[Mapping[str, Any]], output_param: str
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


def prompt_text(items: Iterable[Mapping[str, Any]]) -> str:
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
