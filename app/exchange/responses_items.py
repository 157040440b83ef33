"""An exchange's Responses items, read from its row: inputs, outputs, and their listing.

Input items are stored whole (``messages.input_items``). Output items are stored as their
layout only (``messages.output_items``: ``"reasoning"``, ``"message"``, ``"fc:<n>"``), the
texts and calls being the exchange's ``reasoning_content``, ``response_content``,
``refusal_content`` (the message's refusal part) and ``tool_calls`` as every endpoint
saves them; exchanges of other endpoints (no item columns) read as a user message and an
assistant message (and their function calls).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from app.exchange.responses_ids import Side, item_id
from app.exchange.responses_status import response_status
from app.exchange.responses_types import (
    AnswerPart,
    AnswerRow,
    ExchangeRow,
    Item,
    ItemStatus,
    ResponseRow,
    Slot,
)

# Endpoints whose exchanges keep Responses input items; the others keep chat messages.
ITEM_ENDPOINTS = frozenset({"responses", "conversations"})


def default_layout(row: AnswerRow) -> list[str]:
    """The output items of an exchange saved without a layout: reasoning, text, calls."""
    layout = ["reasoning"] if row.reasoning_content else []
    if row.response_content or row.refusal_content or not row.tool_calls:
        layout.append("message")
    layout += [f"fc:{n}" for n in range(len(row.tool_calls or ()))]
    return layout


def stored_inputs(row: ExchangeRow) -> list[Item | None]:
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


def stored_layout(row: ResponseRow) -> list[str | None]:
    """The exchange's output layout by position (None where an item was deleted)."""
    return list(row.output_items) if row.output_items is not None else default_layout(row)


def output_item(row: AnswerRow, kind: str, status: ItemStatus = "completed") -> Item | None:
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


def parts(row: AnswerRow) -> list[AnswerPart]:
    """An answer's content parts: its text (unless it is only a refusal), then its refusal."""
    refusal = row.refusal_content
    found: list[AnswerPart] = []
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


def with_id(message_id: int, side: Side, position: int, item: Item) -> Item:
    """The item with its id first."""
    return {"id": item_id(message_id, side, position, item), **item}


def input_slots(row: ExchangeRow) -> list[Slot]:
    """The exchange's input items that are still there, with their positions."""
    return [(n, item) for n, item in enumerate(stored_inputs(row)) if item is not None]


def output_slots(row: ResponseRow, status: ItemStatus = "completed") -> list[Slot]:
    """The exchange's output items that are still there, with their positions; ``status``:
    the message's and the function calls'."""
    slots = []
    for n, kind in enumerate(stored_layout(row)):
        item = output_item(row, kind, status) if kind is not None else None
        if item is not None:
            slots.append((n, item))
    return slots


def listed_item(row: ResponseRow, side: Side, position: int, item: Item) -> Item:
    """An item as the API lists it: its id first, ``status`` on the types that carry one."""
    listed = with_id(row.id, side, position, item)
    if item["type"] in ("message", "function_call_output", "function_call"):
        listed.setdefault("status", "completed")
    return listed


def exchange_items(row: ExchangeRow) -> list[Item]:
    """An exchange's items as a conversation lists them: its inputs, then its outputs."""
    status = response_status(row)[0]
    message_status = "incomplete" if status == "incomplete" else "completed"
    return [listed_item(row, "i", n, item) for n, item in input_slots(row)] + [
        listed_item(row, "o", n, item) for n, item in output_slots(row, message_status)
    ]


def find_item(row: ExchangeRow, side: Side, position: int) -> Item | None:
    """The item at ``position`` among the exchange's inputs or outputs, as listed; None if
    there is none (or it was deleted)."""
    for n, item in input_slots(row) if side == "i" else output_slots(row):
        if n == position:
            return listed_item(row, side, n, item)
    return None


def context_items(rows: Iterable[ExchangeRow]) -> list[Item]:
    """The items of a chain of exchanges, oldest first: each one's inputs, then outputs."""
    items: list[Item] = []
    for row in rows:
        items += [item for _, item in input_slots(row)]
        items += [item for _, item in output_slots(row)]
    return items
