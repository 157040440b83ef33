"""The exchange lifecycle: odd model output, HEAD, reasoning models, hang-ups, titles, odd
upstream events and database failures each end the exchange once, and correctly.

Each test here failed on the code before app/exchange/lifecycle.py (see issue 8's closing note).
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from app.exchange.lifecycle import Exchange
from app.extensions import db
from app.models import Message
from app.services import generation
from tests.conftest import keyed_client
from tests.fake_llm import Behavior
from tests.generation import messages_of, only_message, parse_sse, post_stream, stream_text

REPLACEMENT = "\ufffd"


@pytest.fixture
def conversation_id(client):
    return client.post("/conversations", json={"title": "chat", "model_type": "fake-model"}).json[
        "id"
    ]


def sse_text(events, kind="delta") -> str:
    return "".join(data["text"] for event, data in events if event == kind)


class TestUnstorableText:
    """NUL and lone surrogates become U+FFFD before they are sent, on every endpoint."""

    TOKENS = ["a\u0000b", " and ", "c"]
    RELAYED = f"a{REPLACEMENT}b and c"

    def test_plain_text_relays_and_saves_the_same_text(
        self, client, database, fake_llm, conversation_id
    ):
        fake_llm.behavior = Behavior(tokens=self.TOKENS)

        response = stream_text(client, conversation_id)

        assert response.status_code == 200
        assert response.get_data(as_text=True) == self.RELAYED
        message = only_message(database, conversation_id)
        assert (message.response_content, message.is_success, message.outcome) == (
            self.RELAYED,
            True,
            "complete",
        )

    def test_sse_relays_and_saves_the_same_text(self, client, database, fake_llm, conversation_id):
        fake_llm.behavior = Behavior(tokens=self.TOKENS)

        events = parse_sse(post_stream(client, conversation_id).data)

        assert sse_text(events) == self.RELAYED
        assert events[-1][0] == "done"
        assert events[-1][1]["message"]["response_content"] == self.RELAYED
        assert only_message(database, conversation_id).response_content == self.RELAYED

    def test_the_json_reply_is_201_with_the_same_text(
        self, client, database, fake_llm, conversation_id
    ):
        fake_llm.behavior = Behavior(tokens=self.TOKENS)

        response = client.post(f"/conversations/{conversation_id}/messages", json={"prompt": "p"})

        assert response.status_code == 201
        assert response.json["response_content"] == self.RELAYED
        assert only_message(database, conversation_id).status_code == 200

    def test_a_lone_surrogate_is_replaced_not_recorded_as_a_hang_up(
        self, client, database, fake_llm, conversation_id
    ):
        # JSON may escape half of a surrogate pair; it cannot be encoded to UTF-8.
        lone = r'{"choices": [{"index": 0, "delta": {"content": "x\ud800y"}}]}'
        fake_llm.behavior = Behavior(tokens=["!"], raw_events=[lone])

        response = stream_text(client, conversation_id)

        assert response.get_data(as_text=True) == f"x{REPLACEMENT}y!"
        message = only_message(database, conversation_id)
        assert (message.response_content, message.status_code) == (f"x{REPLACEMENT}y!", 200)


class TestSaveFailingForGood:
    """A save that fails for a reason retrying cannot fix still ends the row."""

    @pytest.fixture
    def final_save_fails(self, app):
        with app.app_context():
            connection = db.engines[None]

        def refuse(_conn, _cursor, statement, *_args):
            # The save that writes the text (on PostgreSQL inside a WITH ... statement).
            if "UPDATE messages SET" in statement and "response_content=" in statement:
                raise sa.exc.DataError(statement, {}, Exception("invalid byte sequence"))

        sa.event.listen(connection, "before_cursor_execute", refuse)
        yield
        sa.event.remove(connection, "before_cursor_execute", refuse)

    def test_the_row_ends_failed_and_the_client_is_not_told_the_database_is_down(
        self, client, database, fake_llm, conversation_id, final_save_fails
    ):
        response = client.post(f"/conversations/{conversation_id}/messages", json={"prompt": "p"})

        assert response.status_code == 500
        assert response.json["message"] == "The answer could not be stored."
        message = only_message(database, conversation_id)
        assert (message.is_success, message.outcome, message.status_code) == (
            False,
            "failed",
            500,
        )

    def test_sse_ends_with_an_error_event_saying_so(
        self, client, database, fake_llm, conversation_id, final_save_fails
    ):
        events = parse_sse(post_stream(client, conversation_id).data)

        assert events[-1] == ("error", {"code": 500, "message": "The answer could not be stored."})
        assert only_message(database, conversation_id).outcome == "failed"


class TestHead:
    def test_head_answers_like_get_without_calling_the_llm_or_recording(
        self, client, database, fake_llm, conversation_id
    ):
        response = client.head(
            "/text/generate/stream",
            query_string={"prompt": "hi", "conversation_id": conversation_id},
        )

        assert response.status_code == 200
        assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
        assert response.data == b""
        assert fake_llm.requests == []
        assert messages_of(database, conversation_id) == []

    def test_head_for_somebody_elses_conversation_is_404(self, app, make_account, fake_llm):
        bob = keyed_client(app, make_account("bob").key)
        theirs = bob.post("/conversations", json={"title": "bob's"}).json["id"]
        alice = keyed_client(app, make_account("carol").key)

        response = alice.head(
            "/text/generate/stream", query_string={"prompt": "hi", "conversation_id": theirs}
        )

        assert response.status_code == 404
        assert fake_llm.requests == []


class TestReasoningModels:
    THOUGHTS = ["Let me ", "think."]

    def test_sse_relays_reasoning_as_its_own_events_and_saves_it_apart(
        self, client, database, fake_llm, conversation_id
    ):
        fake_llm.behavior = Behavior(reasoning=self.THOUGHTS, tokens=["Answer."])

        events = parse_sse(post_stream(client, conversation_id).data)

        assert [event for event, _ in events] == ["reasoning", "reasoning", "delta", "done"]
        assert sse_text(events, "reasoning") == "Let me think."
        saved = events[-1][1]["message"]
        assert (saved["reasoning_content"], saved["response_content"]) == (
            "Let me think.",
            "Answer.",
        )
        message = only_message(database, conversation_id)
        assert (message.reasoning_content, message.response_content) == ("Let me think.", "Answer.")

    def test_plain_text_relays_only_the_answer(self, client, database, fake_llm, conversation_id):
        fake_llm.behavior = Behavior(reasoning=self.THOUGHTS, tokens=["Answer."])

        response = stream_text(client, conversation_id)

        assert response.get_data(as_text=True) == "Answer."
        assert only_message(database, conversation_id).reasoning_content == "Let me think."

    def test_keep_alive_counts_silence_on_the_clients_side(
        self, client, configure, fake_llm, conversation_id
    ):
        # Chunks with nothing to relay arrive every 0.1 s for 1 s: the client still hears
        # nothing, so keep-alives must flow (the old timer was reset by every chunk).
        configure(SSE_KEEPALIVE_SECONDS=0.3)
        fake_llm.behavior = Behavior(filler=10, delay=0.1, tokens=["done"])

        events = parse_sse(post_stream(client, conversation_id).data)

        assert [event for event, _ in events].count("comment") >= 2
        assert events[-2:][0] == ("delta", {"text": "done"})


class TestHangUpOnAnUntitledConversation:
    @pytest.fixture
    def untitled(self, pooled_app):
        client = keyed_client(pooled_app, pooled_app.config["TEST_KEY"])
        return client, client.post("/conversations", json={"model_type": "fake-model"}).json["id"]

    def test_the_exchange_is_closed_and_saved_before_the_title_call(
        self,
        pooled_app,
        fake_llm,
        untitled,
        monkeypatch,
    ):
        client, conversation_id = untitled
        fake_llm.behavior = Behavior(n_tokens=50, delay=0.05)
        fake_llm.set_behavior(Behavior(tokens=["A title"]), model="title-m")
        pooled_app.config["TITLE_MODEL"] = "title-m"
        steps = []
        close_upstream = Exchange._close_upstream
        monkeypatch.setattr(
            Exchange, "_close_upstream", lambda self: steps.append("close") or close_upstream(self)
        )
        title = generation.title_conversation

        def observed_title(app, *args):
            with app.app_context():
                steps.append(db.session.scalar(sa.select(Message.outcome)))
            title(app, *args)

        monkeypatch.setattr(generation, "title_conversation", observed_title)
        response = post_stream(client, conversation_id, buffered=False)
        next(iter(response.response))

        response.close()

        assert steps == ["close", "client_closed"]
        assert fake_llm.wait_for(lambda server: server.client_disconnects == 1)
        assert client.get(f"/conversations/{conversation_id}").json["title"] == "A title"

    def test_an_unexpected_failure_of_the_title_cannot_prevent_the_save(
        self,
        pooled_app,
        fake_llm,
        untitled,
        monkeypatch,
    ):
        client, conversation_id = untitled

        def broken_title(*_args):
            raise RuntimeError("a bug in the title path")

        monkeypatch.setattr(generation, "title_conversation", broken_title)
        fake_llm.behavior = Behavior(n_tokens=50, delay=0.05)
        response = post_stream(client, conversation_id, buffered=False)
        next(iter(response.response))

        response.close()

        with pooled_app.app_context():
            message = db.session.scalars(sa.select(Message)).one()
            assert (message.outcome, message.status_code) == ("client_closed", 499)


class TestMalformedUpstreamEvents:
    @pytest.mark.parametrize("raw", ["this is not json", "[1, 2, 3]", '"a string"'])
    def test_before_the_first_token_is_a_502_and_a_recorded_failure(
        self, client, database, fake_llm, conversation_id, raw
    ):
        fake_llm.behavior = Behavior(raw_events=[raw])

        response = client.post(f"/conversations/{conversation_id}/messages", json={"prompt": "p"})

        assert response.status_code == 502
        assert response.json["message"].startswith("The LLM provider sent a malformed stream event")
        message = only_message(database, conversation_id)
        assert (message.is_success, message.outcome, message.status_code) == (
            False,
            "failed",
            502,
        )

    def test_a_body_cut_after_done_leaves_a_complete_answer_complete(
        self, client, database, fake_llm, conversation_id
    ):
        fake_llm.behavior = Behavior(tokens=["all", " there"], break_after_done=True)

        response = client.post(f"/conversations/{conversation_id}/messages", json={"prompt": "p"})

        assert response.status_code == 201
        assert response.json["response_content"] == "all there"
        assert only_message(database, conversation_id).outcome == "complete"


class TestPerExchangeRecord:
    def test_model_endpoint_request_id_finish_reason_and_timings_are_recorded(
        self, client, database, fake_llm, conversation_id
    ):
        fake_llm.behavior = Behavior(tokens=["a", "b"], finish_reason="length")

        response = client.post(
            f"/conversations/{conversation_id}/messages",
            json={"prompt": "p"},
            headers={"X-Request-ID": "complaint-42"},
        )

        body = response.json
        assert (body["model"], body["endpoint"], body["request_id"], body["finish_reason"]) == (
            "fake-model",
            "messages",
            "complaint-42",
            "length",
        )
        assert 0 <= body["ttft_ms"] <= body["duration_ms"]
        (upstream_call,) = fake_llm.requests
        assert upstream_call.headers["x-request-id"] == "complaint-42"
        assert only_message(database, conversation_id).endpoint == "messages"

    def test_the_text_endpoint_says_so(self, client, database, fake_llm, conversation_id):
        stream_text(client, conversation_id)

        assert only_message(database, conversation_id).endpoint == "text"


class TestCheckpointsAndReaping:
    """In-process: the ticker's one statement, and the reaper ending a dead worker's rows."""

    def test_one_tick_checkpoints_every_live_exchange_in_one_statement(
        self,
        pooled_app,
        fake_llm,
    ):
        client = keyed_client(pooled_app, pooled_app.config["TEST_KEY"])
        ids = [client.post("/conversations", json={"title": f"c{i}"}).json["id"] for i in (1, 2)]
        fake_llm.behavior = Behavior(n_tokens=40, delay=0.05)
        streams = [stream_text(client, cid, buffered=False) for cid in ids]
        bodies = [iter(stream.response) for stream in streams]
        # A piece counts as received once the server comes back for the next one.
        received = [next(body) for body in bodies]
        for body in bodies:
            next(body)
        live = pooled_app.extensions["live_exchanges"]
        statements = []

        def record(_conn, _cursor, statement, *_args):
            if not statement.startswith("BEGIN"):
                statements.append(statement)

        with pooled_app.app_context():
            engine = db.engine
        sa.event.listen(engine, "before_cursor_execute", record)
        try:
            checkpointed, _ = live.tick(reap=False)
        finally:
            sa.event.remove(engine, "before_cursor_execute", record)
        with pooled_app.app_context():
            rows = db.session.execute(
                sa.select(Message.response_content, Message.is_success).order_by(Message.id)
            ).all()
        for stream in streams:
            stream.close()

        assert checkpointed == 2
        assert [s.split(None, 1)[0] for s in statements] == ["UPDATE"]
        assert [(text, done) for text, done in rows] == [
            (chunk.decode(), None) for chunk in received
        ]

    def test_the_reaper_ends_a_dead_workers_exchange_with_its_checkpoint(
        self,
        pooled_app,
        fake_llm,
    ):
        client = keyed_client(pooled_app, pooled_app.config["TEST_KEY"])
        conversation_id = client.post("/conversations", json={"title": "t"}).json["id"]
        fake_llm.behavior = Behavior(n_tokens=40, delay=0.05)
        stream = stream_text(client, conversation_id, buffered=False)
        body = iter(stream.response)
        received = next(body)
        next(body)  # the first piece was written: the server asks for the second
        live = pooled_app.extensions["live_exchanges"]
        live.tick(reap=False)
        # The worker "dies": it forgets the exchange without ending it.
        (exchange,) = live._live.values()
        live.discard(exchange)
        pooled_app.config["REAP_AFTER_SECONDS"] = 0
        live.stale_after = 0

        _, reaped = live.tick(reap=True)

        with pooled_app.app_context():
            message = db.session.scalars(sa.select(Message)).one()
            assert (message.outcome, message.status_code, message.response_content) == (
                "interrupted",
                500,
                received.decode(),
            )
        assert reaped == 1
        stream.close()


def test_a_client_leaving_during_a_keep_alive_ends_the_exchange_and_the_upstream(
    client, configure, database, fake_llm, conversation_id
):
    configure(SSE_KEEPALIVE_SECONDS=0.1)
    # The first event comes at once (the stream opens), then nothing for 1.5 s.
    fake_llm.behavior = Behavior(filler=1, delay=1.5, tokens=["late"])
    response = post_stream(client, conversation_id, buffered=False)
    pieces = iter(response.response)
    first = next(pieces)
    next(pieces)  # the keep-alive was written: the server is back for more

    response.close()

    assert first == b": keep-alive\n\n"
    message = only_message(database, conversation_id)
    assert (message.outcome, message.status_code, message.response_content) == (
        "client_closed",
        499,
        "",
    )
    assert fake_llm.wait_for(lambda server: server.client_disconnects == 1)


def test_the_prompt_row_is_committed_in_progress_before_the_first_byte(
    client, database, fake_llm, conversation_id
):
    fake_llm.behavior = Behavior(n_tokens=3, delay=0.05)
    response = stream_text(client, conversation_id, buffered=False)
    pieces = iter(response.response)

    first = next(pieces)
    during = only_message(database, conversation_id)
    rest = b"".join(pieces)
    response.close()

    assert (first, rest) == (b"tok0 ", b"tok1 tok2 ")
    assert (during.prompt_content, during.is_success) == ("Say hello", None)
    assert during.outcome is None
