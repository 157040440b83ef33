"""Purges on several workers at once, truly concurrent on PostgreSQL: each conversation is
deleted by exactly one of them, none fails, none waits on another or on a request holding a
conversation's row."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
import sqlalchemy as sa
from flask import Flask

from app.extensions import db
from app.services.purge import PurgeReport, purge_expired
from tests.conftest import keyed_client
from tests.deletion.helpers import branch
from tests.retention.helpers import iso, purged_ids

CONVERSATIONS = 40


@pytest.fixture
def backend() -> str:
    return "postgresql"  # SQLite's write transactions cannot overlap at all


def expired_conversations(pooled_app: Flask, wall_clock, count: int) -> set[int]:
    """``count`` conversations of one exchange each, expired by their own expires_at."""
    client = keyed_client(pooled_app, pooled_app.config["TEST_KEY"])
    expires = iso(wall_clock.now + timedelta(hours=1))
    ids = set()
    for n in range(count):
        uid = client.post("/conversations", json={"title": f"t{n}", "expires_at": expires}).json[
            "id"
        ]
        branch(client, uid, f"p{n}")
        ids.add(uid)
    wall_clock.advance(2 * 3600)
    return ids


def left(pooled_app: Flask) -> list[int]:
    with pooled_app.app_context():
        return list(db.session.scalars(sa.text("SELECT id FROM conversations ORDER BY id")))


def test_two_purges_at_once_delete_each_conversation_once(pooled_app, fake_llm, wall_clock):
    ids = expired_conversations(pooled_app, wall_clock, CONVERSATIONS)
    start = threading.Barrier(2)
    reports: list[PurgeReport | None] = [None, None]
    errors: list[BaseException] = []

    def run(n: int) -> None:
        try:
            with pooled_app.app_context():
                start.wait()
                reports[n] = purge_expired()
        except BaseException as error:  # reported below, not lost in the thread
            errors.append(error)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert errors == []
    first, second = (purged_ids(report) for report in reports)  # type: ignore[arg-type]
    assert first & second == set()
    assert first | second == ids
    assert left(pooled_app) == []
    with pooled_app.app_context():
        carried = db.session.scalar(sa.text("SELECT sum(calls) FROM usage_removed"))
        spent = db.session.scalar(sa.text("SELECT sum(calls) FROM usage_daily"))
    # Each exchange's usage carried once: no conversation was deleted twice.
    assert carried == spent == CONVERSATIONS


def test_a_conversation_a_request_holds_is_left_without_waiting(pooled_app, fake_llm, wall_clock):
    ids = expired_conversations(pooled_app, wall_clock, 3)
    held = min(ids)
    with pooled_app.app_context():
        engine = db.engine

    with engine.connect() as request:
        # A request writing to it holds its row until it commits.
        request.execute(
            sa.text("SELECT id FROM conversations WHERE id = :id FOR UPDATE"), {"id": held}
        )
        began = time.monotonic()
        with pooled_app.app_context():
            report = purge_expired()
        took = time.monotonic() - began
        request.commit()

    assert purged_ids(report) == ids - {held}
    assert report.in_progress == []
    assert took < 5
    with pooled_app.app_context():
        assert purged_ids(purge_expired()) == {held}
