"""What an exchange's client has received so far (text, reasoning, tool calls from their
deltas, usage), and the estimate of its tokens when the upstream reports none."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, TypedDict

from app.llm.events import Chunk, Usage
from app.text import storable

# Upstream usage unknown: a token is taken for this many characters (OpenAI's rule of
# thumb for English text).
CHARS_PER_TOKEN = 4


def estimate_tokens(characters: int) -> int:
    """Tokens estimated for this many characters: ceil(characters / CHARS_PER_TOKEN)."""
    return -(-max(0, characters) // CHARS_PER_TOKEN)


class FunctionCall(TypedDict):
    name: str
    arguments: str


class ToolCall(TypedDict):
    """A tool call the model requested, as Chat Completions states it (``messages.tool_calls``)."""

    id: str
    type: str
    function: FunctionCall


@dataclass
class Progress:
    """What the client has received so far; the checkpointer reads it from its own thread."""

    text: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    refusal: list[str] = field(default_factory=list)
    usage: Usage | None = None
    finish_reason: str | None = None
    first_piece_at: float | None = None  # time.perf_counter() of the first piece of answer
    # Tool calls the model requested, assembled from their deltas.
    tool_calls: list[ToolCall] = field(default_factory=list)
    # Characters of tool-call deltas taken so far: the checkpointer's sign that they grew.
    tool_call_chars: int = 0

    def add(self, chunk: Chunk) -> None:
        """Count a chunk as received (the client has it)."""
        if (chunk.text or chunk.reasoning or chunk.refusal) and self.first_piece_at is None:
            self.first_piece_at = time.perf_counter()
        if chunk.text:
            self.text.append(chunk.text)
        if chunk.refusal:
            self.refusal.append(chunk.refusal)
        if chunk.reasoning:
            self.reasoning.append(chunk.reasoning)
        if chunk.usage is not None:
            self.usage = chunk.usage
        if chunk.finish_reason:
            self.finish_reason = chunk.finish_reason
        if chunk.tool_calls:
            self.add_tool_calls(chunk.tool_calls)

    def add_tool_calls(self, deltas: tuple[Any, ...]) -> None:
        """Fold tool-call deltas in, as OpenAI streams them: by index, the arguments in pieces."""
        for delta in deltas:
            if not isinstance(delta, dict):
                continue
            index = delta.get("index")
            index = index if isinstance(index, int) and 0 <= index < 128 else len(self.tool_calls)
            while len(self.tool_calls) <= index:
                self.tool_calls.append(
                    {"id": "", "type": "function", "function": {"name": "", "arguments": ""}}
                )
            call = self.tool_calls[index]
            if isinstance(delta.get("id"), str):
                call["id"] += storable(delta["id"])
                self.tool_call_chars += len(delta["id"])
            if isinstance(delta.get("type"), str):
                call["type"] = storable(delta["type"])
            function = delta.get("function")
            if isinstance(function, dict):
                for key in ("name", "arguments"):
                    if isinstance(function.get(key), str):
                        call["function"][key] += storable(function[key])
                        self.tool_call_chars += len(function[key])
            self.tool_call_chars += 1  # a delta that only opens a call still counts

    def tool_calls_copy(self) -> list[ToolCall]:
        """The tool calls so far, copied (safe to read from another thread)."""
        return [
            {"id": call["id"], "type": call["type"], "function": {**call["function"]}}
            for call in list(self.tool_calls)
        ]

    def received_characters(self) -> int:
        """Characters of answer, reasoning and tool calls received: the estimate's base."""
        calls = sum(
            len(call["id"]) + len(call["function"]["name"]) + len(call["function"]["arguments"])
            for call in self.tool_calls_copy()
        )
        texts = (*self.text, *self.reasoning, *self.refusal)
        return sum(map(len, texts)) + calls
