"""A: ``chunk_of`` checking each JSON object against ``collections.abc.Mapping`` (as before);
B: against ``dict`` (the code as it is). ``python -m bench.ab bench/ab/plain_dicts.py --tokens 20``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.llm import client, events
from app.llm.events import Chunk, finish_reason_of, text_of, usage_of

NEW = events.chunk_of


def chunk_of(event: object, raw: str | None = None) -> Chunk:
    if not isinstance(event, Mapping):
        raise events.BadUpstreamEvent(f"expected a JSON object, got {type(event).__name__}")
    text = reasoning = refusal = ""
    finish_reason = None
    tool_calls: tuple[Any, ...] = ()
    choices = event.get("choices") or ()
    for choice in choices if isinstance(choices, list) else ():
        if not isinstance(choice, Mapping) or choice.get("index", 0) != 0:
            continue
        delta = choice.get("delta")
        if isinstance(delta, Mapping):
            text = text_of(delta.get("content"))
            reasoning = text_of(delta.get("reasoning_content") or delta.get("reasoning"))
            refusal = text_of(delta.get("refusal"))
            calls = delta.get("tool_calls")
            if calls and isinstance(calls, list):
                tool_calls = tuple(calls)
        finish_reason = finish_reason_of(choice.get("finish_reason"))
    usage = event.get("usage")
    if isinstance(usage, Mapping):
        return Chunk(text, reasoning, refusal, usage_of(usage), finish_reason, tool_calls, raw)
    return Chunk(text, reasoning, refusal, None, finish_reason, tool_calls, raw)


def swap_a() -> None:
    client.chunk_of = chunk_of  # type: ignore[assignment]


def swap_b() -> None:
    client.chunk_of = NEW
