"""Every outcome, on every endpoint, records model, endpoint, request id, finish reason and
timings: filled where the exchange produced them, null exactly where it did not."""

from __future__ import annotations

import pytest

from app.exchange.wire import StreamBroken
from tests.conftest import keyed_client
from tests.fake_llm import Behavior
from tests.generation import messages_of, only_message

REQUEST_ID = "trace-me-1"
HEADERS = {"X-Request-ID": REQUEST_ID}


@pytest.fixture
def conversation_id(client):
    body = {"title": "chat", "model_type": "fields-model"}
    return client.post("/conversations", json=body).json["id"]


def ask(client, conversation_id, endpoint, buffered=True):
    """One exchange on ``endpoint``: text, messages (JSON) or sse (messages, streamed)."""
    if endpoint == "text":
        return client.get(
            "/text/generate/stream",
            query_string={"prompt": "p", "conversation_id": conversation_id},
            headers=HEADERS,
            buffered=buffered,
        )
    return client.post(
        f"/conversations/{conversation_id}/messages",
        json={"prompt": "p", "stream": endpoint == "sse"},
        headers=HEADERS,
        buffered=buffered,
    )


def identity(message) -> tuple:
    return (message.model, message.endpoint, message.request_id)


ENDPOINTS = [("text", "text"), ("messages", "messages"), ("sse", "messages")]


@pytest.mark.parametrize(("endpoint", "recorded"), ENDPOINTS)
def test_complete(client, database, fake_llm, conversation_id, endpoint, recorded):
    fake_llm.behavior = Behavior(tokens=["a", "b"], finish_reason="length")

    ask(client, conversation_id, endpoint)

    message = only_message(database, conversation_id)
    assert message.outcome == "complete"
    assert identity(message) == ("fields-model", recorded, REQUEST_ID)
    assert message.finish_reason == "length"
    assert 0 <= message.ttft_ms <= message.duration_ms


@pytest.mark.parametrize(("endpoint", "recorded"), ENDPOINTS)
def test_the_input_is_the_prompt_as_one_user_message(
    client, database, fake_llm, conversation_id, endpoint, recorded
):
    ask(client, conversation_id, endpoint)

    message = only_message(database, conversation_id)
    assert message.input_items == [{"role": "user", "content": "p"}]
    assert client.get(f"/conversations/{conversation_id}/messages").json[0]["input_items"] == [
        {"role": "user", "content": "p"}
    ]


@pytest.mark.parametrize(("endpoint", "recorded"), ENDPOINTS)
def test_failed_before_the_first_token(
    client, database, fake_llm, conversation_id, endpoint, recorded
):
    fake_llm.behavior = Behavior(error_status=503)

    ask(client, conversation_id, endpoint)

    message = only_message(database, conversation_id)
    assert (message.outcome, message.status_code) == ("failed", 503)
    assert identity(message) == ("fields-model", recorded, REQUEST_ID)
    assert (message.finish_reason, message.ttft_ms) == (None, None)
    assert message.duration_ms >= 0


@pytest.mark.parametrize(("endpoint", "recorded"), ENDPOINTS)
def test_failed_mid_stream(client, database, fake_llm, conversation_id, endpoint, recorded):
    fake_llm.behavior = Behavior(n_tokens=5, break_after=2)

    if endpoint == "text":
        # Cut off without its terminating chunk, which the test client raises.
        with pytest.raises(StreamBroken):
            ask(client, conversation_id, endpoint)
    else:
        ask(client, conversation_id, endpoint)

    message = only_message(database, conversation_id)
    assert (message.outcome, message.status_code) == ("failed", 502)
    assert identity(message) == ("fields-model", recorded, REQUEST_ID)
    assert message.finish_reason is None
    assert 0 <= message.ttft_ms <= message.duration_ms


@pytest.mark.parametrize(("endpoint", "recorded"), [("text", "text"), ("sse", "messages")])
def test_client_closed(client, database, fake_llm, conversation_id, endpoint, recorded):
    fake_llm.behavior = Behavior(n_tokens=40, delay=0.02)
    response = ask(client, conversation_id, endpoint, buffered=False)
    pieces = iter(response.response)
    next(pieces)
    next(pieces)  # the first piece was written: it counts as received

    response.close()

    message = only_message(database, conversation_id)
    assert (message.outcome, message.status_code) == ("client_closed", 499)
    assert identity(message) == ("fields-model", recorded, REQUEST_ID)
    assert message.finish_reason is None
    assert 0 <= message.ttft_ms <= message.duration_ms


def test_interrupted_keeps_what_was_known_and_lasts_until_the_last_heartbeat(pooled_app, fake_llm):
    client = keyed_client(pooled_app, pooled_app.config["TEST_KEY"])
    body = {"title": "chat", "model_type": "fields-model"}
    conversation_id = client.post("/conversations", json=body).json["id"]
    fake_llm.behavior = Behavior(n_tokens=40, delay=0.05)
    response = ask(client, conversation_id, "text", buffered=False)
    pieces = iter(response.response)
    next(pieces)
    next(pieces)
    live = pooled_app.extensions["live_exchanges"]
    live.tick(reap=False)
    (exchange,) = live._live.values()
    live.discard(exchange)  # the worker "dies"
    live.stale_after = 0

    live.tick(reap=True)

    (message,) = messages_of(_Database(pooled_app), conversation_id)
    response.close()
    assert (message.outcome, message.status_code) == ("interrupted", 500)
    assert identity(message) == ("fields-model", "text", REQUEST_ID)
    # Only the worker knew these; the row says how long it was heard from.
    assert (message.finish_reason, message.ttft_ms) == (None, None)
    heard = (message.heartbeat_at - message.created_at).total_seconds() * 1000
    assert abs(message.duration_ms - heard) <= 1


class _Database:
    """What messages_of needs: the app."""

    def __init__(self, app) -> None:
        self.app = app
