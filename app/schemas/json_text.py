"""Standard JSON only, and bounded: how every JSON body and import file is read."""

from __future__ import annotations

import json
from typing import Any

# Deeper than any request OpenAI documents (a tool's JSON Schema nests a few dozen levels at
# most), far shallower than the Python recursion limit that code walking the value (its
# storage as JSON, the history fingerprint) would hit.
MAX_JSON_DEPTH = 64


class UnsupportedJSON(json.JSONDecodeError):
    """Text Python's parser takes but the service refuses: not standard JSON, or too deep."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, doc=" ", pos=0)
        self.reason = reason


def _refuse_constant(name: str) -> Any:
    # Python's parser takes NaN, Infinity and -Infinity; RFC 8259 has no such numbers, and
    # neither PostgreSQL's jsonb nor the upstream's parser takes them.
    raise UnsupportedJSON(f"{name} is not a JSON number.")


def loads(text: str | bytes) -> Any:
    """Parse standard JSON (RFC 8259) nested at most MAX_JSON_DEPTH deep.

    Raises json.JSONDecodeError for a syntax error and UnsupportedJSON (one) for NaN or
    Infinity, for an integer too long for Python (over 4300 digits), or for nesting deeper
    than the bound (or than Python's parser can follow).
    """
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError:
        raise
    except RecursionError as error:
        raise UnsupportedJSON(f"Nested deeper than {MAX_JSON_DEPTH} levels.") from error
    except ValueError as error:  # int() over 4300 digits
        raise UnsupportedJSON("An integer of more than 4300 digits.") from error
    if _depth_exceeds(value, MAX_JSON_DEPTH):
        raise UnsupportedJSON(f"Nested deeper than {MAX_JSON_DEPTH} levels.")
    return value


def _depth_exceeds(value: Any, limit: int) -> bool:
    """Whether arrays and objects nest more than ``limit`` deep (iteratively: no recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False
