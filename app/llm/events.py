"""Upstream chat completion events parsed into ``Chunk``s: text made storable, choice 0."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from app.bounds import FINISH_REASON_MAX, INTEGER_MAX
from app.llm.errors import BadUpstreamEvent
from app.text import storable

ChatMessage = Mapping[str, str]


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None
    # Its details, when reported: prompt tokens read from the upstream's cache, completion
    # tokens spent reasoning.
    cached_tokens: int | None = None
    reasoning_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class Chunk:
    """One upstream event, made storable: answer text, reasoning, usage, finish reason."""

    text: str = ""
    reasoning: str = ""
    # What the model said instead of answering (Chat Completions' ``refusal``).
    refusal: str = ""
    usage: Usage | None = None
    finish_reason: str | None = None
    # Choice 0's tool-call deltas as received (index, id, function name, argument pieces).
    tool_calls: tuple[Any, ...] = ()
    # The event's data as received, for streams opened to be relayed raw (the /v1 gateway);
    # "" when it is not to be relayed, None on every other stream.
    raw: str | None = None


@dataclass(frozen=True)
class Completion:
    """A non-streamed answer: its text, and its usage if the upstream reported one."""

    text: str
    usage: Usage | None


class ChatStream(Protocol):
    def __iter__(self) -> Iterator[Chunk]: ...
    def close(self) -> None: ...


def chunk_of(event: object, raw: str | None = None) -> Chunk:
    """One chunk event as a ``Chunk`` of choice 0, its text made storable."""
    # dict, not Mapping: parsed JSON objects are dicts, and an ABC's isinstance is slow on
    # this per-chunk path.
    if not isinstance(event, dict):
        raise BadUpstreamEvent(f"expected a JSON object, got {type(event).__name__}")
    text = reasoning = refusal = ""
    finish_reason = None
    tool_calls: tuple[Any, ...] = ()
    choices = event.get("choices") or ()
    for choice in choices if isinstance(choices, list) else ():
        if not isinstance(choice, dict) or choice.get("index", 0) != 0:
            continue
        delta = choice.get("delta")
        if isinstance(delta, dict):
            text = text_of(delta.get("content"))
            # vLLM and DeepSeek say reasoning_content; Ollama and newer vLLM say reasoning.
            reasoning = text_of(delta.get("reasoning_content") or delta.get("reasoning"))
            refusal = text_of(delta.get("refusal"))
            calls = delta.get("tool_calls")
            if calls and isinstance(calls, list):
                tool_calls = tuple(calls)
        finish_reason = finish_reason_of(choice.get("finish_reason"))
    usage = event.get("usage")
    if isinstance(usage, dict):
        return Chunk(text, reasoning, refusal, usage_of(usage), finish_reason, tool_calls, raw)
    return Chunk(text, reasoning, refusal, None, finish_reason, tool_calls, raw)


def usage_of(usage: Mapping[str, Any]) -> Usage:
    """An event's ``usage`` object as a ``Usage``; counts no column can hold are None."""
    return Usage(
        _int_or_none(usage.get("prompt_tokens")),
        _int_or_none(usage.get("completion_tokens")),
        _int_or_none(usage.get("total_tokens")),
        _detail(usage, "prompt_tokens_details", "cached_tokens"),
        _detail(usage, "completion_tokens_details", "reasoning_tokens"),
    )


def _detail(usage: Mapping[str, Any], details: str, key: str) -> int | None:
    found = usage.get(details)
    return _int_or_none(found.get(key)) if isinstance(found, dict) else None


def completion_chunk(raw: str) -> Chunk:
    """A whole (non-streamed) completion as one ``Chunk`` of its choice 0, ``raw`` kept."""
    try:
        data = json.loads(raw)
    except ValueError as error:
        raise BadUpstreamEvent("a completion that is not JSON") from error
    if not isinstance(data, Mapping):
        raise BadUpstreamEvent(f"expected a JSON object, got {type(data).__name__}")
    choices = data.get("choices")
    choice: Any = next(
        (
            c
            for c in (choices if isinstance(choices, list) else ())
            if isinstance(c, Mapping) and c.get("index", 0) == 0
        ),
        {},
    )
    message = choice.get("message")
    message = message if isinstance(message, Mapping) else {}
    calls = message.get("tool_calls")
    # Whole tool calls carry no index; the accumulation of deltas wants one.
    tool_calls = tuple(
        {"index": i, **call}
        for i, call in enumerate(calls if isinstance(calls, list) else ())
        if isinstance(call, Mapping)
    )
    usage = data.get("usage")
    return Chunk(
        text_of(message.get("content")),
        text_of(message.get("reasoning_content") or message.get("reasoning")),
        text_of(message.get("refusal")),
        usage_of(usage) if isinstance(usage, Mapping) else None,
        finish_reason_of(choice.get("finish_reason")),
        tool_calls,
        raw,
    )


def text_of(value: object) -> str:
    """A string field of an event, made storable; "" for anything else."""
    return storable(value) if isinstance(value, str) and value else ""


def finish_reason_of(value: object) -> str | None:
    """A choice's finish reason, made storable and bounded; None if it gave none."""
    # The upstream's word, cut to its column (PostgreSQL rejects a longer one, and the whole
    # save with it); the client still gets it whole, as sent.
    return text_of(value)[:FINISH_REASON_MAX] or None


def _int_or_none(value: object) -> int | None:
    # A count no column can hold (or a negative one) is no count: None, as when not reported.
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= INTEGER_MAX:
        return value
    return None
