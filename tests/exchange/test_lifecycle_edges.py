"""The lifecycle's promises at their edges (issue 21): heartbeats from the committed row on,
GENERATION_TIMEOUT over the whole exchange, estimated usage, one charging rule."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.models import Message, utcnow
from app.services.checkpoints import init_live_exchanges, live_exchanges
from tests.api.test_generation import only_message, parse_sse, post_stream, stream_text
from tests.conftest import keyed_client
from tests.fake_llm import Behavior

CHAT = "/v1/chat/completions"


def user(text):
    return {"role": "user", "content": text}


def the_message(app) -> Message:
    with app.app_context():
        return db.session.scalars(sa.select(Message)).one()


class TestHeartbeatsStartWithTheRow:
    """Item 2: an exchange waiting on the upstream is heartbeated, so never reaped."""

    @pytest.mark.parametrize("waiting_for", ["non-streamed answer", "first token"])
    def test_an_exchange_waiting_on_the_upstream_is_not_reaped(
        self, pooled_app, fake_llm, waiting_for
    ):
        client = keyed_client(pooled_app, pooled_app.config["TEST_KEY"])
        if waiting_for == "first token":
            fake_llm.behavior = Behavior(first_token_delay=1.0, n_tokens=2)
        else:
            fake_llm.behavior = Behavior(headers_delay=1.0, n_tokens=2)
        body = {
            "model": "fake-model",
            "messages": [user("hi")],
            "stream": waiting_for != "non-streamed answer",
        }
        answers = []

        def ask() -> None:
            response = client.post(CHAT, json=body)
            answers.append((response.status_code, response.get_data()))
            response.close()

        call = threading.Thread(target=ask)
        call.start()
        assert fake_llm.wait_for(lambda server: len(server.requests) == 1)
        live = pooled_app.extensions["live_exchanges"]
        # Its last heartbeat looks an hour old: only a heartbeat written now saves it.
        with pooled_app.app_context():
            db.session.execute(
                sa.update(Message).values(heartbeat_at=utcnow() - timedelta(hours=1))
            )
            db.session.commit()
        live.stale_after = 60

        checkpointed, reaped = live.tick(reap=True)
        during = the_message(pooled_app)
        call.join()

        assert (checkpointed, reaped) == (1, 0)
        assert during.outcome is None
        assert answers[0][0] == 200
        assert the_message(pooled_app).outcome == "complete"


def row(app, message_id=None) -> Message:
    with app.app_context():
        query = sa.select(Message)
        if message_id is not None:
            query = query.where(Message.id == message_id)
        return db.session.scalars(query).one()


@pytest.fixture
def streaming(pooled_app, fake_llm):
    """A text stream read two pieces in (the first counted as received); closed after."""
    client = keyed_client(pooled_app, pooled_app.config["TEST_KEY"])
    conversation_id = client.post("/conversations", json={"title": "t"}).json["id"]
    fake_llm.behavior = Behavior(n_tokens=200, delay=0.05)
    response = stream_text(client, conversation_id, buffered=False)
    pieces = iter(response.response)
    received = [next(pieces), next(pieces)]
    yield pieces, received
    response.close()


class TestCheckpoints:
    def test_without_text_checkpoints_heartbeats_go_on(self, pooled_app, fake_llm):
        """Item 6: CHECKPOINT_SECONDS=0 turns off text checkpoints, never heartbeats."""
        pooled_app.config.update(CHECKPOINT_SECONDS=0, REAP_AFTER_SECONDS=3, LIVE_TICKER=True)
        init_live_exchanges(pooled_app)
        live = live_exchanges(pooled_app)
        client = keyed_client(pooled_app, pooled_app.config["TEST_KEY"])
        conversation_id = client.post("/conversations", json={"title": "t"}).json["id"]
        fake_llm.behavior = Behavior(n_tokens=200, delay=0.05)
        response = stream_text(client, conversation_id, buffered=False)
        pieces = iter(response.response)
        next(pieces)
        next(pieces)
        started = row(pooled_app).heartbeat_at
        try:
            # The ticker runs (every REAP_AFTER_SECONDS / 3) and moves the heartbeat.
            moved = fake_llm.wait_for(lambda _: row(pooled_app).heartbeat_at > started, 5)
            during = row(pooled_app)
        finally:
            response.close()
            live.stop()

        assert moved
        assert (during.outcome, during.response_content) == (None, "")
        assert row(pooled_app).outcome == "client_closed"

    def test_a_tick_writes_only_what_was_relayed_since_the_last(
        self, pooled_app, fake_llm, streaming
    ):
        """Item 5: the text is appended, not rewritten whole at every tick."""
        pieces, received = streaming
        live = live_exchanges(pooled_app)
        live.tick(reap=False)
        received += [next(pieces), next(pieces)]
        sent = []

        def record(_conn, _cursor, statement, parameters, *_args):
            if statement.startswith("UPDATE"):
                sent.append(repr(parameters))

        with pooled_app.app_context():
            engine = db.engine
        sa.event.listen(engine, "before_cursor_execute", record)
        try:
            checkpointed, _ = live.tick(reap=False)
        finally:
            sa.event.remove(engine, "before_cursor_execute", record)

        (parameters,) = sent
        assert checkpointed == 1
        # The first tick wrote tok0; the second sends tok1 and tok2 only.
        assert "tok0" not in parameters
        assert "tok1 tok2 " in parameters
        assert row(pooled_app).response_content == b"".join(received[:3]).decode()

    def test_tool_calls_are_checkpointed_with_the_text(self, pooled_app, fake_llm):
        """Also: a worker killed after the model requested a tool call keeps it."""
        client = keyed_client(pooled_app, pooled_app.config["TEST_KEY"])
        call = {"id": "call_1", "name": "weather", "arguments": '{"city": "Lyon"}'}
        fake_llm.behavior = Behavior(tokens=["Checking."], tool_calls=[call], delay=0.01)
        body = {"model": "fake-model", "messages": [user("hi")], "stream": True}
        response = client.post(CHAT, json=body, buffered=False)
        pieces = iter(response.response)
        # Up to the finish event: every tool-call delta before it was relayed and taken.
        while b'"finish_reason": "stop"' not in next(pieces):
            pass

        live_exchanges(pooled_app).tick(reap=False)
        during = row(pooled_app)
        response.close()

        assert during.outcome is None
        assert during.response_content == "Checking."
        assert during.tool_calls == [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "weather", "arguments": '{"city": "Lyon"}'},
            }
        ]
