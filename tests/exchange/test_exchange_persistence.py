"""Nothing lost: no connection held while streaming, saves retried, interrupted rows reaped."""

from __future__ import annotations

import json
import logging
import threading
from datetime import timedelta

import pytest
import sqlalchemy as sa

from app.errors import Unavailable
from app.extensions import db
from app.models import Conversation, Message, utcnow
from app.services import persistence
from app.services.persistence import save_with_retry
from tests.conftest import keyed_client
from tests.fake_llm import Behavior


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


def test_deleting_a_conversation_mid_stream_is_refused_and_the_stream_is_saved(client, fake_llm):
    fake_llm.behavior = Behavior(n_tokens=4, delay=0.02)
    conversation_id = client.post("/conversations", json={"title": "t"}).json["id"]
    response = client.get(f"/text/generate/stream?prompt=hi&conversation_id={conversation_id}")
    pieces = iter(response.response)
    first = next(pieces)

    refused = client.delete(f"/conversations/{conversation_id}")
    rest = list(pieces)
    response.close()

    (message,) = client.get(f"/conversations/{conversation_id}/messages").json
    assert refused.status_code == 409
    assert refused.json["message"].startswith(f"Exchange {message['id']} is in progress")
    assert first + b"".join(rest) == b"tok0 tok1 tok2 tok3 "
    assert (message["is_success"], message["response_content"]) == (True, "tok0 tok1 tok2 tok3 ")


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

    def test_a_long_outage_spools_the_record_and_logs_no_text(
        self, app, configure, tmp_path, caplog
    ):
        spool = tmp_path / "unsaved.jsonl"
        configure(UNSAVED_EXCHANGES_FILE=str(spool))
        work, calls = self.outage(failures=99)
        record = {"message_id": 7, "response_content": "the answer the client got"}

        with caplog.at_level(logging.WARNING), pytest.raises(Unavailable):
            save_with_retry(app, work, record, "exchange 7")

        assert len(calls) == app.config["SAVE_ATTEMPTS"]
        (lost,) = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert "LOST exchange 7" in lost.getMessage()
        assert "the answer the client got" not in caplog.text
        assert [json.loads(line) for line in spool.read_text().splitlines()] == [record]
        assert spool.stat().st_mode & 0o777 == 0o600

    def test_recover_writes_spooled_endings_back(
        self, app, configure, database, owner_id, tmp_path
    ):
        spool = tmp_path / "unsaved.jsonl"
        configure(UNSAVED_EXCHANGES_FILE=str(spool))
        (conversation_id,) = database.add(
            Conversation(title="t", model_type="m", owner_id=owner_id)
        )
        (message_id,) = database.add(Message(conversation_id=conversation_id, prompt_content="p"))
        ending = {"response_content": "kept", "is_success": True, "outcome": "complete"}
        spool.write_text(json.dumps({"message_id": message_id, **ending}) + "\n")

        result = app.test_cli_runner().invoke(args=["messages", "recover"])

        assert result.exit_code == 0
        assert "recovered 1 record(s); 0 kept" in result.output
        saved = database.get(Message, message_id)
        assert (saved.response_content, saved.is_success, saved.outcome) == (
            "kept",
            True,
            "complete",
        )
        assert not spool.exists()


class TestSpool:
    """The spool file (issue 20 item 12) and `flask messages recover` (issue 21 item 4)."""

    @pytest.fixture
    def spool(self, configure, tmp_path):
        path = tmp_path / "unsaved.jsonl"
        configure(UNSAVED_EXCHANGES_FILE=str(path))
        return path

    @pytest.fixture
    def in_progress(self, database, owner_id):
        (conversation_id,) = database.add(Conversation(model_type="m", owner_id=owner_id))
        (message_id,) = database.add(Message(conversation_id=conversation_id, prompt_content="p"))
        return conversation_id, message_id

    def lost(self, app, record):
        def outage(_session):
            raise sa.exc.OperationalError("UPDATE messages", {}, Exception("server closed"))

        with pytest.raises(Unavailable):
            save_with_retry(app, outage, record, "exchange 1")

    def recover(self, app):
        return app.test_cli_runner().invoke(args=["messages", "recover"])

    def test_an_existing_spool_is_made_owner_only(self, app, spool):
        spool.write_text("")
        spool.chmod(0o644)

        self.lost(app, {"message_id": 1, "response_content": "secret"})

        assert spool.stat().st_mode & 0o777 == 0o600
        assert json.loads(spool.read_text()) == {"message_id": 1, "response_content": "secret"}

    def test_a_symlink_at_the_spools_path_is_not_followed(self, app, spool, tmp_path, caplog):
        target = tmp_path / "elsewhere.txt"
        target.write_text("")
        target.chmod(0o644)
        spool.symlink_to(target)

        with caplog.at_level(logging.ERROR):
            self.lost(app, {"message_id": 1, "response_content": "secret"})

        assert target.read_text() == ""
        assert target.stat().st_mode & 0o777 == 0o644
        assert "the spool file could not be written either" in caplog.text

    def test_recover_refuses_a_symlink_at_the_spools_path(self, app, spool, tmp_path):
        target = tmp_path / "elsewhere.jsonl"
        target.write_text(json.dumps({"message_id": 1, "outcome": "complete"}) + "\n")
        spool.symlink_to(target)

        result = self.recover(app)

        assert result.exit_code == 1
        assert "is a symbolic link: not followed, not recovered" in result.output
        assert spool.is_symlink()
        assert json.loads(target.read_text()) == {"message_id": 1, "outcome": "complete"}

    def test_recover_writes_back_titles_and_endings_alike(
        self, app, spool, database, in_progress, client
    ):
        conversation_id, message_id = in_progress
        ending = {"message_id": message_id, "response_content": "kept", "outcome": "complete"}
        spool.write_text(
            json.dumps({**ending, "is_success": True})
            + "\n"
            # A title as this release spools it, with its call's usage; and as before it.
            + json.dumps(
                {
                    "kind": "title",
                    "conversation_id": conversation_id,
                    "title": "Trip",
                    "model": "title-m",
                    "day": utcnow().date().isoformat(),
                    "tokens": [3, 2, 5],
                    "called": True,
                }
            )
            + "\n"
            + json.dumps({"conversation_id": conversation_id, "title": "Older"})
            + "\n"
        )

        result = self.recover(app)

        assert result.exit_code == 0, result.output
        assert "recovered 3 record(s); 0 kept" in result.output
        assert database.get(Message, message_id).response_content == "kept"
        assert database.get(Conversation, conversation_id).title == "Trip"
        by_model = {row["model"]: row for row in client.get("/usage?group_by=model").json["rows"]}
        assert by_model["title-m"]["title_tokens"] == 5
        assert not spool.exists()

    def test_a_record_it_cannot_apply_is_kept_and_the_rest_written(
        self, app, spool, database, in_progress
    ):
        _, message_id = in_progress
        unknown = json.dumps({"kind": "from-a-later-release", "x": 1})
        spool.write_text(
            "not json\n"
            + unknown
            + "\n"
            + json.dumps({"message_id": message_id, "outcome": "complete", "is_success": True})
            + "\n"
        )

        result = self.recover(app)

        assert result.exit_code == 1
        assert "recovered 1 record(s); 2 kept" in result.output
        assert spool.read_text().splitlines() == ["not json", unknown]
        assert database.get(Message, message_id).outcome == "complete"

    def test_an_ending_spooled_while_recover_runs_is_not_lost(
        self, app, spool, database, in_progress, monkeypatch
    ):
        _, message_id = in_progress
        spool.write_text(json.dumps({"message_id": message_id, "outcome": "complete"}) + "\n")
        late = {"message_id": 999, "response_content": "appended meanwhile"}
        record_ending = persistence.record_ending

        def meanwhile(session, uid, values):
            # The service loses another ending to the outage while recover is at work.
            self.lost(app, late)
            return record_ending(session, uid, values)

        monkeypatch.setattr(persistence, "record_ending", meanwhile)

        result = self.recover(app)

        assert "recovered 1 record(s); 0 kept" in result.output
        assert [json.loads(line) for line in spool.read_text().splitlines()] == [late]


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
                heartbeat_at=long_ago,
            ),
            Message(
                conversation_id=conversation_id,
                prompt_content="streaming for an hour, heartbeat fresh",
                created_at=long_ago,
                heartbeat_at=utcnow(),
            ),
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
        reaped = database.get(Message, killed)
        assert (reaped.is_success, reaped.status_code, reaped.outcome) == (
            False,
            500,
            "interrupted",
        )
        assert database.get(Message, live).is_success is None
        assert database.get(Message, done).status_code == 200

    def test_older_than_zero_takes_every_exchange_in_progress(self, app, database, rows):
        result = app.test_cli_runner().invoke(args=["messages", "reap", "--older-than", "0"])

        assert "marked 2 interrupted exchange(s)" in result.output
        assert database.scalar("SELECT count(*) FROM messages WHERE is_success IS NULL") == 0


def test_deleting_a_conversation_during_a_non_streaming_reply_is_refused(pooled_app, fake_llm):
    fake_llm.behavior = Behavior(n_tokens=5, delay=0.1)
    client = keyed_client(pooled_app, pooled_app.config["TEST_KEY"])
    other = keyed_client(pooled_app, pooled_app.config["TEST_KEY"])
    conversation_id = client.post("/conversations", json={"title": "t"}).json["id"]
    refusals = []

    def delete_once_answering():
        assert fake_llm.wait_for(lambda server: server.active_streams == 1)
        refusals.append(other.delete(f"/conversations/{conversation_id}"))

    deleter = threading.Thread(target=delete_once_answering)
    deleter.start()
    response = client.post(f"/conversations/{conversation_id}/messages", json={"prompt": "hi"})
    deleter.join()

    assert response.status_code == 201
    assert refusals[0].status_code == 409
    assert refusals[0].json["message"].startswith(f"Exchange {response.json['id']} is in progress")


def test_sse_for_a_conversation_deleted_mid_stream_ends_with_an_error_event(
    client, fake_llm, database
):
    # Outside the API, which refuses the delete while the exchange is in progress.
    fake_llm.behavior = Behavior(n_tokens=4, delay=0.02)
    conversation_id = client.post("/conversations", json={"title": "t"}).json["id"]
    response = client.post(
        f"/conversations/{conversation_id}/messages",
        json={"prompt": "hi", "stream": True},
        buffered=False,
    )
    pieces = iter(response.response)
    first = next(pieces)

    database.execute("DELETE FROM conversations WHERE id = :id", id=conversation_id)
    last = list(pieces)[-1]
    response.close()

    assert first.startswith(b"event: delta")
    message = f"Conversation {conversation_id} was deleted while its answer was being written."
    assert last == (
        b"event: error\ndata: " + json.dumps({"code": 404, "message": message}).encode() + b"\n\n"
    )
