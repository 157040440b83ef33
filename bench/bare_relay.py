"""The relay's yardstick: the least a Python gevent service must do to relay an upstream
model stream. A bare WSGI app (no framework, no database, no auth), httpx to the upstream,
served under the same gunicorn config as the app (gevent workers, WEB_CONCURRENCY):

    OPENAI_BASE_URL=http://127.0.0.1:8001/v1 GUNICORN_WORKER_CLASS=gevent \\
      .venv/bin/gunicorn -c gunicorn.conf.py bench.bare_relay:app     (DATABASE_URL set too:
                                                                      the config's start-up)

It answers the requests bench/streaming.py sends the service, in the same wire formats:

- ``GET /text/generate/stream?prompt=...``: the answer's text (the deltas' content);
- ``POST /conversations/<id>/messages`` ``{"prompt", "stream": true}``: SSE ``delta``
  events ``{text}``, then ``done``;
- ``POST /v1/chat/completions``: the upstream's events passed through untouched (the least
  a relay must do: convstore also parses each event, to save the answer);
- ``POST /v1/responses`` ``{"input": "..."}``: the least of OpenAI's semantic stream,
  ``response.created``, an ``output_text.delta`` per delta and ``response.completed`` with
  the whole text (the upstream speaks Chat Completions: a relay must translate).

Each asks the upstream for ``/v1/chat/completions`` with the user's prompt alone (no
history: there is no database) and reads the body to its end, so that the connection goes
back to httpx's pool as the service's does.
"""

from __future__ import annotations

import itertools
import json
import tempfile
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import parse_qs

from app.config import settings_from_env

try:  # openai >= 3 ships on httpx2, the client the service relays with; earlier on httpx.
    import httpx2 as httpx
except ImportError:  # pragma: no cover
    import httpx  # type: ignore[no-redef]

settings = settings_from_env(tempfile.gettempdir())
UPSTREAM = f"{settings['OPENAI_BASE_URL'] or 'https://api.openai.com/v1'}/chat/completions"
HEADERS = {"Authorization": f"Bearer {settings['OPENAI_API_KEY'] or 'not-needed'}"}
STREAM_HEADERS = [("Cache-Control", "no-cache"), ("X-Accel-Buffering", "no")]
_client: httpx.Client | None = None

StartResponse = Callable[..., Any]


def client() -> httpx.Client:
    """One pooled client per worker, made after the fork (and gevent's patching)."""
    global _client
    if _client is None:
        connections = settings["OPENAI_MAX_CONNECTIONS"]
        _client = httpx.Client(
            timeout=httpx.Timeout(
                settings["OPENAI_READ_TIMEOUT"], connect=settings["OPENAI_CONNECT_TIMEOUT"]
            ),
            limits=httpx.Limits(
                max_connections=connections, max_keepalive_connections=min(100, connections)
            ),
        )
    return _client


def chat_body(prompt: str) -> bytes:
    return json.dumps(
        {
            "model": "bench",
            "stream": True,
            "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": prompt}],
        }
    ).encode()


def deltas(body: bytes) -> Iterator[str]:
    """The answer's pieces of text, from the upstream's events."""
    with client().stream("POST", UPSTREAM, content=body, headers=HEADERS) as response:
        response.raise_for_status()  # after the head: the client sees a broken stream
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            choices = json.loads(line[6:]).get("choices")
            if choices and (text := choices[0].get("delta", {}).get("content")):
                yield text


def raw(body: bytes) -> Iterator[bytes]:
    """The upstream's body as it comes."""
    with client().stream("POST", UPSTREAM, content=body, headers=HEADERS) as response:
        response.raise_for_status()
        yield from response.iter_raw()


def text(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    prompt = parse_qs(environ.get("QUERY_STRING", "")).get("prompt", [""])[0]
    start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8"), *STREAM_HEADERS])
    return (piece.encode() for piece in deltas(chat_body(prompt)))


def sse(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    prompt = json.loads(read_body(environ))["prompt"]
    start_response("200 OK", [("Content-Type", "text/event-stream"), *STREAM_HEADERS])

    def events() -> Iterator[bytes]:
        for piece in deltas(chat_body(prompt)):
            yield f"event: delta\ndata: {json.dumps({'text': piece})}\n\n".encode()
        yield b"event: done\ndata: {}\n\n"

    return events()


def chat_completions(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    body = read_body(environ)
    start_response("200 OK", [("Content-Type", "text/event-stream"), *STREAM_HEADERS])
    return raw(body)


def responses(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    prompt = json.loads(read_body(environ))["input"]
    start_response("200 OK", [("Content-Type", "text/event-stream"), *STREAM_HEADERS])
    sequence = itertools.count()

    def event(kind: str, **fields: Any) -> bytes:
        data = json.dumps({"type": kind, "sequence_number": next(sequence), **fields})
        return f"event: {kind}\ndata: {data}\n\n".encode()

    def events() -> Iterator[bytes]:
        yield event("response.created", response={"id": "resp_0", "status": "in_progress"})
        text = []
        for piece in deltas(chat_body(prompt)):
            text.append(piece)
            yield event("response.output_text.delta", item_id="msg_0", delta=piece)
        output = [{"type": "message", "content": [{"type": "output_text", "text": "".join(text)}]}]
        yield event("response.completed", response={"id": "resp_0", "output": output})

    return events()


def read_body(environ: dict[str, Any]) -> bytes:
    return environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))


# (method, path) -> handler; a path ending in /messages matches any conversation.
ROUTES: dict[tuple[str, str], Callable[..., Iterable[bytes]]] = {
    ("GET", "/text/generate/stream"): text,
    ("POST", "/messages"): sse,
    ("POST", "/v1/chat/completions"): chat_completions,
    ("POST", "/v1/responses"): responses,
}


def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
    if path == "/readyz":
        start_response("200 OK", [("Content-Type", "application/json")])
        return [b'{"status": "ok"}']
    if path.startswith("/conversations/") and path.endswith("/messages"):
        path = "/messages"
    handler = ROUTES.get((method, path))
    if handler is None:
        start_response("404 Not Found", [("Content-Type", "application/json")])
        return [b'{"message": "not found"}']
    return handler(environ, start_response)
