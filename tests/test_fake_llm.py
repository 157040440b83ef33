"""Prove tests/fake_llm.py speaks real OpenAI over real sockets, using the real client."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx2
import openai
import pytest

from tests.fake_llm import Behavior, FakeLLMServer

MESSAGES = [{"role": "user", "content": "say hello to me"}]  # 4 words -> prompt_tokens


@pytest.fixture(scope="module")
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as srv:
        yield srv


@pytest.fixture(autouse=True)
def _fresh(server: FakeLLMServer) -> None:
    server.reset()


@pytest.fixture
def llm(server: FakeLLMServer) -> Iterator[openai.OpenAI]:
    cli = openai.OpenAI(base_url=server.base_url, api_key="test", max_retries=0, timeout=10)
    yield cli
    cli.close()


def _stream(llm: openai.OpenAI, model: str = "fake-model", **kw: object) -> openai.Stream:
    return llm.chat.completions.create(model=model, messages=MESSAGES, stream=True, **kw)


def test_stream_text_equals_tokens(server: FakeLLMServer, llm: openai.OpenAI) -> None:
    server.behavior = Behavior(tokens=["Hello", ", ", "world", "!"])
    chunks = list(_stream(llm))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Hello, world!"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.choices and c.usage is None for c in chunks)  # no usage unless asked
    assert server.completed == 1
    rec = server.requests[0]
    assert (rec.method, rec.path, rec.body["stream"]) == ("POST", "/v1/chat/completions", True)
    assert rec.headers["authorization"] == "Bearer test"


def test_default_tokens_and_usage_chunk(server: FakeLLMServer, llm: openai.OpenAI) -> None:
    server.behavior = Behavior(n_tokens=3, finish_reason="length")
    chunks = list(_stream(llm, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "tok0 tok1 tok2 "
    assert chunks[-2].choices[0].finish_reason == "length"
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (4, 3)
    assert last.usage.total_tokens == 7


def test_send_usage_false_suppresses_usage(server: FakeLLMServer, llm: openai.OpenAI) -> None:
    server.behavior = Behavior(send_usage=False)
    chunks = list(_stream(llm, stream_options={"include_usage": True}))
    assert all(c.choices and c.usage is None for c in chunks)


def test_usage_override(server: FakeLLMServer, llm: openai.OpenAI) -> None:
    usage = {"prompt_tokens": 11, "completion_tokens": 22, "total_tokens": 33}
    server.behavior = Behavior(usage=usage)
    chunks = list(_stream(llm, stream_options={"include_usage": True}))
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.model_dump(include=set(usage)) == usage


def test_non_streaming_and_keep_alive(server: FakeLLMServer, llm: openai.OpenAI) -> None:
    server.behavior = Behavior(tokens=["a ", "b"])
    for _ in range(3):
        resp = llm.chat.completions.create(model="fake-model", messages=MESSAGES)
        assert resp.object == "chat.completion"
        assert resp.choices[0].message.content == "a b"
        assert resp.choices[0].finish_reason == "stop"
        assert resp.usage is not None
        assert (resp.usage.prompt_tokens, resp.usage.completion_tokens) == (4, 2)
    assert server.connections == 1  # pooled HTTP/1.1 connection was reused
    assert server.completed == 0  # only streams count


def test_rate_limit_with_retry_after(server: FakeLLMServer, llm: openai.OpenAI) -> None:
    server.behavior = Behavior(error_status=429, retry_after=7)
    with pytest.raises(openai.RateLimitError) as info:
        _stream(llm)
    assert info.value.status_code == 429
    assert info.value.response.headers["retry-after"] == "7"
    assert info.value.code == "rate_limit_exceeded"
    assert len(server.requests) == 1  # max_retries=0


def test_server_error(server: FakeLLMServer, llm: openai.OpenAI) -> None:
    server.behavior = Behavior(error_status=500)
    with pytest.raises(openai.InternalServerError) as info:
        llm.chat.completions.create(model="fake-model", messages=MESSAGES)
    assert info.value.type == "server_error"


def test_break_mid_stream(server: FakeLLMServer, llm: openai.OpenAI) -> None:
    server.behavior = Behavior(n_tokens=10, break_after=2)
    chunks = iter(_stream(llm))
    assert [next(chunks).choices[0].delta.content for _ in range(2)] == ["tok0 ", "tok1 "]
    with pytest.raises(openai.APIConnectionError) as info:
        next(chunks)
    assert type(info.value) is openai.APIConnectionError  # not the APITimeoutError subclass
    assert isinstance(info.value.__cause__, httpx2.RemoteProtocolError)
    assert server.completed == 0
    assert server.client_disconnects == 0  # the server hung up, not the client


def test_split_utf8_arrives_intact(server: FakeLLMServer, llm: openai.OpenAI) -> None:
    tokens = ["é", "日本", "🙂", "ascii ", "naïve"]
    server.behavior = Behavior(tokens=tokens, split_utf8=True)
    chunks = list(_stream(llm))
    assert [c.choices[0].delta.content for c in chunks[:-1]] == tokens


def test_split_utf8_really_splits_on_the_wire(server: FakeLLMServer) -> None:
    """Raw socket: some recv() must end mid-character, proving two separate writes."""
    server.behavior = Behavior(tokens=["日本"], split_utf8=True)
    body = json.dumps({"model": "m", "messages": MESSAGES, "stream": True}).encode()
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nconnection: close\r\n"
            b"content-length: %d\r\n\r\n%s" % (len(body), body)
        )
        pieces = []
        while data := sock.recv(65536):
            pieces.append(data)
    assert "日本".encode() in b"".join(pieces)
    assert any(p[-1] >= 0xC0 for p in pieces)  # a piece ending in a UTF-8 lead byte


def test_client_close_is_noticed(server: FakeLLMServer, llm: openai.OpenAI) -> None:
    server.behavior = Behavior(n_tokens=50, delay=0.05)
    stream = _stream(llm)
    assert stream.response.headers["content-type"].startswith("text/event-stream")
    assert stream.response.headers["x-request-id"].startswith("req_")
    next(iter(stream))
    assert server.active_streams == 1
    started = time.monotonic()
    stream.close()
    assert stream.response.is_closed
    assert server.wait_for(lambda s: s.client_disconnects == 1, timeout=5)
    assert time.monotonic() - started < 0.5  # noticed within about one chunk interval
    assert server.wait_for(lambda s: s.active_streams == 0)
    assert server.completed == 0


def test_reject_stream_options(server: FakeLLMServer, llm: openai.OpenAI) -> None:
    server.behavior = Behavior(reject_stream_options=True)
    with pytest.raises(openai.BadRequestError) as info:
        _stream(llm, stream_options={"include_usage": True})
    assert "stream_options" in info.value.message
    assert len(list(_stream(llm))) == 6  # fine without stream_options


def test_hang_after_headers_times_out(server: FakeLLMServer) -> None:
    server.behavior = Behavior(hang_after_headers=True)
    cli = openai.OpenAI(base_url=server.base_url, api_key="test", max_retries=0, timeout=1)
    stream = _stream(cli)  # headers arrive, so create() returns
    with pytest.raises(openai.APITimeoutError) as info:
        next(iter(stream))
    assert isinstance(info.value.__cause__, httpx2.ReadTimeout)
    cli.close()
    assert server.wait_for(lambda s: s.client_disconnects == 1 and s.active_streams == 0)


def test_headers_delay_times_out_in_create(server: FakeLLMServer) -> None:
    server.behavior = Behavior(headers_delay=5)
    cli = openai.OpenAI(base_url=server.base_url, api_key="test", max_retries=0, timeout=0.5)
    with pytest.raises(openai.APITimeoutError):
        _stream(cli)
    cli.close()
    assert server.wait_for(lambda s: s.client_disconnects == 1)


def test_per_model_override(server: FakeLLMServer, llm: openai.OpenAI) -> None:
    server.behavior = Behavior(tokens=["chat ", "answer"])
    server.set_behavior(Behavior(tokens=["A ", "Title"]), model="title-model")
    title = llm.chat.completions.create(model="title-model", messages=MESSAGES)
    assert title.choices[0].message.content == "A Title"
    text = "".join(c.choices[0].delta.content or "" for c in _stream(llm))
    assert text == "chat answer"
    assert [r.body["model"] for r in server.requests] == ["title-model", "fake-model"]
    assert "title-model" in {m.id for m in llm.models.list()}


def test_unknown_path_is_404_json(server: FakeLLMServer) -> None:
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"http://{server.host}:{server.port}/v2/nope", timeout=5)
    assert info.value.code == 404
    assert "error" in json.loads(info.value.read())


def test_connection_refused() -> None:
    srv = FakeLLMServer().start()
    srv.stop()
    cli = openai.OpenAI(base_url=srv.base_url, api_key="test", max_retries=0)
    with pytest.raises(openai.APIConnectionError) as info:
        _stream(cli)
    cli.close()
    assert isinstance(info.value.__cause__, httpx2.ConnectError)


def test_200_concurrent_streams(server: FakeLLMServer, llm: openai.OpenAI) -> None:
    server.behavior = Behavior(n_tokens=20, delay=0.01)

    def run(_: int) -> str:
        return "".join(c.choices[0].delta.content or "" for c in _stream(llm))

    peak = 0
    with ThreadPoolExecutor(max_workers=200) as pool:
        futures = [pool.submit(run, i) for i in range(200)]
        while not all(f.done() for f in futures):
            peak = max(peak, server.active_streams)
            time.sleep(0.005)  # sample how many streams are open at once until all end
        results = [f.result() for f in futures]
    expected = "".join(f"tok{i} " for i in range(20))
    assert results == [expected] * 200
    assert server.completed == 200
    assert server.client_disconnects == 0
    assert peak > 20  # they really overlapped


@pytest.mark.parametrize("stream", [False, True])
def test_a_tool_loop_asks_for_the_tool_then_answers_its_result(llm, server, stream):
    call = {"id": "call_1", "name": "lookup", "arguments": '{"q": "x"}'}
    server.behavior = Behavior(tokens=["done"], tool_calls=[call], tool_loop=True)

    def ask(messages):
        if not stream:
            choice = llm.chat.completions.create(model="fake-model", messages=messages).choices[0]
            calls = [
                (c.id, c.function.name, c.function.arguments)
                for c in choice.message.tool_calls or ()
            ]
            return choice.message.content, calls, choice.finish_reason
        text, calls, finish = [], {}, None
        for chunk in llm.chat.completions.create(
            model="fake-model", messages=messages, stream=True
        ):
            for choice in chunk.choices:
                text.append(choice.delta.content or "")
                finish = choice.finish_reason or finish
                for delta in choice.delta.tool_calls or ():
                    got = calls.setdefault(delta.index, ["", "", ""])
                    got[0] += delta.id or ""
                    got[1] += delta.function.name or ""
                    got[2] += delta.function.arguments or ""
        return "".join(text) or None, [tuple(c) for c in calls.values()], finish

    first = ask(MESSAGES)
    answered = [
        *MESSAGES,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "lookup", "arguments": "{}"},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "r"},
    ]
    second = ask(answered)

    assert first == (None, [("call_1", "lookup", '{"q": "x"}')], "tool_calls")
    assert second == ("done", [], "stop")
