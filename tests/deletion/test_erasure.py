"""Nothing of a deleted conversation or exchange is left in the bytes of SQLite's file or WAL:
secure_delete zeroes freed cells, FTS5's segments are compacted, the WAL is truncated."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
from flask import Flask

from app.extensions import db
from app.models.unmanaged import FTS_PROMPTS, FTS_RESPONSES, FTS_TITLES
from app.repositories.erasure import (
    CHECKPOINT_AFTER_COMMIT,
    checkpoint_wal,
    compact_search_index,
    erase_in_place,
)
from tests.conftest import keyed_client
from tests.deletion.helpers import branch
from tests.fake_llm import Behavior

CANARY = "zqxcanary7f3"


@pytest.fixture
def backend() -> str:
    return "sqlite"  # PostgreSQL's dead tuples wait for VACUUM (docs/deletion.md)


def files(app: Flask) -> tuple[Path, Path]:
    path = Path(app.config["SQLALCHEMY_DATABASE_URI"].removeprefix("sqlite:///"))
    return path, path.with_name(path.name + "-wal")


def stored_bytes(app: Flask) -> bytes:
    """The database file's bytes and its WAL's, as anyone with a copy of them would read."""
    return b"".join(path.read_bytes() for path in files(app) if path.exists())


def fts_blocks(app: Flask) -> bytes:
    with app.app_context():
        return b"".join(
            bytes(block)
            for fts in (FTS_TITLES, FTS_PROMPTS, FTS_RESPONSES)
            for block in db.session.scalars(sa.text(f"SELECT block FROM {fts}_data"))
        )


def test_every_connection_zeroes_what_it_deletes(pooled_app):
    with pooled_app.app_context():
        assert db.session.scalar(sa.text("PRAGMA secure_delete")) == 1


def test_a_deleted_conversation_leaves_no_byte_of_its_text(pooled_app, fake_llm):
    client = keyed_client(pooled_app, pooled_app.config["TEST_KEY"])
    fake_llm.behavior = Behavior(tokens=[f"answer {CANARY}"])
    conversation_id = client.post(
        "/conversations", json={"title": f"title {CANARY}", "metadata": {"k": CANARY}}
    ).json["id"]
    (message_id,) = branch(client, conversation_id, f"prompt {CANARY}")
    client.put(
        f"/conversations/{conversation_id}/messages/{message_id}/feedback",
        json={"rating": 1, "comment": f"comment {CANARY}"},
    )
    assert CANARY.encode() in stored_bytes(pooled_app)
    assert CANARY.encode() in fts_blocks(pooled_app)

    assert client.delete(f"/conversations/{conversation_id}").status_code == 204

    assert CANARY.encode() not in fts_blocks(pooled_app)
    assert CANARY.encode() not in stored_bytes(pooled_app)
    assert files(pooled_app)[1].stat().st_size == 0  # the WAL, checkpointed and truncated


def test_a_deleted_exchange_leaves_no_byte_of_its_text_and_the_others_theirs(pooled_app, fake_llm):
    client = keyed_client(pooled_app, pooled_app.config["TEST_KEY"])
    conversation_id = client.post("/conversations", json={"title": "t"}).json["id"]
    fake_llm.behavior = Behavior(tokens=["answer keptword"])
    branch(client, conversation_id, "prompt keptword")
    fake_llm.behavior = Behavior(tokens=[f"answer {CANARY}"])
    (message_id,) = branch(client, conversation_id, f"prompt {CANARY}")
    client.put(
        f"/conversations/{conversation_id}/messages/{message_id}/feedback",
        json={"rating": -1, "comment": f"comment {CANARY}"},
    )
    assert CANARY.encode() in stored_bytes(pooled_app)

    response = client.delete(f"/conversations/{conversation_id}/messages/{message_id}")

    assert response.status_code == 204
    assert CANARY.encode() not in stored_bytes(pooled_app)
    assert b"keptword" in fts_blocks(pooled_app)
    assert len(client.get("/search", query_string={"q": "keptword"}).json["results"]) == 2
    assert client.get("/search", query_string={"q": CANARY}).json["results"] == []


def test_a_checkpoint_held_up_by_a_reader_gives_up_without_failing_the_delete(pooled_app, fake_llm):
    client = keyed_client(pooled_app, pooled_app.config["TEST_KEY"])
    conversation_id = client.post("/conversations", json={"title": "t"}).json["id"]
    branch(client, conversation_id, "a")
    with pooled_app.app_context():
        engine = db.engine
    with engine.connect() as reader:
        # A read transaction keeps its snapshot, and so the WAL frames after it, until it ends.
        reader.execute(sa.text("SELECT count(*) FROM messages")).all()

        assert client.delete(f"/conversations/{conversation_id}").status_code == 204
        assert files(pooled_app)[1].stat().st_size > 0
        assert checkpoint_wal(engine) is False

    assert checkpoint_wal(engine) is True
    assert files(pooled_app)[1].stat().st_size == 0


class RecordingSession:
    """Records the statements run on it, as SQLite of ``version`` would be sent them."""

    def __init__(self, version: tuple[int, int, int]) -> None:
        self.statements: list[str] = []
        self.info: dict[str, object] = {}
        dbapi = SimpleNamespace(sqlite_version_info=version)
        self.bind = SimpleNamespace(dialect=SimpleNamespace(name="sqlite", dbapi=dbapi))

    def get_bind(self) -> SimpleNamespace:
        return self.bind

    def execute(self, statement: object) -> None:
        self.statements.append(str(statement))


@pytest.mark.parametrize(
    ("version", "before", "after"),
    [
        ((3, 40, 1), [], ["optimize"] * 3),
        ((3, 42, 0), ["secure-delete"] * 3, []),
    ],
)
def test_from_sqlite_3_42_fts5_erases_in_place_instead_of_merging(version, before, after):
    session = RecordingSession(version)

    erase_in_place(session)  # type: ignore[arg-type]
    begun = [s.split("'")[1] for s in session.statements]
    compact_search_index(session)  # type: ignore[arg-type]
    ended = [s.split("'")[1] for s in session.statements[len(begun) :]]

    assert (begun, ended) == (before, after)
    assert session.info[CHECKPOINT_AFTER_COMMIT] is True
