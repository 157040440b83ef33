"""The OpenAI-compatible client, configured once per app, and the streams it opens."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import openai
from flask import Flask, current_app
from openai.types.chat import ChatCompletion

from app.llm.errors import (
    STREAM_ERRORS,
    BadUpstreamEvent,
    LLMNotConfigured,
    UpstreamError,
    map_error,
    pass_through_error,
)
from app.llm.events import (
    ChatMessage,
    ChatStream,
    Chunk,
    Completion,
    Usage,
    chunk_of,
    completion_chunk,
)
from app.text import storable
from app.web.sockets import probe_idle_http_connections_directly

try:  # openai >= 3 ships on httpx2; earlier releases on httpx.
    from httpx2 import Limits
except ImportError:  # pragma: no cover
    from httpx import Limits  # type: ignore[assignment,no-redef]


log = logging.getLogger(__name__)


class _RawChunkStream(openai.Stream[object]):
    """openai's Stream, yielding chunks as plain dicts and draining the body after [DONE].

    ``object`` as the chunk type skips openai's per-chunk type construction, the relay's
    largest cost per token. Draining after ``[DONE]`` (as openai's async Stream does, and
    its sync one does not) lets the HTTP connection go back to the pool instead of being
    dropped with the chunked body's last bytes unread.
    """

    # True: yield (the event's data as received, parsed) pairs, for relaying raw.
    with_raw = False

    def __stream__(self) -> Iterator[object]:
        response = self.response
        with_raw = self.with_raw
        events = self._iter_events()
        try:
            for sse in events:
                if sse.data.startswith("[DONE]"):
                    _drain(events)
                    break
                try:
                    data = sse.json()
                except ValueError as error:
                    raise BadUpstreamEvent("an event that is not JSON") from error
                if isinstance(data, dict) and data.get("error"):
                    error = data["error"]
                    message = error.get("message") if isinstance(error, Mapping) else None
                    raise openai.APIError(
                        message=message or "An error occurred during streaming",
                        request=response.request,
                        body=error,
                    )
                yield (sse.data, data) if with_raw else data
        finally:
            response.close()


def _drain(events: Iterator[object]) -> None:
    """Read the body's last bytes so the connection goes back to the pool; the answer is
    complete already, so a failure here only costs that connection."""
    try:
        for _ in events:
            pass
    except Exception as error:
        log.debug("draining the upstream body after [DONE] failed: %r", error)


class _OpenAIChatStream:
    """Adapts chunk events to ``Chunk``s; the usage chunk comes with an empty ``choices``."""

    def __init__(self, stream: _RawChunkStream) -> None:
        self._stream = stream

    def __iter__(self) -> Iterator[Chunk]:
        for event in self._stream:
            yield chunk_of(event)

    def close(self) -> None:
        # Leaving the loop alone would leak the pooled HTTP connection.
        self._stream.close()


class _RawEventStream(_RawChunkStream):
    with_raw = True


class _RelayedChatStream:
    """Chunks that carry their event's data as received; the usage-only event is withheld
    (``raw`` "") unless the client asked for usage itself."""

    def __init__(self, stream: _RawEventStream, relay_usage: bool) -> None:
        self._stream = stream
        self._relay_usage = relay_usage

    def __iter__(self) -> Iterator[Chunk]:
        relay_usage = self._relay_usage
        for raw, event in self._stream:  # type: ignore[misc]
            withheld = (
                not relay_usage
                and isinstance(event, dict)
                and event.get("usage")
                and not event.get("choices")
            )
            yield chunk_of(event, "" if withheld else raw)

    def close(self) -> None:
        self._stream.close()


class _CompletedChat:
    """A non-streamed completion as a ChatStream of one chunk (its body kept as ``raw``)."""

    def __init__(self, body: str) -> None:
        self._body = body

    def __iter__(self) -> Iterator[Chunk]:
        yield completion_chunk(self._body)

    def close(self) -> None:
        pass  # the body was read whole: the connection is back in the pool already


class LLMClient:
    """Chat completions against the configured OpenAI-compatible server."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        key, base_url = config["OPENAI_API_KEY"], config["OPENAI_BASE_URL"]
        self.configured = bool(key or base_url)
        self.stream_usage = config["OPENAI_STREAM_USAGE"]
        # The cap on every answer's length, in the parameter the server understands.
        self.max_output = (
            {config["MAX_OUTPUT_TOKENS_PARAM"]: config["MAX_OUTPUT_TOKENS"]}
            if config["MAX_OUTPUT_TOKENS"]
            else {}
        )
        self.title_timeout = config["TITLE_TIMEOUT"]
        self._models: tuple[float, str] | None = None  # (expires, the upstream's list)
        # Local servers (Ollama, vLLM, llama.cpp) take any key; the client insists on one.
        self._client = openai.OpenAI(
            api_key=key or "not-needed",
            base_url=base_url,
            max_retries=config["OPENAI_MAX_RETRIES"],
            timeout=openai.Timeout(
                config["OPENAI_READ_TIMEOUT"], connect=config["OPENAI_CONNECT_TIMEOUT"]
            ),
            http_client=openai.DefaultHttpxClient(
                limits=Limits(
                    max_connections=config["OPENAI_MAX_CONNECTIONS"],
                    max_keepalive_connections=min(100, config["OPENAI_MAX_CONNECTIONS"]),
                )
            ),
        )
        # The /v1 gateway's calls: the same pool, their own retries.
        self._gateway = self._client.with_options(max_retries=config["GATEWAY_MAX_RETRIES"])

    def _check_configured(self) -> None:
        if not self.configured:
            raise LLMNotConfigured(
                "No LLM is configured: set OPENAI_API_KEY, or OPENAI_BASE_URL for a local server."
            )

    def stream_chat(
        self, model: str, messages: Iterable[ChatMessage], request_id: str | None = None
    ) -> ChatStream:
        """Open a streamed chat completion; raises UpstreamError if it cannot start."""
        self._check_configured()
        body: dict[str, Any] = {
            "model": model,
            "messages": list(messages),
            "stream": True,
            **self.max_output,
        }
        if self.stream_usage:
            body["stream_options"] = {"include_usage": True}
        stream = self._open(self._client, body, request_id, _RawChunkStream, map_error)
        return _OpenAIChatStream(stream)

    def _open(
        self,
        client: openai.OpenAI,
        body: Mapping[str, Any],
        request_id: str | None,
        stream_cls: type[_RawChunkStream],
        mapped: Callable[[Exception], UpstreamError],
    ) -> Any:
        """POST a streamed chat completion; a failure to start is raised as ``mapped``'s."""
        try:
            # client.post, not chat.completions.create: create() walks the whole message
            # list through openai's TypedDict transformer before the first token, and would
            # build a pydantic ChatCompletionChunk per token where plain dicts do. Request,
            # retries, time-outs, SSE decoding and error mapping are openai's own.
            return client.post(
                "/chat/completions",
                body=body,
                cast_to=ChatCompletion,
                options=_request_options(request_id),
                stream=True,
                stream_cls=stream_cls,
            )
        except STREAM_ERRORS as error:
            raise mapped(error) from error

    def relay_chat(
        self, body: Mapping[str, Any], request_id: str | None, relay_usage: bool
    ) -> ChatStream:
        """Open a streamed chat completion for a client's own request ``body`` (forwarded as
        it is, usage requested); chunks carry their raw event. Raises UpstreamError
        (``pass_through_error``) if it cannot start."""
        self._check_configured()
        body = {**body, "stream": True}
        if self.stream_usage:
            body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
        stream = self._open(self._gateway, body, request_id, _RawEventStream, pass_through_error)
        return _RelayedChatStream(stream, relay_usage)

    def stream_request(self, body: Mapping[str, Any], request_id: str | None) -> ChatStream:
        """Open a streamed chat completion for a request this service built (the Responses
        API's translation), usage requested; errors and retries as ``relay_chat``'s (/v1:
        the client's SDK retries, GATEWAY_MAX_RETRIES)."""
        self._check_configured()
        body = {**body, "stream": True}
        if self.stream_usage:
            body["stream_options"] = {"include_usage": True}
        stream = self._open(self._gateway, body, request_id, _RawChunkStream, pass_through_error)
        return _OpenAIChatStream(stream)

    def complete_chat(self, body: Mapping[str, Any], request_id: str | None) -> ChatStream:
        """A non-streamed chat completion for a client's own request ``body``: one chunk whose
        ``raw`` is the upstream's JSON as received. Raises UpstreamError as ``relay_chat``."""
        self._check_configured()
        try:
            raw = self._gateway.post(
                "/chat/completions",
                body={**body, "stream": False},
                cast_to=str,
                options=_request_options(request_id),
            )
        except STREAM_ERRORS as error:
            raise pass_through_error(error) from error
        return _CompletedChat(raw)

    def list_models(self, max_age: float) -> str:
        """The upstream's model list as received (JSON), cached per process for ``max_age``
        seconds. Raises UpstreamError as ``relay_chat``."""
        self._check_configured()
        cached = self._models
        if cached is not None and time.monotonic() < cached[0]:
            return cached[1]
        try:
            raw = self._gateway.get("/models", cast_to=str)
        except STREAM_ERRORS as error:
            raise pass_through_error(error) from error
        self._models = (time.monotonic() + max_age, raw)
        return raw

    def complete(self, model: str, messages: Iterable[ChatMessage], max_tokens: int) -> str:
        """A short non-streamed completion's text; raises UpstreamError on failure."""
        return self.complete_with_usage(model, messages, max_tokens).text

    def complete_with_usage(
        self, model: str, messages: Iterable[ChatMessage], max_tokens: int
    ) -> Completion:
        """A short non-streamed completion (titles) and the usage reported with it; raises
        UpstreamError on failure."""
        self._check_configured()
        try:
            completion = self._client.with_options(
                timeout=self.title_timeout, max_retries=0
            ).chat.completions.create(model=model, messages=list(messages), max_tokens=max_tokens)
        except STREAM_ERRORS as error:
            raise map_error(error) from error
        reported = completion.usage
        usage = (
            Usage(reported.prompt_tokens, reported.completion_tokens, reported.total_tokens)
            if reported is not None
            else None
        )
        text = (completion.choices[0].message.content or "") if completion.choices else ""
        return Completion(storable(text), usage)


def _request_options(request_id: str | None) -> Any:
    return {"headers": {"X-Request-ID": request_id}} if request_id else {}


def init_llm(app: Flask) -> None:
    """Create the app's LLM client (one per process: it holds the HTTP connection pool)."""
    probe_idle_http_connections_directly()
    app.extensions["llm"] = LLMClient(app.config)


def get_llm() -> LLMClient:
    """The current app's LLM client."""
    return current_app.extensions["llm"]
