"""The OpenAI-compatible client, configured once per app, and provider errors mapped to ours."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import openai
from flask import Flask, current_app
from openai.types.chat import ChatCompletion

from app import metrics
from app.errors import DomainError
from app.sockets import probe_idle_http_connections_directly
from app.text import storable

try:  # openai >= 3 ships on httpx2; earlier releases on httpx.
    from httpx2 import HTTPError as TransportError
    from httpx2 import Limits, TimeoutException
except ImportError:  # pragma: no cover
    from httpx import HTTPError as TransportError  # type: ignore[assignment,no-redef]
    from httpx import Limits, TimeoutException  # type: ignore[assignment,no-redef]


class BadUpstreamEvent(Exception):
    """The upstream sent a stream event that is not a JSON object."""


# What a broken upstream stream raises while being read: openai wraps transport failures in
# APIConnectionError today, but raw transport errors have escaped in other versions.
STREAM_ERRORS: tuple[type[Exception], ...] = (openai.APIError, TransportError, BadUpstreamEvent)

log = logging.getLogger(__name__)

ChatMessage = Mapping[str, str]


class UpstreamError(DomainError):
    """The LLM provider failed or could not be reached (502)."""

    status_code = 502


class UpstreamRateLimited(UpstreamError):
    status_code = 429


class UpstreamTimeout(UpstreamError):
    status_code = 504


class UnknownModel(UpstreamError):
    """The provider serves no model by the conversation's model_type: the client's to fix."""

    status_code = 422


class LLMNotConfigured(DomainError):
    status_code = 503


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class Chunk:
    """One upstream event, made storable: answer text, reasoning, usage, finish reason."""

    text: str = ""
    reasoning: str = ""
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


def _error_kind(error: Exception) -> str:
    """The ``kind`` label an upstream failure is counted under."""
    for kind, types in (
        ("rate_limited", openai.RateLimitError),
        ("bad_event", BadUpstreamEvent),
        ("timeout", openai.APITimeoutError | TimeoutException),
        ("connection", openai.APIConnectionError | TransportError),
        ("auth", openai.AuthenticationError | openai.PermissionDeniedError),
        ("unknown_model", openai.NotFoundError),
    ):
        if isinstance(error, types):
            return kind
    if isinstance(error, openai.APIStatusError):
        return f"status_{error.status_code}"
    return "other"


def map_error(error: Exception) -> UpstreamError:
    """Turn an openai/transport exception into the error our clients see (and count it)."""
    metrics.upstream_error(_error_kind(error))
    if isinstance(error, openai.RateLimitError):
        retry_after = error.response.headers.get("retry-after")
        headers = {"Retry-After": retry_after} if retry_after else {}
        return UpstreamRateLimited(
            "The LLM provider is rate limiting; retry later.", headers=headers
        )
    if isinstance(error, BadUpstreamEvent):
        return UpstreamError(f"The LLM provider sent a malformed stream event: {error}")
    if isinstance(error, openai.APITimeoutError | TimeoutException):
        return UpstreamTimeout("The LLM provider did not answer in time.")
    if isinstance(error, openai.APIConnectionError | TransportError):
        return UpstreamError("The LLM provider could not be reached or broke off.")
    if isinstance(error, openai.AuthenticationError | openai.PermissionDeniedError):
        return UpstreamError("The LLM provider rejected this service's credentials.")
    if isinstance(error, openai.NotFoundError):
        return UnknownModel(
            "The LLM provider does not serve this conversation's model_type "
            f"(change it with PUT): {error.message}"
        )
    if isinstance(error, openai.APIStatusError):
        return UpstreamError(f"The LLM provider answered {error.status_code}: {error.message}")
    return UpstreamError("The LLM provider failed.")


class UpstreamStatus(UpstreamError):
    """An error status from the upstream, passed on as it is (the /v1 gateway)."""

    def __init__(self, message: str, status: int, headers: dict[str, str] | None = None) -> None:
        super().__init__(message, headers=headers)
        self.status_code = status


def pass_through_error(error: Exception) -> UpstreamError:
    """Like ``map_error``, but the upstream's own status and message reach the client: the
    /v1 gateway answers as the upstream would. Its refusal of *our* credentials is a 502."""
    if isinstance(error, openai.APIStatusError) and not isinstance(
        error, openai.AuthenticationError | openai.PermissionDeniedError
    ):
        retry_after = error.response.headers.get("retry-after")
        body = error.body
        if isinstance(body, Mapping) and isinstance(body.get("error"), Mapping):
            body = body["error"]
        message = body.get("message") if isinstance(body, Mapping) else None
        return UpstreamStatus(
            message if isinstance(message, str) and message else error.message,
            error.status_code,
            {"Retry-After": retry_after} if retry_after else None,
        )
    return map_error(error)


def upstream_status(error: DomainError, cause: BaseException | None) -> int:
    """The status code to record for a failed exchange: the upstream's own when it gave one."""
    if isinstance(cause, openai.APIStatusError):
        return cause.status_code
    return error.status_code


def _chunk_of(event: object, raw: str | None = None) -> Chunk:
    """One chunk event as a ``Chunk`` of choice 0, its text made storable."""
    if not isinstance(event, Mapping):
        raise BadUpstreamEvent(f"expected a JSON object, got {type(event).__name__}")
    text = reasoning = ""
    finish_reason = None
    tool_calls: tuple[Any, ...] = ()
    choices = event.get("choices") or ()
    for choice in choices if isinstance(choices, list) else ():
        if not isinstance(choice, Mapping) or choice.get("index", 0) != 0:
            continue
        delta = choice.get("delta")
        if isinstance(delta, Mapping):
            text = _str(delta.get("content"))
            # vLLM and DeepSeek say reasoning_content; Ollama and newer vLLM say reasoning.
            reasoning = _str(delta.get("reasoning_content") or delta.get("reasoning"))
            calls = delta.get("tool_calls")
            if calls and isinstance(calls, list):
                tool_calls = tuple(calls)
        finish_reason = _str(choice.get("finish_reason")) or None
    usage = event.get("usage")
    if isinstance(usage, Mapping):
        return Chunk(text, reasoning, _usage_of(usage), finish_reason, tool_calls, raw)
    return Chunk(text, reasoning, None, finish_reason, tool_calls, raw)


def _usage_of(usage: Mapping[str, Any]) -> Usage:
    return Usage(
        _int_or_none(usage.get("prompt_tokens")),
        _int_or_none(usage.get("completion_tokens")),
        _int_or_none(usage.get("total_tokens")),
    )


def _completion_chunk(raw: str) -> Chunk:
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
        _str(message.get("content")),
        _str(message.get("reasoning_content") or message.get("reasoning")),
        _usage_of(usage) if isinstance(usage, Mapping) else None,
        _str(choice.get("finish_reason")) or None,
        tool_calls,
        raw,
    )


def _str(value: object) -> str:
    return storable(value) if isinstance(value, str) and value else ""


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class _RawChunkStream(openai.Stream[object]):
    """openai's Stream, yielding chunks as plain dicts and draining the body after [DONE].

    ``object`` as the chunk type skips openai's per-chunk type construction (a third of the
    relay's CPU per token). And the sync Stream stops reading at ``[DONE]``, so closing it
    drops the HTTP connection with the chunked body's last bytes unread: every exchange then
    paid a new TCP (and TLS) handshake. openai's async Stream drains; this does the same.
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
                if isinstance(data, Mapping) and data.get("error"):
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
            yield _chunk_of(event)

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
                and isinstance(event, Mapping)
                and event.get("usage")
                and not event.get("choices")
            )
            yield _chunk_of(event, "" if withheld else raw)

    def close(self) -> None:
        self._stream.close()


class _CompletedChat:
    """A non-streamed completion as a ChatStream of one chunk (its body kept as ``raw``)."""

    def __init__(self, body: str) -> None:
        self._body = body

    def __iter__(self) -> Iterator[Chunk]:
        yield _completion_chunk(self._body)

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
        try:
            # client.post, not chat.completions.create: create() walks the whole message
            # list through openai's TypedDict transformer, ~0.1 ms per history message (2 ms
            # at 20), all before the first token. And chunks come as plain dicts: building a
            # pydantic ChatCompletionChunk per token doubled the relay's CPU per chunk.
            # Request, retries, time-outs, SSE decoding and error mapping are openai's own.
            stream = self._client.post(
                "/chat/completions",
                body=body,
                cast_to=ChatCompletion,
                options={"headers": {"X-Request-ID": request_id}} if request_id else {},
                stream=True,
                stream_cls=_RawChunkStream,
            )
        except STREAM_ERRORS as error:
            raise map_error(error) from error
        return _OpenAIChatStream(stream)

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
        try:
            stream = self._client.post(
                "/chat/completions",
                body=body,
                cast_to=ChatCompletion,
                options=_request_options(request_id),
                stream=True,
                stream_cls=_RawEventStream,
            )
        except STREAM_ERRORS as error:
            raise pass_through_error(error) from error
        return _RelayedChatStream(stream, relay_usage)

    def complete_chat(self, body: Mapping[str, Any], request_id: str | None) -> ChatStream:
        """A non-streamed chat completion for a client's own request ``body``: one chunk whose
        ``raw`` is the upstream's JSON as received. Raises UpstreamError as ``relay_chat``."""
        self._check_configured()
        try:
            raw = self._client.post(
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
            raw = self._client.get("/models", cast_to=str)
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
