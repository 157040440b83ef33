"""What the deletion tests share: exchanges and responses made through the API, what the LLM
was sent, and the counters' truth."""

from __future__ import annotations

import json

import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from app.extensions import db
from tests.fake_llm import FakeLLMServer


def branch(client: FlaskClient, conversation_id: int, *prompts: str) -> list[int]:
    """Post ``prompts`` one after the other (each after the last): the exchanges' ids."""
    ids = []
    for prompt in prompts:
        response = client.post(
            f"/conversations/{conversation_id}/messages", json={"prompt": prompt}
        )
        assert response.status_code == 201, response.json
        ids.append(response.json["id"])
    return ids


def counters(app: Flask, conversation_id: int) -> dict[str, object]:
    """The conversation's counters beside what its rows say."""
    with app.app_context():
        row = db.session.execute(
            sa.text("SELECT message_count, current_message_id FROM conversations WHERE id = :id"),
            {"id": conversation_id},
        ).one()
        ids = db.session.scalars(
            sa.text("SELECT id FROM messages WHERE conversation_id = :id ORDER BY id"),
            {"id": conversation_id},
        ).all()
    return {"message_count": row[0], "current": row[1], "rows": len(ids), "ids": list(ids)}


def assert_counters_agree(app: Flask, conversation_id: int) -> dict[str, object]:
    """message_count is the rows' count and the current exchange one of them (or none)."""
    found = counters(app, conversation_id)
    assert found["message_count"] == found["rows"], found
    assert found["current"] in [*found["ids"], None], found
    if found["ids"]:
        assert found["current"] is not None, found
    return found


MODEL = "fake-model"


def respond(client: FlaskClient, **body: object) -> dict:
    """A response made through POST /v1/responses (not streamed): its JSON."""
    response = client.post("/v1/responses", json={"model": MODEL, "input": "hi", **body})
    assert response.status_code == 200, response.json
    return response.json


def message_id(response_id: str) -> int:
    return int(response_id.removeprefix("resp_"))


def last_sent(fake_llm: FakeLLMServer) -> str:
    """What the last chat request the fake LLM received sent as messages, as JSON text."""
    chats = [r for r in fake_llm.requests if r.path.endswith("/chat/completions")]
    return json.dumps(chats[-1].body["messages"], ensure_ascii=False)
