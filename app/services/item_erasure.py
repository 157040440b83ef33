"""What deleting one Conversations item leaves of its exchange: that item's content erased in
the row's own format (Responses items or chat messages), every other item as it was."""

from __future__ import annotations

from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

from app.exchange.responses_items import ITEM_ENDPOINTS, input_slots, output_slots, stored_layout
from app.exchange.responses_to_chat import prompt_text, system_text
from app.models import Message
from app.services import gateway

# Roles whose text an exchange also keeps in system_prompt.
_SYSTEM_ROLES = frozenset({"system", "developer"})


def erased_item(row: Message, side: str, position: int) -> dict[str, Any] | None:
    """The columns to write once the item at ``position`` of the exchange's inputs (``i``)
    or outputs (``o``) is deleted; None when nothing of the exchange would be left (it
    becomes a tombstone instead). Positions keep their place: a null slot."""
    values = _without_input(row, position) if side == "i" else _without_output(row, position)
    left = SimpleNamespace(
        **{
            name: getattr(row, name)
            for name in (
                "id",
                "endpoint",
                "prompt_content",
                "input_items",
                "output_items",
                "response_content",
                "reasoning_content",
                "refusal_content",
                "tool_calls",
            )
        }
        | values
    )
    if not input_slots(left) and not output_slots(left):
        return None
    return values


def _without_input(row: Message, position: int) -> dict[str, Any]:
    """The input slot nulled in the stored list as it is (a chat row stays chat messages),
    and the prompt (and, for a system message, the system prompt) read from what is left."""
    # An exchange stored without input items reads its prompt as one user message.
    stored = list(row.input_items) if row.input_items is not None else [None]
    deleted = stored[position]
    stored[position] = None
    left = [item for item in stored if item is not None]
    values: dict[str, Any] = {"input_items": stored}
    if row.endpoint in ITEM_ENDPOINTS:
        values["prompt_content"] = prompt_text(left)
    else:
        values["prompt_content"] = gateway.last_user_text(left)
    if isinstance(deleted, Mapping) and deleted.get("role") in _SYSTEM_ROLES:
        if row.endpoint in ITEM_ENDPOINTS:
            params = row.request_params if isinstance(row.request_params, Mapping) else {}
            request = {"instructions": params.get("instructions"), "input": left}
            values["system_prompt"] = system_text(request)
        else:
            values["system_prompt"] = gateway.system_text(left)
    return values


def _without_output(row: Message, position: int) -> dict[str, Any]:
    """The layout slot nulled (the layout written out, so that the others keep their
    positions) and the columns that held the item's text emptied."""
    layout = stored_layout(row)
    kind = layout[position]
    layout[position] = None
    values: dict[str, Any] = {"output_items": layout}
    if kind == "message":
        values |= {"response_content": "", "refusal_content": None}
    elif kind == "reasoning":
        values["reasoning_content"] = None
    elif kind is not None and kind.startswith("fc:"):
        calls = list(row.tool_calls or ())
        index = int(kind[3:])
        if index < len(calls):
            calls[index] = None
        values["tool_calls"] = calls
    return values
