"""A real, steerable OpenAI-compatible HTTP server for tests and benchmarks.

Hand-written HTTP/1.1 on asyncio streams (stdlib only) so that the real ``openai``
client talks to it over real sockets, and so one thread can hold thousands of
concurrent streaming connections.  Start it in-process::

    with FakeLLMServer() as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="test")

or as a CLI for benchmarks: ``python -m tests.fake_llm --port 8001 --tokens 50 --delay 0.01``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import http
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# (type, code) pairs mimicking what OpenAI returns for each status.
_ERROR_KINDS = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    404: ("invalid_request_error", None),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", None),
    503: ("server_error", "overloaded"),
}
_POLL = 0.02  # how often long sleeps check whether the client went away
_MAX_BODY = 16 * 1024 * 1024


@dataclass
class Behavior:
    """How the server answers chat completions; each field's comment says what it does."""

    tokens: list[str] | None = None  # None -> "tok0 ", "tok1 ", ... (n_tokens of them)
    n_tokens: int = 5
    delay: float = 0.0  # seconds between chunks
    first_token_delay: float = 0.0  # after headers, before the first chunk
    headers_delay: float = 0.0  # before the status line
    error_status: int | None = None  # answer with this status + OpenAI error JSON
    retry_after: float | None = None  # Retry-After header sent with the error
    break_after: int | None = None  # close TCP after this many token chunks
    hang_after_headers: bool = False  # send 200 headers, then nothing
    send_usage: bool = True  # False: never send usage, even if asked
    reject_stream_options: bool = False  # 400 if the request has stream_options
    finish_reason: str = "stop"
    split_utf8: bool = False  # split each event mid-UTF-8 char across two TCP writes
    usage: dict[str, int] | None = None  # None -> computed from request/tokens
    # Added to the usage as sent: {"prompt_tokens_details": {"cached_tokens": n}, ...}.
    usage_details: dict[str, dict[str, int]] | None = None
    # Streamed as delta.refusal after the reasoning, before the tokens (give tokens=[] for
    # a refusal alone, as OpenAI's); a non-stream answer's message.refusal, joined.
    refusal: list[str] | None = None
    reasoning: list[str] | None = None  # streamed as delta.reasoning_content before tokens
    filler: int = 0  # chunks with an empty delta (no text at all) before the reasoning
    raw_events: list[str] | None = None  # data payloads sent verbatim before everything else
    break_after_done: bool = False  # after [DONE], cut the body instead of ending it
    # Tool calls ({id, name, arguments}) after the tokens: streamed as OpenAI does (by index:
    # id, type and name first, then the arguments in pieces), or whole in a non-stream answer.
    tool_calls: list[dict[str, str]] | None = None
    # With tool_calls, one tool round trip as a model makes it: a request whose last message
    # is a tool result gets the tokens alone; any other the tool calls alone (no text,
    # finish_reason "tool_calls").
    tool_loop: bool = False

    def token_list(self) -> list[str]:
        """The tokens this behaviour streams."""
        return (
            list(self.tokens)
            if self.tokens is not None
            else [f"tok{i} " for i in range(self.n_tokens)]
        )


@dataclass
class RequestRecord:
    """One request as received (``body`` is parsed JSON, or None)."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    received_at: float = field(default_factory=time.monotonic)


class _ClientGone(Exception):
    """The peer closed or reset the connection while we were responding."""


class FakeLLMServer:
    """OpenAI-compatible server running its own asyncio loop in a daemon thread."""

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, behavior: Behavior | None = None
    ) -> None:
        self.host, self.port = host, port
        self.behavior: Behavior = behavior or Behavior()
        self._overrides: dict[str, Behavior] = {}
        self._lock = threading.Lock()
        self._requests: list[RequestRecord] = []
        self._completed = self._disconnects = self._active = self._connections = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None
        self._conn_tasks: set[asyncio.Task[None]] = set()

    # ----------------------------------------------------------------- control
    @property
    def base_url(self) -> str:
        """``http://host:port/v1`` -- pass as ``base_url`` to ``openai.OpenAI``."""
        return f"http://{self.host}:{self.port}/v1"

    def set_behavior(self, behavior: Behavior, model: str | None = None) -> None:
        """Set the default behaviour, or an override for requests naming ``model``."""
        if model is None:
            self.behavior = behavior
        else:
            self._overrides[model] = behavior

    def behavior_for(self, model: str | None) -> Behavior:
        """The behaviour that applies to a request for ``model``."""
        return self._overrides.get(model or "", self.behavior)

    def reset(self) -> None:
        """Restore default behaviour and clear records (``active_streams`` is live state)."""
        self.behavior, self._overrides = Behavior(), {}
        with self._lock:
            self._requests.clear()
            self._completed = self._disconnects = self._connections = 0

    @property
    def requests(self) -> list[RequestRecord]:
        """Snapshot of received requests, in arrival order."""
        with self._lock:
            return list(self._requests)

    @property
    def completed(self) -> int:
        """Streams that sent ``data: [DONE]``."""
        return self._completed

    @property
    def client_disconnects(self) -> int:
        """Streaming responses the client abandoned before the server finished."""
        return self._disconnects

    @property
    def active_streams(self) -> int:
        """Streaming responses currently in progress."""
        return self._active

    @property
    def connections(self) -> int:
        """TCP connections accepted so far (lets tests check keep-alive reuse)."""
        return self._connections

    def wait_for(
        self,
        predicate: Callable[[FakeLLMServer], bool],
        timeout: float = 5.0,
        interval: float = 0.01,
    ) -> bool:
        """Poll ``predicate(self)`` until true; return False on timeout."""
        deadline = time.monotonic() + timeout
        while not predicate(self):
            if time.monotonic() >= deadline:
                return False
            time.sleep(interval)
        return True

    def _count(self, name: str, delta: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + delta)

    # --------------------------------------------------------------- lifecycle
    async def _listen(self) -> None:
        # Big backlog: benchmarks open 1000+ connections at once.
        self._server = await asyncio.start_server(
            self._on_connection, self.host, self.port, backlog=4096
        )
        self.port = self._server.sockets[0].getsockname()[1]

    def start(self) -> FakeLLMServer:
        """Start serving in a daemon thread; returns once the socket is listening."""
        ready = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            loop = self._loop = asyncio.new_event_loop()
            try:
                loop.run_until_complete(self._listen())
            except BaseException as exc:  # surface bind errors in start()
                errors.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._thread = threading.Thread(target=run, name="fake-llm", daemon=True)
        self._thread.start()
        ready.wait(10)
        if errors:
            raise errors[0]
        return self

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._conn_tasks):  # server.close() leaves open connections alone
            task.cancel()
        await asyncio.gather(*self._conn_tasks, return_exceptions=True)

    def stop(self) -> None:
        """Close the listener and all connections, and stop the loop thread."""
        loop, self._loop = self._loop, None
        if loop is None:
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> FakeLLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def serve_forever(self, announce: bool = False) -> None:
        """Serve on the current loop until cancelled (used by the CLI)."""
        await self._listen()
        assert self._server is not None
        if announce:
            print(f"fake LLM listening on {self.base_url}", flush=True)
        async with self._server:
            await self._server.serve_forever()

    # -------------------------------------------------------------------- HTTP
    async def _on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conn_tasks.add(task)
        self._count("_connections")
        try:
            # HTTP/1.1 keep-alive: serve requests until the client closes or we must.
            while await self._handle_one(reader, writer):
                pass
        except (
            _ClientGone,
            ConnectionError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            ValueError,
        ):
            pass
        except asyncio.CancelledError:
            pass  # stop(): py3.11 streams would log a cancelled handler as an error
        finally:
            self._conn_tasks.discard(task)
            writer.transport.abort()

    async def _handle_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Read and answer one request; return whether the connection stays open."""
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, path, _version = lines[0].split(" ", 2)
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        raw = await self._read_body(reader, headers)
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        with self._lock:
            self._requests.append(RequestRecord(method, path.split("?")[0], headers, body))
        keep = headers.get("connection", "").lower() != "close"
        path = path.split("?")[0].rstrip("/")
        if path == "/v1/chat/completions" and method == "POST":
            if not isinstance(body, dict):
                return await self._error(writer, 400, "Body must be a JSON object.") and keep
            return await self._chat(reader, writer, body) and keep
        if path == "/v1/models" and method == "GET":
            names = ["fake-model", *self._overrides]
            data = [{"id": n, "object": "model", "created": 0, "owned_by": "fake"} for n in names]
            return await self._json(writer, 200, {"object": "list", "data": data}) and keep
        return await self._error(writer, 404, f"Invalid URL ({method} {path})") and keep

    @staticmethod
    async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
        if "chunked" in headers.get("transfer-encoding", "").lower():
            parts = []
            while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
                parts.append(await reader.readexactly(size + 2))
            await reader.readuntil(b"\r\n")  # trailer terminator (we ignore trailers)
            return b"".join(p[:-2] for p in parts)
        length = int(headers.get("content-length", "0"))
        if length > _MAX_BODY:
            raise ValueError("body too large")
        return await reader.readexactly(length)

    async def _json(
        self,
        writer: asyncio.StreamWriter,
        status: int,
        payload: Any,
        extra: dict[str, str] | None = None,
    ) -> bool:
        data = json.dumps(payload, ensure_ascii=False).encode()
        hdrs = {
            "content-type": "application/json",
            "content-length": str(len(data)),
            "x-request-id": f"req_{uuid.uuid4().hex[:16]}",
            **(extra or {}),
        }
        writer.write(self._status(status, hdrs) + data)
        await writer.drain()
        return True

    async def _error(
        self,
        writer: asyncio.StreamWriter,
        status: int,
        message: str,
        extra: dict[str, str] | None = None,
    ) -> bool:
        etype, code = _ERROR_KINDS.get(
            status, ("server_error" if status >= 500 else "invalid_request_error", None)
        )
        err = {"message": message, "type": etype, "param": None, "code": code}
        return await self._json(writer, status, {"error": err}, extra)

    @staticmethod
    def _status(status: int, headers: dict[str, str]) -> bytes:
        try:
            reason = http.HTTPStatus(status).phrase
        except ValueError:
            reason = "Unknown"
        lines = [f"HTTP/1.1 {status} {reason}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    @staticmethod
    def _gone(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        # No pipelining from HTTP clients, so EOF while we respond means "client left";
        # a reset shows up as a closing transport or a reader exception.
        return reader.at_eof() or writer.transport.is_closing() or reader.exception() is not None

    async def _pause(
        self, seconds: float, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Sleep, but raise _ClientGone promptly (within _POLL) if the client leaves."""
        if seconds <= 0:
            await asyncio.sleep(0)  # still yield, so delay=0 streams can't starve the others
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            await asyncio.sleep(min(left, _POLL))
            if self._gone(reader, writer):
                raise _ClientGone
        if self._gone(reader, writer):
            raise _ClientGone

    async def _send(self, writer: asyncio.StreamWriter, data: bytes, split_utf8: bool) -> None:
        """Write one HTTP chunk, optionally as two TCP writes split inside a UTF-8 char."""
        frame = b"%x\r\n%s\r\n" % (len(data), data)
        cut = next((i for i, b in enumerate(frame) if b >= 0xC0), -1) if split_utf8 else -1
        if cut >= 0:
            writer.write(frame[: cut + 1])  # lead byte only: the char is cut in half
            await writer.drain()
            await asyncio.sleep(0.005)  # let the first segment reach the client alone
            frame = frame[cut + 1 :]
        writer.write(frame)
        await writer.drain()

    async def _chat(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, body: dict[str, Any]
    ) -> bool:
        model = str(body.get("model") or "fake-model")
        b = self.behavior_for(model)
        if b.tool_loop and b.tool_calls:
            messages = body.get("messages")
            last = messages[-1] if isinstance(messages, list) and messages else None
            if isinstance(last, dict) and last.get("role") == "tool":
                b = dataclasses.replace(b, tool_calls=None)
            else:
                b = dataclasses.replace(b, tokens=[], finish_reason="tool_calls")
        stream = bool(body.get("stream"))
        if b.error_status is not None:
            extra = {"retry-after": f"{b.retry_after:g}"} if b.retry_after is not None else None
            return await self._error(
                writer, b.error_status, f"Fake error {b.error_status} for model {model}.", extra
            )
        if b.reject_stream_options and "stream_options" in body:
            return await self._error(
                writer, 400, "Unrecognized request argument supplied: stream_options"
            )
        tokens = b.token_list()
        words = sum(
            len(_text(m.get("content")).split())
            for m in body.get("messages") or []
            if isinstance(m, dict)
        )
        cid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        hdr = {"x-request-id": f"req_{uuid.uuid4().hex[:16]}", "openai-model": model}
        if not stream:
            return await self._complete(reader, writer, b, model, tokens, words, cid, created, hdr)

        opts = body.get("stream_options")
        want_usage = b.send_usage and isinstance(opts, dict) and bool(opts.get("include_usage"))
        self._count("_active")
        sent, done = 0, False
        try:
            await self._pause(b.headers_delay, reader, writer)
            writer.write(
                self._status(
                    200,
                    {
                        "content-type": "text/event-stream; charset=utf-8",
                        "transfer-encoding": "chunked",
                        "cache-control": "no-cache",
                        **hdr,
                    },
                )
            )
            await writer.drain()
            if b.hang_after_headers:
                await self._pause(float("inf"), reader, writer)
            await self._pause(b.first_token_delay, reader, writer)

            def event(choices: list[dict[str, Any]], **extra: Any) -> bytes:
                chunk = {
                    "id": cid,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "system_fingerprint": None,
                    "choices": choices,
                    **({"usage": None} if want_usage else {}),
                    **extra,
                }
                return b"data: " + json.dumps(chunk, ensure_ascii=False).encode() + b"\n\n"

            for raw in b.raw_events or ():
                await self._send(writer, b"data: " + raw.encode() + b"\n\n", False)
            quiet = [{}] * b.filler + [{"reasoning_content": r} for r in b.reasoning or ()]
            quiet += [{"refusal": r} for r in b.refusal or ()]
            for delta in quiet:
                await self._send(
                    writer,
                    event([{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}]),
                    False,
                )
                await self._pause(b.delay, reader, writer)
            for i, tok in enumerate(tokens):
                if b.break_after is not None and sent >= b.break_after:
                    break
                if i:
                    await self._pause(b.delay, reader, writer)
                delta = {"role": "assistant", "content": tok} if i == 0 else {"content": tok}
                await self._send(
                    writer,
                    event([{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}]),
                    b.split_utf8,
                )
                sent += 1
            if b.break_after is not None:
                return False  # abrupt close: no finish chunk, no terminating 0-chunk
            for delta in _tool_call_deltas(b.tool_calls or (), opens=not sent):
                await self._pause(b.delay, reader, writer)
                await self._send(
                    writer,
                    event([{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}]),
                    False,
                )
            await self._pause(b.delay if tokens else 0.0, reader, writer)
            await self._send(
                writer,
                event(
                    [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": b.finish_reason}]
                ),
                b.split_utf8,
            )
            if want_usage:
                await self._send(writer, event([], usage=self._usage(b, words, sent)), False)
            # Count first: the client must never observe [DONE] before `completed` moves.
            self._count("_completed")
            done = True
            await self._send(writer, b"data: [DONE]\n\n", False)
            if b.break_after_done:
                writer.write(b"5\r\nda")  # a chunk promised and never finished
                await writer.drain()
                return False
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            return True
        except (_ClientGone, ConnectionError):
            if done:  # the [DONE] write failed after all
                self._count("_completed", -1)
            self._count("_disconnects")
            return False
        finally:
            self._count("_active", -1)

    async def _complete(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        b: Behavior,
        model: str,
        tokens: list[str],
        words: int,
        cid: str,
        created: int,
        hdr: dict[str, str],
    ) -> bool:
        """Non-streaming answer; delays add up as if the whole generation ran first."""
        if b.break_after is not None:
            tokens = tokens[: b.break_after]
        await self._pause(
            b.headers_delay + b.first_token_delay + b.delay * max(len(tokens) - 1, 0),
            reader,
            writer,
        )
        message: dict[str, Any] = {
            "role": "assistant",
            "content": "".join(tokens) if tokens or not (b.tool_calls or b.refusal) else None,
            "refusal": "".join(b.refusal) if b.refusal else None,
        }
        if b.reasoning:
            message["reasoning_content"] = "".join(b.reasoning)
        if b.tool_calls:
            message["tool_calls"] = [
                {
                    "id": call["id"],
                    "type": "function",
                    "function": {"name": call["name"], "arguments": call["arguments"]},
                }
                for call in b.tool_calls
            ]
        payload: dict[str, Any] = {
            "id": cid,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "system_fingerprint": None,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": b.finish_reason,
                }
            ],
        }
        if b.send_usage:
            payload["usage"] = self._usage(b, words, len(tokens))
        data = json.dumps(payload, ensure_ascii=False).encode()
        writer.write(
            self._status(
                200, {"content-type": "application/json", "content-length": str(len(data)), **hdr}
            )
        )
        if b.hang_after_headers:
            await writer.drain()
            await self._pause(float("inf"), reader, writer)
        if b.break_after is not None:  # promise the full body, deliver half, then hang up
            writer.write(data[: len(data) // 2])
            await writer.drain()
            return False
        writer.write(data)
        await writer.drain()
        return True

    @staticmethod
    def _usage(b: Behavior, prompt: int, completion: int) -> dict[str, Any]:
        usage: dict[str, Any] = (
            dict(b.usage)
            if b.usage is not None
            else {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            }
        )
        return {**usage, **(b.usage_details or {})}


def _tool_call_deltas(calls: Any, opens: bool = False) -> list[dict[str, Any]]:
    """The deltas OpenAI streams tool calls in: per call, its id, type and name with empty
    arguments, then the arguments in three pieces. ``opens``: no text came before, so the
    first delta carries the role (and null content), as OpenAI's does."""
    deltas: list[dict[str, Any]] = []
    for index, call in enumerate(calls):
        head = {"name": call["name"], "arguments": ""}
        deltas.append(
            {
                "tool_calls": [
                    {"index": index, "id": call["id"], "type": "function", "function": head}
                ]
            }
        )
        if opens and index == 0:
            deltas[0] = {"role": "assistant", "content": None, **deltas[0]}
        arguments = call["arguments"]
        step = max(1, -(-len(arguments) // 3))
        for start in range(0, len(arguments), step):
            piece = {"arguments": arguments[start : start + step]}
            deltas.append({"tool_calls": [{"index": index, "function": piece}]})
    return deltas


def _text(content: Any) -> str:
    """Flatten message content (a string or a list of content parts) to text."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def main(argv: list[str] | None = None) -> None:
    """CLI entry point: serve forever with a fixed behaviour."""
    p = argparse.ArgumentParser(description="Fake OpenAI-compatible streaming server.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8001)
    p.add_argument("--tokens", type=int, default=50, help="tokens per completion")
    p.add_argument("--delay", type=float, default=0.01, help="seconds between chunks")
    p.add_argument("--first-token-delay", type=float, default=0.0)
    p.add_argument("--headers-delay", type=float, default=0.0)
    args = p.parse_args(argv)
    with contextlib.suppress(ImportError, ValueError, OSError):
        import resource  # 1000+ sockets need more than the usual 1024 fds

        _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    server = FakeLLMServer(
        args.host,
        args.port,
        Behavior(
            n_tokens=args.tokens,
            delay=args.delay,
            first_token_delay=args.first_token_delay,
            headers_delay=args.headers_delay,
        ),
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(server.serve_forever(announce=True))


__all__ = ["Behavior", "FakeLLMServer", "RequestRecord", "main"]

if __name__ == "__main__":
    main()
