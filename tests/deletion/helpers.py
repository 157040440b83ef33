"""What the deletion tests share: a branch made through the API, and the counters' truth."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from app.extensions import db


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
