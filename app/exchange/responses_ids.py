"""The Responses API's ids, which encode where each object is stored: formatted and parsed.

- ``resp_<message id>``: a response is one exchange (a ``messages`` row);
- ``conv_<conversation id>``: the same conversation as REST's ``/conversations/<id>``;
- an item is ``<prefix>_<message id><side><position>``: the exchange's input (``i``) or
  output (``o``) item at that position, ``prefix`` saying its type (``msg``, ``fc``,
  ``fco``, ``rs``). A deleted item leaves ``null`` at its position, so ids never shift.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

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

# Which of an exchange's items an item id names: its input items ("i") or its output ("o").
Side = Literal["i", "o"]


def response_id(message_id: int) -> str:
    return f"{RESPONSE_PREFIX}{message_id}"


def conversation_id(uid: int) -> str:
    return f"{CONVERSATION_PREFIX}{uid}"


def _number(wire_id: str, prefix: str) -> int | None:
    if not isinstance(wire_id, str) or not wire_id.startswith(prefix):
        return None
    match = _NUMBER_ID.match(wire_id[len(prefix) :])
    value = int(match.group(1)) if match else None
    return value if value is not None and value <= MAX_ID else None


def parse_response_id(wire_id: str) -> int | None:
    """The message id of ``resp_<id>``; None for anything else."""
    return _number(wire_id, RESPONSE_PREFIX)


def parse_conversation_id(wire_id: str) -> int | None:
    """The conversation id of ``conv_<id>``; None for anything else."""
    return _number(wire_id, CONVERSATION_PREFIX)


def item_id(message_id: int, side: Side, position: int, item: Mapping[str, Any]) -> str:
    return f"{_ITEM_PREFIXES[item['type']]}_{message_id}{side}{position}"


def parse_item_id(wire_id: str) -> tuple[str, int, Side, int] | None:
    """(prefix, message id, side, position) of an item id; None for anything else."""
    match = _ITEM_ID.match(wire_id) if isinstance(wire_id, str) else None
    if match is None or int(match.group(2)) > MAX_ID:
        return None
    return match.group(1), int(match.group(2)), match.group(3), int(match.group(4))
