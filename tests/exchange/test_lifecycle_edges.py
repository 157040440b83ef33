"""The lifecycle's promises at their edges (issue 21): heartbeats from the committed row on,
GENERATION_TIMEOUT over the whole exchange, estimated usage, one charging rule."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, time, timedelta

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.models import Message, utcnow
from app.services.checkpoints import init_live_exchanges, live_exchanges
from app.services.titles import title_conversation
from tests.conftest import keyed_client
from tests.fake_llm import Behavior
from tests.generation import messages_of, only_message, post_stream, stream_text

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


@pytest.fixture
def conversation_id(client):
    return client.post("/conversations", json={"title": "t", "model_type": "fake-model"}).json["id"]


TIMED_OUT = "The answer took longer than 0.5 s (GENERATION_TIMEOUT) and was cut off."


class TestGenerationTimeoutBoundsTheWholeExchange:
    """Item 3: the wait for the upstream's headers and first token is inside the bound."""

    @pytest.fixture(autouse=True)
    def half_a_second(self, configure):
        configure(GENERATION_TIMEOUT=0.5)

    def assert_timed_out_and_charged(self, database, conversation_id):
        message = only_message(database, conversation_id)
        assert (message.outcome, message.status_code, message.finish_reason) == (
            "failed",
            504,
            "timeout",
        )
        # Nothing was received; what was sent ("Say hello" or "hi") is charged, estimated.
        assert message.response_content == ""
        assert message.usage_estimated is True
        assert message.response_tokens == 0
        assert message.total_tokens == message.prompt_tokens > 0

    @pytest.mark.parametrize("slow", ["headers", "first token"])
    def test_a_stream_that_does_not_start_in_time_is_a_504_before_any_byte(
        self, client, database, fake_llm, conversation_id, slow
    ):
        delay = {"headers_delay" if slow == "headers" else "first_token_delay": 1.5}
        fake_llm.behavior = Behavior(n_tokens=40, delay=0.05, **delay)

        response = post_stream(client, conversation_id)

        assert response.status_code == 504
        assert response.json["message"] == TIMED_OUT
        self.assert_timed_out_and_charged(database, conversation_id)
        assert fake_llm.wait_for(lambda server: server.client_disconnects == 1)

    def test_a_non_streamed_gateway_call_is_cut_off_at_the_bound(self, client, database, fake_llm):
        fake_llm.behavior = Behavior(headers_delay=1.5)

        response = client.post(CHAT, json={"model": "fake-model", "messages": [user("hi")]})

        assert response.status_code == 504
        assert response.json["error"]["message"] == TIMED_OUT
        self.assert_timed_out_and_charged(database, int(response.headers["X-Conversation-Id"]))

    def test_an_answer_that_arrives_in_time_is_kept(self, client, database, fake_llm):
        fake_llm.behavior = Behavior(tokens=["in ", "time"])

        response = client.post(CHAT, json={"model": "fake-model", "messages": [user("hi")]})

        assert response.status_code == 200
        message = only_message(database, int(response.headers["X-Conversation-Id"]))
        assert (message.outcome, message.response_content) == ("complete", "in time")


USAGE = {"prompt_tokens": 5000, "completion_tokens": 20, "total_tokens": 5020}


def hang_up_after_one_piece(client, conversation_id, prompt="Say hello"):
    response = post_stream(client, conversation_id, prompt, buffered=False)
    next(iter(response.response))
    response.close()
    return response


class TestUsageNotReceived:
    """Item 1: an exchange ended without the upstream's usage is charged an estimate."""

    def test_hanging_up_early_no_longer_bypasses_the_budget(
        self, client, configure, database, fake_llm, conversation_id
    ):
        configure(TOKEN_BUDGET_DAILY=100)
        fake_llm.behavior = Behavior(n_tokens=40, delay=0.05, usage=USAGE)

        first = hang_up_after_one_piece(client, conversation_id, "x" * 1000)
        refused = [post_stream(client, conversation_id).status_code for _ in range(4)]

        assert first.status_code == 200
        assert refused == [429] * 4
        assert len(fake_llm.requests) == 1
        # 1000 characters sent: 250 tokens; nothing counted as received (the client left
        # before coming back for a second piece).
        message = only_message(database, conversation_id)
        assert (message.outcome, message.usage_estimated) == ("client_closed", True)
        assert (message.prompt_tokens, message.response_tokens, message.total_tokens) == (
            250,
            0,
            250,
        )
        (usage,) = client.get("/usage").json["rows"]
        assert usage["total_tokens"] == 250
        assert usage["estimated"] == {"exchanges": 1, "total_tokens": 250}

    def test_a_left_stream_is_read_on_to_its_usage_within_the_bound(
        self, client, configure, database, fake_llm, conversation_id
    ):
        configure(USAGE_DRAIN_SECONDS=5)
        fake_llm.behavior = Behavior(n_tokens=10, delay=0.02, usage=USAGE)

        hang_up_after_one_piece(client, conversation_id)

        message = only_message(database, conversation_id)
        assert (message.outcome, message.status_code) == ("client_closed", 499)
        assert (message.total_tokens, message.usage_estimated) == (5020, False)
        # What is saved is still what the client received: nothing past its hang-up.
        assert message.response_content == ""

    def test_the_history_sent_is_in_the_estimate(
        self, client, configure, database, fake_llm, conversation_id
    ):
        fake_llm.behavior = Behavior(tokens=["12345678"], send_usage=False)
        client.post(f"/conversations/{conversation_id}/messages", json={"prompt": "a" * 40})

        client.post(f"/conversations/{conversation_id}/messages", json={"prompt": "b" * 40})

        second = messages_of(database, conversation_id)[1]
        # (40 + 8 history, 40 prompt) / 4 = 22 sent; 8 / 4 = 2 received.
        assert (second.prompt_tokens, second.response_tokens, second.total_tokens) == (22, 2, 24)
        assert second.usage_estimated is True

    def test_an_upstream_that_refused_is_not_charged(
        self, client, database, fake_llm, conversation_id
    ):
        fake_llm.behavior = Behavior(error_status=429)

        assert post_stream(client, conversation_id).status_code == 429

        message = only_message(database, conversation_id)
        assert (message.total_tokens, message.usage_estimated) == (None, False)

    def test_an_interrupted_exchange_is_charged_its_estimate(self, pooled_app, streaming):
        _pieces, received = streaming
        live = live_exchanges(pooled_app)
        live.tick(reap=False)
        (exchange,) = live._live.values()
        live.discard(exchange)  # the worker "dies"
        live.stale_after = 0

        live.tick(reap=True)

        message = row(pooled_app)
        assert received[0] == b"tok0 "
        # "Say hello": 3 tokens sent; "tok0 ": 2 received.
        assert (message.outcome, message.prompt_tokens, message.response_tokens) == (
            "interrupted",
            3,
            2,
        )
        assert (message.total_tokens, message.usage_estimated) == (5, True)


class TestOneChargingRule:
    """Item 7: a generation is always in the caller's own conversation, so the caller is
    both charged and checked; an admin too gets 404 for another user's, on every endpoint."""

    def test_an_admin_cannot_generate_in_another_users_conversation(
        self, app, client, make_account, database, fake_llm, conversation_id
    ):
        admin = keyed_client(app, make_account("root", admin=True).key)
        prompt = {"prompt": "p"}

        answers = [
            admin.post(f"/conversations/{conversation_id}/messages", json=prompt),
            admin.post(
                f"/conversations/{conversation_id}/messages", json={**prompt, "stream": True}
            ),
            admin.get(
                "/text/generate/stream",
                query_string={"prompt": "p", "conversation_id": conversation_id},
            ),
            admin.post(
                CHAT,
                json={"model": "fake-model", "messages": [user("p")]},
                headers={"X-Conversation-Id": str(conversation_id)},
            ),
        ]

        assert [answer.status_code for answer in answers] == [404] * 4
        assert fake_llm.requests == []
        assert messages_of(database, conversation_id) == []
        assert admin.get(f"/conversations/{conversation_id}").status_code == 200  # still reads


class TestMidnight:
    """Item 8: an exchange and its title count on the UTC day the exchange was asked."""

    def test_a_title_made_after_midnight_counts_on_the_day_it_was_asked(
        self, app, client, configure, fake_llm
    ):
        configure(TITLE_MODEL="title-m", TOKEN_BUDGET_DAILY=40)
        usage = {"prompt_tokens": 40, "completion_tokens": 4, "total_tokens": 44}
        fake_llm.set_behavior(Behavior(tokens=["Trip"], usage=usage), model="title-m")
        untitled = client.post("/conversations", json={"model_type": "fake-model"}).json["id"]
        yesterday = utcnow().date() - timedelta(days=1)

        title_conversation(app, untitled, "fake-model", "a trip", yesterday)

        rows = client.get("/usage", query_string={"group_by": "day", "from": yesterday}).json
        assert [(r["day"], r["title_tokens"]) for r in rows["rows"]] == [
            (yesterday.isoformat(), 44)
        ]
        # Today's budget has nothing spent yet.
        asked = client.post(f"/conversations/{untitled}/messages", json={"prompt": "p"})
        assert asked.status_code == 201

    def test_an_exchange_ending_after_midnight_counts_on_the_day_it_was_asked(
        self, app, client, configure, database, owner_id, conversation_id
    ):
        configure(TOKEN_BUDGET_DAILY=40)
        today = utcnow().date()
        before_midnight = datetime.combine(today, time(), UTC) - timedelta(seconds=1)
        database.add(
            Message(
                conversation_id=conversation_id,
                prompt_content="p" * 400,
                prompt_tokens=100,
                usage_estimated=True,
                created_at=before_midnight,
                heartbeat_at=before_midnight,
            )
        )

        assert app.test_cli_runner().invoke(args=["messages", "reap"]).exit_code == 0

        rows = client.get("/usage", query_string={"group_by": "day", "from": today - timedelta(1)})
        assert [(r["day"], r["total_tokens"]) for r in rows.json["rows"]] == [
            ((today - timedelta(days=1)).isoformat(), 100)
        ]
        asked = client.post(f"/conversations/{conversation_id}/messages", json={"prompt": "p"})
        assert asked.status_code == 201
