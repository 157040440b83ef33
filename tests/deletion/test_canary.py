"""The canary: a unique string planted in everything a delete covers (a prompt, an answer, its
reasoning and tool call, a tool result, instructions, request metadata, a feedback comment;
and, for a conversation, its title and metadata), then, after each kind of delete, found
nowhere: no endpoint, no table or index, no byte of SQLite's file or WAL, no log record, no
spool file. Both engines, each test on a database of its own."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from app.exchange.responses_ids import parse_item_id
from app.extensions import db
from app.repositories.erasure import checkpoint_wal
from app.services.persistence import spool_path
from tests.conftest import keyed_client
from tests.deletion.helpers import message_id, respond
from tests.fake_llm import Behavior, FakeLLMServer

CANARY = "zqxcanary7f3"  # one token for every full-text parser; stemmed to itself


@dataclass(frozen=True)
class Planted:
    """A conversation: a first response that calls a tool (``first``), the response the
    canary is in (``target``: the tool's result, its answer, ...), one that continues it
    (``later``), and every item id the conversation listed before the delete."""

    conversation: int
    first: int
    target: int
    later: int
    item_ids: list[str]


@dataclass(frozen=True)
class Kind:
    """A kind of delete: whether it covers the conversation's own text (title, metadata),
    and the requests that make it."""

    covers_conversation: bool
    delete: Callable[[FlaskClient, Planted], list[int]]


def delete_all_items(client: FlaskClient, planted: Planted) -> list[int]:
    """Every item of the target, one delete each (the last makes it a tombstone)."""
    own = [i for i in planted.item_ids if parse_item_id(i)[1] == planted.target]
    assert len(own) == 5, own  # a tool result, a prompt; reasoning, an answer, a tool call
    return [
        client.delete(f"/v1/conversations/conv_{planted.conversation}/items/{i}").status_code
        for i in own
    ]


KINDS = {
    "rest conversation": Kind(
        True, lambda c, p: [c.delete(f"/conversations/{p.conversation}").status_code]
    ),
    "v1 conversation": Kind(
        True, lambda c, p: [c.delete(f"/v1/conversations/conv_{p.conversation}").status_code]
    ),
    "rest exchange": Kind(
        False,
        lambda c, p: [c.delete(f"/conversations/{p.conversation}/messages/{p.target}").status_code],
    ),
    "v1 response": Kind(
        False, lambda c, p: [c.delete(f"/v1/responses/resp_{p.target}").status_code]
    ),
    "v1 items": Kind(False, delete_all_items),
}
SUCCESS = {204, 200}

TOOL = {
    "type": "function",
    "name": "lookup",
    "description": f"Look things up {CANARY}",
    "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
}


def plant(client: FlaskClient, fake_llm: FakeLLMServer, kind: Kind) -> Planted:
    own = f"{CANARY} " if kind.covers_conversation else ""
    conversation = client.post(
        "/conversations", json={"title": f"title {own}", "metadata": {"note": f"note {own}"}}
    ).json["id"]
    where = {"conversation": f"conv_{conversation}"}
    fake_llm.behavior = Behavior(
        tokens=[], tool_calls=[{"id": "call_1", "name": "lookup", "arguments": '{"q": "x"}'}]
    )
    first = respond(client, input="look it up", tools=[{**TOOL, "description": "x"}], **where)
    fake_llm.behavior = Behavior(
        reasoning=[f"thinking {CANARY}"],
        tokens=[f"answer {CANARY}"],
        tool_calls=[{"id": "call_2", "name": "lookup", "arguments": json.dumps({"q": CANARY})}],
    )
    target = respond(
        client,
        input=[
            {"type": "function_call_output", "call_id": "call_1", "output": f"result {CANARY}"},
            {"role": "user", "content": f"prompt {CANARY}"},
        ],
        instructions=f"instructions {CANARY}",
        metadata={"note": CANARY},
        tools=[TOOL],
        **where,
    )
    target_id = message_id(target["id"])
    feedback = client.put(
        f"/conversations/{conversation}/messages/{target_id}/feedback",
        json={"rating": -1, "comment": f"comment {CANARY}"},
    )
    assert feedback.status_code == 200, feedback.json
    fake_llm.behavior = Behavior(tokens=["later answer"])
    later = respond(client, input="later question", **where)
    listed = client.get(f"/v1/conversations/conv_{conversation}/items", query_string={"limit": 100})
    return Planted(
        conversation,
        message_id(first["id"]),
        target_id,
        message_id(later["id"]),
        [item["id"] for item in listed.json["data"]],
    )


# ----------------------------------------------------------------------- where to look
def endpoints(client: FlaskClient, planted: Planted) -> dict[str, str]:
    """Every read that could show the canary, by what it is: its body."""
    c = planted.conversation
    paths = [
        "/conversations",
        f"/conversations/{c}",
        f"/conversations/{c}/messages",
        f"/conversations/{c}/messages?branch=all",
        f"/search?q={CANARY}",
        "/search?q=title",
        f"/conversations/{c}/export",
        f"/conversations/{c}/export?format=markdown",
        "/export",
        f"/v1/conversations/conv_{c}",
        f"/v1/conversations/conv_{c}/items?limit=100",
        *(f"/v1/conversations/conv_{c}/items/{item}" for item in planted.item_ids),
    ]
    for uid in (planted.first, planted.target, planted.later):
        paths += [f"/v1/responses/resp_{uid}", f"/v1/responses/resp_{uid}/input_items"]
    return {path: client.get(path).get_data(as_text=True) for path in paths}


def tables(app: Flask) -> dict[str, str]:
    """Every text, JSON and full-text column of every table (PostgreSQL), or the bytes of
    the database file and its WAL after a checkpoint (SQLite): where the canary is."""
    with app.app_context():
        engine = db.engine
    if engine.dialect.name == "sqlite":
        checkpoint_wal(engine)
        path = Path(engine.url.database or "")
        files = [path, path.with_name(path.name + "-wal")]
        return {
            str(f.name): CANARY for f in files if f.exists() and CANARY.encode() in f.read_bytes()
        }
    found = {}
    with engine.connect() as connection:
        columns = connection.execute(
            sa.text(
                "SELECT table_name, column_name FROM information_schema.columns"
                " WHERE table_schema = 'public' AND data_type IN"
                " ('text', 'character varying', 'character', 'json', 'jsonb', 'tsvector')"
            )
        ).all()
        assert len(columns) > 20, columns  # the query finds the schema's columns
        for table, column in columns:
            hits = connection.scalar(
                sa.text(f'SELECT count(*) FROM "{table}" WHERE "{column}"::text LIKE :canary'),
                {"canary": f"%{CANARY}%"},
            )
            if hits:
                found[f"{table}.{column}"] = f"{hits} row(s)"
    return found


def logs(records: list[logging.LogRecord]) -> dict[str, str]:
    return {
        f"{record.name}:{record.levelname}": record.getMessage()[:200]
        for record in records
        if CANARY in record.getMessage() or CANARY in repr(record.__dict__)
    }


def spool(app: Flask) -> dict[str, str]:
    path = spool_path(app)
    return {str(path): "canary"} if path.exists() and CANARY in path.read_text() else {}


def found(client: FlaskClient, app: Flask, planted: Planted, records: list) -> dict:
    return {
        "endpoints": {
            path: "body" for path, body in endpoints(client, planted).items() if CANARY in body
        },
        "tables": tables(app),
        "logs": logs(records),
        "spool": spool(app),
    }


# --------------------------------------------------------------------------- the test
@pytest.mark.parametrize("kind", list(KINDS))
def test_after_each_kind_of_delete_the_canary_is_found_nowhere(pooled_app, fake_llm, caplog, kind):
    caplog.set_level(logging.DEBUG)
    client = keyed_client(pooled_app, pooled_app.config["TEST_KEY"])
    planted = plant(client, fake_llm, KINDS[kind])
    before = found(client, pooled_app, planted, caplog.records)
    # Planted where it is looked for (logs and the spool hold none at any time).
    assert before["endpoints"], before
    assert before["tables"], before

    statuses = KINDS[kind].delete(client, planted)

    assert set(statuses) <= SUCCESS, statuses
    after = found(client, pooled_app, planted, caplog.records)
    leaks = {place: where for place, where in after.items() if where}
    assert leaks == {}


@pytest.mark.parametrize("kind", ["rest exchange", "v1 response", "v1 items"])
def test_what_a_delete_of_one_exchange_does_not_cover_stays(pooled_app, fake_llm, kind):
    client = keyed_client(pooled_app, pooled_app.config["TEST_KEY"])
    planted = plant(client, fake_llm, KINDS[kind])

    KINDS[kind].delete(client, planted)

    kept = client.get(f"/conversations/{planted.conversation}/messages?branch=all").json
    ids = [m["id"] for m in kept if not m["deleted"]]
    assert planted.first in ids
    assert (planted.later in ids) is (kind != "rest exchange")  # REST takes the branch below
