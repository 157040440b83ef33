"""Nothing lost: no connection held while streaming, saves retried, interrupted rows reaped."""

from __future__ import annotations

import json
import logging
import threading
from datetime import timedelta

import flask_migrate
import pytest
import sqlalchemy as sa

from app.extensions import db
from app.models import Conversation, Message, utcnow
from app.services import users as users_service
from app.services.persistence import save_with_retry
from tests.conftest import disposing, keyed_client, make_app
from tests.fake_llm import Behavior


@pytest.fixture
def pooled_app(backend, database_factory, llm_server):
    """An app on its own migrated database with a real connection pool (no test binding)."""
    with disposing(make_app(database_factory(backend), OPENAI_BASE_URL=llm_server.base_url)) as app:
        with app.app_context():
            flask_migrate.upgrade()
            app.config["TEST_KEY"] = users_service.create_user("alice").secret
        yield app


def checked_out(app) -> int:
    with app.app_context():
        return db.engine.pool.checkedout()


@pytest.mark.parametrize("stream", ["sse", "text"])
def test_no_pooled_connection_is_held_while_streaming(pooled_app, fake_llm, stream):
    fake_llm.behavior = Behavior(n_tokens=4, delay=0.05)
    client = keyed_client(pooled_app, pooled_app.config["TEST_KEY"])
    conversation_id = client.post("/conversations", json={"title": "t"}).json["id"]

    if stream == "sse":
        response = client.post(
            f"/conversations/{conversation_id}/messages", json={"prompt": "hi", "stream": True}
        )
    else:
        response = client.get(f"/text/generate/stream?prompt=hi&conversation_id={conversation_id}")
    pieces = iter(response.response)
    next(pieces)
    during = checked_out(pooled_app)
    rest = list(pieces)
    response.close()

    assert during == 0
    assert checked_out(pooled_app) == 0
    assert rest
    with pooled_app.app_context():
        message = db.session.scalars(sa.select(Message)).one()
        assert (message.is_success, message.response_content) == (True, "tok0 tok1 tok2 tok3 ")


def test_a_conversation_deleted_mid_stream_does_not_break_the_stream(client, fake_llm):
    fake_llm.behavior = Behavior(n_tokens=4, delay=0.02)
    conversation_id = client.post("/conversations", json={"title": "t"}).json["id"]
    response = client.get(f"/text/generate/stream?prompt=hi&conversation_id={conversation_id}")
    pieces = iter(response.response)
    first = next(pieces)

    client.delete(f"/conversations/{conversation_id}")
    rest = list(pieces)
    response.close()

    assert first + b"".join(rest) == b"tok0 tok1 tok2 tok3 "
    assert client.get(f"/conversations/{conversation_id}/messages").status_code == 404


class TestSaveWithRetry:
    def outage(self, failures: int):
        calls = []

        def work(session):
            calls.append(session)
            if len(calls) <= failures:
                raise sa.exc.OperationalError("UPDATE messages", {}, Exception("server closed"))
            return "saved"

        return work, calls

    def test_a_brief_outage_is_retried(self, app):
        work, calls = self.outage(failures=2)

        assert save_with_retry(app, work, {"id": 1}, "exchange 1") == "saved"
        assert len(calls) == 3

    def test_a_long_outage_logs_the_whole_record_at_error(self, app, caplog):
        work, calls = self.outage(failures=99)
        record = {"message_id": 7, "response_content": "the answer the client got"}

        with caplog.at_level(logging.WARNING):
            assert save_with_retry(app, work, record, "exchange 7") is None

        assert len(calls) == app.config["SAVE_ATTEMPTS"]
        (lost,) = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert "LOST exchange 7" in lost.getMessage()
        assert "the answer the client got" in lost.getMessage()


class TestReaper:
    @pytest.fixture
    def rows(self, database, owner_id):
        conversation_id = database.add(Conversation(title="t", model_type="m", owner_id=owner_id))[
            0
        ]
        long_ago = utcnow() - timedelta(hours=1)
        return database.add(
            Message(
                conversation_id=conversation_id,
                prompt_content="killed",
                created_at=long_ago,
                updated_at=long_ago,
            ),
            Message(conversation_id=conversation_id, prompt_content="streaming now"),
            Message(
                conversation_id=conversation_id,
                prompt_content="done",
                is_success=True,
                status_code=200,
                created_at=long_ago,
                updated_at=long_ago,
            ),
        )

    def test_marks_old_in_progress_exchanges_interrupted(self, app, database, rows):
        killed, live, done = rows

        result = app.test_cli_runner().invoke(args=["messages", "reap"])

        assert result.exit_code == 0
        assert "marked 1 interrupted exchange(s)" in result.output
        assert (
            database.get(Message, killed).is_success,
            database.get(Message, killed).status_code,
        ) == (False, 500)
        assert database.get(Message, live).is_success is None
        assert database.get(Message, done).status_code == 200

    def test_older_than_zero_takes_every_exchange_in_progress(self, app, database, rows):
        result = app.test_cli_runner().invoke(args=["messages", "reap", "--older-than", "0"])

        assert "marked 2 interrupted exchange(s)" in result.output
        assert database.scalar("SELECT count(*) FROM messages WHERE is_success IS NULL") == 0


def test_a_conversation_deleted_during_a_non_streaming_reply_is_404(pooled_app, fake_llm):
    fake_llm.behavior = Behavior(n_tokens=5, delay=0.1)
    client = keyed_client(pooled_app, pooled_app.config["TEST_KEY"])
    other = keyed_client(pooled_app, pooled_app.config["TEST_KEY"])
    conversation_id = client.post("/conversations", json={"title": "t"}).json["id"]

    def delete_once_answering():
        assert fake_llm.wait_for(lambda server: server.active_streams == 1)
        assert other.delete(f"/conversations/{conversation_id}").status_code == 204

    deleter = threading.Thread(target=delete_once_answering)
    deleter.start()
    response = client.post(f"/conversations/{conversation_id}/messages", json={"prompt": "hi"})
    deleter.join()

    assert response.status_code == 404
    assert response.json["message"] == (
        f"Conversation {conversation_id} was deleted while its answer was being written."
    )


def test_sse_for_a_conversation_deleted_mid_stream_ends_with_an_error_event(client, fake_llm):
    fake_llm.behavior = Behavior(n_tokens=4, delay=0.02)
    conversation_id = client.post("/conversations", json={"title": "t"}).json["id"]
    response = client.post(
        f"/conversations/{conversation_id}/messages",
        json={"prompt": "hi", "stream": True},
        buffered=False,
    )
    pieces = iter(response.response)
    first = next(pieces)

    client.delete(f"/conversations/{conversation_id}")
    last = list(pieces)[-1]
    response.close()

    assert first.startswith(b"event: delta")
    assert last == (
        b"event: error\ndata: "
        + json.dumps(
            {"code": 503, "message": "The answer was sent but could not be saved."}
        ).encode()
        + b"\n\n"
    )
