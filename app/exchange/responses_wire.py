"""The Responses API's wire format: an exchange relayed as OpenAI's semantic stream events.

``Items`` follows the upstream's chunks (reasoning, text, tool-call deltas) and opens an
output item the first time each appears, in that order: a reasoning item, a message, a
function call per tool-call index. Its layout is what the exchange saves
(``messages.output_items``), so the Response rebuilt from the saved row (retrieval, the
terminal event, the non-streamed answer: one builder) lists the same items at the same
positions, with the same ids, as the stream announced them.

A stream is ``response.created``, ``response.in_progress``, the items' events as chunks
come (``event:`` lines, ``sequence_number`` increasing from 0), each item's ``.done``
events at the end, and one terminal event: ``response.completed`` (or
``response.incomplete`` when the upstream stopped on length), ``response.failed`` when
the answer broke off. A client that hangs up ends the exchange as client_closed
(``Exchange.relay``); nothing more is sent.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from flask import Response, current_app

from app.errors import DomainError
from app.exchange.lifecycle import Exchange
from app.exchange.outcomes import Outcome
from app.exchange.responses_ids import item_id
from app.exchange.responses_types import Item, ResponseObject
from app.exchange.wire import SSE_KEEPALIVE, STREAM_HEADERS
from app.llm.events import Chunk

JSON = "application/json"
# One encoder for every event: json.dumps with options builds a new one per call.
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
# The empty part each kind of content part is announced with.
_EMPTY: dict[str, dict[str, Any]] = {
    "reasoning_text": {"type": "reasoning_text", "text": ""},
    "output_text": {"type": "output_text", "text": "", "annotations": [], "logprobs": []},
    "refusal": {"type": "refusal", "refusal": ""},
}
TERMINAL = {
    "completed": "response.completed",
    "incomplete": "response.incomplete",
    "failed": "response.failed",
    "cancelled": "response.failed",
}


class Items:
    """The output items an exchange's chunks open, in order, and the events that say so."""

    def __init__(self, message_id: int, emit: bool = True) -> None:
        self.message_id = message_id
        self.emit = emit
        self.layout: list[str] = []
        self._open: dict[str, int] = {}  # layout entry -> output index
        self._ids: dict[int, str] = {}  # output index -> item id, built once per item
        # The message's content parts opened so far, in order ("output_text", "refusal").
        self._parts: list[str] = []
        self._sequence = 0

    def event(self, kind: str, **fields: Any) -> bytes:
        data = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return f"event: {kind}\ndata: {_encode(data)}\n\n".encode()

    def _id(self, index: int, kind: str) -> str:
        uid = self._ids.get(index)
        if uid is None:
            uid = self._ids[index] = item_id(self.message_id, "o", index, {"type": kind})
        return uid

    def _opened(
        self, entry: str, added: Callable[[int, str], list[bytes]]
    ) -> tuple[int, list[bytes]]:
        index = self._open.get(entry)
        if index is not None:
            return index, []
        index = self._open[entry] = len(self.layout)
        self.layout.append(entry)
        return index, added(index, entry) if self.emit else []

    def _added_text(self, index: int, entry: str) -> list[bytes]:
        kind = "reasoning" if entry == "reasoning" else "message"
        uid = self._id(index, kind)
        if kind == "reasoning":
            item = {"id": uid, "type": "reasoning", "summary": [], "content": [],
                    "status": "in_progress"}  # fmt: skip
            added = self.event("response.output_item.added", output_index=index, item=item)
            return [added, self._part_added(uid, index, 0, "reasoning_text")]
        item = {"id": uid, "type": "message", "role": "assistant", "content": [],
                "status": "in_progress"}  # fmt: skip
        return [self.event("response.output_item.added", output_index=index, item=item)]

    def _part_added(self, uid: str, index: int, content_index: int, kind: str) -> bytes:
        return self.event(
            "response.content_part.added",
            item_id=uid,
            output_index=index,
            content_index=content_index,
            part=_EMPTY[kind],
        )

    def _message_part(self, kind: str) -> tuple[int, int, list[bytes]]:
        """(output index, content index) of the message's part of this kind, opening the
        message and the part the first time, and the events that say so."""
        index, out = self._opened("message", self._added_text)
        if kind not in self._parts:
            self._parts.append(kind)
            if self.emit:
                uid = self._id(index, "message")
                out.append(self._part_added(uid, index, len(self._parts) - 1, kind))
        return index, self._parts.index(kind), out

    def feed(self, chunk: Chunk) -> bytes | None:
        """The events of one chunk (None when it has none to send)."""
        out: list[bytes] = []
        if chunk.reasoning:
            index, opened = self._opened("reasoning", self._added_text)
            out += opened
            if self.emit:
                out.append(
                    self.event(
                        "response.reasoning_text.delta",
                        item_id=self._id(index, "reasoning"),
                        output_index=index,
                        content_index=0,
                        delta=chunk.reasoning,
                    )
                )
        if chunk.text:
            index, part, opened = self._message_part("output_text")
            out += opened
            if self.emit:
                out.append(
                    self.event(
                        "response.output_text.delta",
                        item_id=self._id(index, "message"),
                        output_index=index,
                        content_index=part,
                        delta=chunk.text,
                        logprobs=[],
                    )
                )
        if chunk.refusal:
            index, part, opened = self._message_part("refusal")
            out += opened
            if self.emit:
                out.append(
                    self.event(
                        "response.refusal.delta",
                        item_id=self._id(index, "message"),
                        output_index=index,
                        content_index=part,
                        delta=chunk.refusal,
                    )
                )
        for delta in chunk.tool_calls:
            out += self._tool_call(delta)
        return b"".join(out) if out else None

    def _tool_call(self, delta: Any) -> list[bytes]:
        if not isinstance(delta, Mapping):
            return []
        n = delta.get("index")
        n = n if isinstance(n, int) and 0 <= n < 128 else 0
        function = delta.get("function") if isinstance(delta.get("function"), Mapping) else {}

        def added(index: int, entry: str) -> list[bytes]:
            item = {
                "id": self._id(index, "function_call"),
                "type": "function_call",
                "status": "in_progress",
                "call_id": str(delta.get("id") or ""),
                "name": str(function.get("name") or ""),
                "arguments": "",
            }
            return [self.event("response.output_item.added", output_index=index, item=item)]

        index, out = self._opened(f"fc:{n}", added)
        arguments = function.get("arguments")
        if self.emit and isinstance(arguments, str) and arguments:
            out.append(
                self.event(
                    "response.function_call_arguments.delta",
                    item_id=self._id(index, "function_call"),
                    output_index=index,
                    delta=arguments,
                )
            )
        return out

    def finish(self, response: ResponseObject) -> Iterator[bytes]:
        """Each item's closing events, from the final Response (items it lists that no
        chunk opened are announced first), then the terminal event."""
        for index, item in enumerate(response["output"]):
            entry = self.layout[index] if index < len(self.layout) else None
            if entry is None or self._open.get(entry) != index:
                yield from self._announce(index, item)
            elif item["type"] == "message":
                # Parts the final message has that no chunk opened. (Text and refusal are
                # stored apart and listed text first: an upstream that refuses and then
                # answers too is streamed in its order, and read back in that one.)
                for n, part in enumerate(item["content"][len(self._parts) :], len(self._parts)):
                    yield self._part_added(item["id"], index, n, part["type"])
            yield from self._close(index, item)
        kind = TERMINAL.get(response["status"], "response.completed")
        yield self.event(kind, response=response)

    def _announce(self, index: int, item: Item) -> Iterator[bytes]:
        if item["type"] == "function_call":
            yield self.event(
                "response.output_item.added",
                output_index=index,
                item={**item, "status": "in_progress", "arguments": ""},
            )
            return
        yield self.event(
            "response.output_item.added",
            output_index=index,
            item={**item, "status": "in_progress", "content": []},
        )
        for n, part in enumerate(item["content"]):
            yield self._part_added(item["id"], index, n, part["type"])

    def _close(self, index: int, item: Item) -> Iterator[bytes]:
        uid = item["id"]
        if item["type"] == "function_call":
            yield self.event(
                "response.function_call_arguments.done",
                item_id=uid,
                output_index=index,
                name=item["name"],
                arguments=item["arguments"],
            )
        else:
            for n, part in enumerate(item["content"]):
                kind = part["type"]
                done: dict[str, Any] = (
                    {"refusal": part["refusal"]} if kind == "refusal" else {"text": part["text"]}
                )
                if kind == "output_text":
                    done["logprobs"] = []
                yield self.event(
                    f"response.{kind}.done",
                    item_id=uid,
                    output_index=index,
                    content_index=n,
                    **done,
                )
                yield self.event(
                    "response.content_part.done",
                    item_id=uid,
                    output_index=index,
                    content_index=n,
                    part=part,
                )
        yield self.event("response.output_item.done", output_index=index, item=item)


# What the service gives the wire: the snapshot response.created carries, and the final
# Response once the exchange has ended (built from its saved row).
Final = Callable[[Exchange], ResponseObject]


def _stream_body(
    exchange: Exchange, items: Items, snapshot: ResponseObject, final: Final, keepalive: float
) -> Iterator[bytes]:
    yield items.event("response.created", response=snapshot)
    yield items.event("response.in_progress", response=snapshot)
    yield from exchange.relay(items.feed, keepalive=SSE_KEEPALIVE, keepalive_seconds=keepalive)
    if exchange.outcome == Outcome.CLIENT_CLOSED:
        return
    yield from items.finish(final(exchange))


def _whole(exchange: Exchange, items: Items, final: Final) -> ResponseObject:
    for _ in exchange.relay(items.feed):
        pass
    if exchange.outcome != Outcome.COMPLETE:
        problem = exchange.problem
        raise problem if problem is not None else DomainError("The answer failed.")
    return final(exchange)


def responses_response(
    exchange: Exchange,
    items: Items,
    snapshot: ResponseObject,
    final: Final,
    stream: bool,
    headers: dict[str, str],
) -> Response:
    """The answer to POST /v1/responses: the event stream, or the Response as JSON;
    ``headers`` (where it is saved) go with it, and with an error answered instead."""
    if not stream:
        try:
            body = json.dumps(_whole(exchange, items, final), ensure_ascii=False)
        except DomainError as error:
            error.headers.update(headers)
            raise
        return Response(body, content_type=JSON, headers=headers)
    seconds = current_app.config["SSE_KEEPALIVE_SECONDS"]
    return Response(
        _stream_body(exchange, items, snapshot, final, seconds),
        mimetype="text/event-stream",
        headers={**STREAM_HEADERS, **headers},
    )
