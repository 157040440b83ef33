"""Every object the service answers on /v1/responses and /v1/conversations, and every event of
a Response stream, is validated against openai-python's own models; a mismatch raises."""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any

import httpx2
import openai
from flask import Response as FlaskResponse
from flask import request
from openai.types.conversations import (
    Conversation,
    ConversationDeletedResource,
    ConversationItem,
    ConversationItemList,
)
from openai.types.responses import Response, ResponseItemList, ResponseStreamEvent
from pydantic import TypeAdapter, ValidationError

RESPONSE = "/v1/responses/<string:response_id>"
CONVERSATION = "/v1/conversations/<string:conversation_id>"
ITEMS = f"{CONVERSATION}/items"

# The SDK's model of each JSON body, by method and route. DELETE /v1/responses/{id} has none:
# the SDK reads nothing of its answer (it returns None).
MODELS: dict[tuple[str, str], TypeAdapter[Any]] = {
    ("POST", "/v1/responses"): TypeAdapter(Response),
    ("GET", RESPONSE): TypeAdapter(Response),
    ("GET", f"{RESPONSE}/input_items"): TypeAdapter(ResponseItemList),
    ("POST", "/v1/conversations"): TypeAdapter(Conversation),
    ("GET", CONVERSATION): TypeAdapter(Conversation),
    ("POST", CONVERSATION): TypeAdapter(Conversation),
    ("DELETE", CONVERSATION): TypeAdapter(ConversationDeletedResource),
    ("GET", ITEMS): TypeAdapter(ConversationItemList),
    ("POST", ITEMS): TypeAdapter(ConversationItemList),
    ("GET", f"{ITEMS}/<string:item_id>"): TypeAdapter(ConversationItem),
    ("DELETE", f"{ITEMS}/<string:item_id>"): TypeAdapter(Conversation),
}
STREAMS = {("POST", "/v1/responses")}
EVENT = TypeAdapter(ResponseStreamEvent)
# The same routes as paths match them, for answers read off a socket.
PATHS = {
    rule: re.compile(re.sub(r"<string:\w+>", "[^/]+", rule)) for _, rule in [*MODELS, *STREAMS]
}


class ShapeMismatch(AssertionError):
    """The service answered what openai-python's models reject."""


def check_body(where: str, model: TypeAdapter[Any], body: Any) -> None:
    """Validate one decoded JSON body; raise ShapeMismatch naming ``where`` if it fails."""
    try:
        model.validate_python(body, strict=False)
    except ValidationError as error:
        raise ShapeMismatch(f"{where} is not openai-python's model: {error}") from error


def check_event(where: str, block: str) -> None:
    """Validate one SSE block (``event:`` and ``data:`` lines) as a Response stream event."""
    fields = dict(line.split(": ", 1) for line in block.split("\n") if ": " in line)
    if "data" not in fields:
        return  # a keep-alive comment
    data = json.loads(fields["data"])
    if fields.get("event") != data.get("type"):
        raise ShapeMismatch(f"{where}: event {fields.get('event')!r} carries {data.get('type')!r}")
    check_body(f"{where} event {data.get('type')!r}", EVENT, data)


class EventChecker:
    """Validates the events of a stream as its bytes go by, each once it is complete."""

    def __init__(self, where: str) -> None:
        self.where = where
        self._pending = ""
        # Bytes read off a socket may cut a character in two.
        self._decoder = codecs.getincrementaldecoder("utf-8")()

    def feed(self, chunk: bytes | str) -> None:
        self._pending += self._decoder.decode(chunk) if isinstance(chunk, bytes) else chunk
        *blocks, self._pending = self._pending.split("\n\n")
        for block in blocks:
            check_event(self.where, block)


class CheckedEvents:
    """A streamed WSGI body whose events are validated as they are sent; ``close`` reaches
    the body it wraps (the exchange's close hook hangs on it)."""

    def __init__(self, body: Iterable[bytes], where: str) -> None:
        self.body = body
        self.checker = EventChecker(where)

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.body:
            self.checker.feed(chunk)
            yield chunk

    def close(self) -> None:
        close = getattr(self.body, "close", None)
        if close is not None:
            close()


def check_response(response: FlaskResponse) -> FlaskResponse:
    """An ``after_request`` hook: a 2xx JSON answer of /v1/responses or /v1/conversations is
    validated now, an event stream as it is sent."""
    rule = request.url_rule
    if rule is None or not 200 <= response.status_code < 300:
        return response
    key = (request.method, rule.rule)
    where = f"{request.method} {request.path}"
    if response.mimetype == "text/event-stream" and key in STREAMS:
        response.response = CheckedEvents(response.response, where)
    elif response.mimetype == "application/json" and key in MODELS:
        check_body(where, MODELS[key], response.get_json())
    return response


def _served(response: httpx2.Response) -> tuple[tuple[str, str] | None, str, str]:
    """The (method, route) an answer read off a socket came from, where, and its media type."""
    method, path = response.request.method, response.request.url.path
    rule = next((rule for rule, pattern in PATHS.items() if pattern.fullmatch(path)), None)
    media = response.headers.get("content-type", "").split(";")[0].strip()
    return (None if rule is None else (method, rule)), f"{method} {path}", media


class CheckedByteStream(httpx2.SyncByteStream):
    """An HTTP response body whose events are validated as the client reads them."""

    def __init__(self, stream: httpx2.SyncByteStream, where: str) -> None:
        self.stream = stream
        self.checker = EventChecker(where)

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.stream:
            self.checker.feed(chunk)
            yield chunk

    def close(self) -> None:
        self.stream.close()


class AsyncCheckedByteStream(httpx2.AsyncByteStream):
    """CheckedByteStream for an async client."""

    def __init__(self, stream: httpx2.AsyncByteStream, where: str) -> None:
        self.stream = stream
        self.checker = EventChecker(where)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self.stream:
            self.checker.feed(chunk)
            yield chunk

    async def aclose(self) -> None:
        await self.stream.aclose()


def _check_served(response: httpx2.Response) -> None:
    key, where, media = _served(response)
    if key is None or not response.is_success:
        return
    if media == "text/event-stream" and key in STREAMS:
        response.stream = CheckedByteStream(response.stream, where)  # type: ignore[arg-type]
    elif media == "application/json" and key in MODELS:
        check_body(where, MODELS[key], json.loads(response.read()))


async def _acheck_served(response: httpx2.Response) -> None:
    key, where, media = _served(response)
    if key is None or not response.is_success:
        return
    if media == "text/event-stream" and key in STREAMS:
        response.stream = AsyncCheckedByteStream(response.stream, where)  # type: ignore[arg-type]
    elif media == "application/json" and key in MODELS:
        check_body(where, MODELS[key], json.loads(await response.aread()))


def checked_http_client(**options: Any) -> httpx2.Client:
    """The openai SDK's HTTP client (``http_client=``), validating what a served process
    answers as the in-process hook does; ``options`` go to the client."""
    return openai.DefaultHttpxClient(event_hooks={"response": [_check_served]}, **options)


def checked_async_http_client(**options: Any) -> httpx2.AsyncClient:
    """checked_http_client for openai.AsyncOpenAI."""
    return openai.DefaultAsyncHttpxClient(event_hooks={"response": [_acheck_served]}, **options)
