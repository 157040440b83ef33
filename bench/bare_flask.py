"""The baseline: bare Flask (no framework, no ORM, no schema, no auth), served like the app,
on the endpoints bench/crud.py drives: one SQL statement each, rows to JSON by hand.

    DATABASE_URL=... BENCH_OWNER_ID=1 gunicorn -c gunicorn.conf.py bench.bare_flask:app

Get one is the yardstick of issue 25 (target: convstore's get one >= 0.9x this); it reads
the columns it always has (not metadata), so its figures stay comparable with earlier runs.
"""

from __future__ import annotations

import json
import os
from typing import Any

from flask import Flask, abort, jsonify, request
from sqlalchemy import RowMapping, create_engine, text

from app.config import normalize_database_url

app = Flask(__name__)
engine = create_engine(normalize_database_url(os.environ["DATABASE_URL"]), pool_pre_ping=True)
OWNER_ID = int(os.environ.get("BENCH_OWNER_ID") or 1)
COLUMNS = "id, owner_id, title, model_type, created_at, updated_at"
QUERY = text(f"SELECT {COLUMNS} FROM conversations WHERE id = :id")
LIST = text(f"SELECT {COLUMNS} FROM conversations ORDER BY id LIMIT :take OFFSET :skip")
MESSAGES = text(
    "SELECT id, conversation_id, prompt_content, response_content, prompt_tokens, "
    "response_tokens, total_tokens, is_success, status_code, created_at, updated_at "
    "FROM messages WHERE conversation_id = :id ORDER BY id LIMIT :take OFFSET :skip"
)
CREATE = text(
    "INSERT INTO conversations (owner_id, title, model_type, created_at, updated_at) "
    f"VALUES (:owner, :title, :model_type, now(), now()) RETURNING {COLUMNS}"
)
UPDATE = text(
    "UPDATE conversations SET title = :title, model_type = :model_type, "
    f"metadata = '{{}}', updated_at = now() WHERE id = :id RETURNING {COLUMNS}"
)


def _row(row: RowMapping) -> dict[str, Any]:
    return {
        **row,
        "created_at": row["created_at"].isoformat(),
        "updated_at": row["updated_at"].isoformat(),
    }


def _page() -> dict[str, int]:
    return {"skip": request.args.get("skip", 0, int), "take": request.args.get("take", 100, int)}


@app.get("/conversations/<int:conversation_id>")
def get_conversation(conversation_id: int):
    with engine.connect() as connection:
        row = connection.execute(QUERY, {"id": conversation_id}).mappings().one_or_none()
    if row is None:
        abort(404)
    return jsonify(_row(row))


@app.get("/conversations")
def list_conversations():
    with engine.connect() as connection:
        rows = connection.execute(LIST, _page()).mappings().all()
    return jsonify([_row(row) for row in rows])


@app.get("/conversations/<int:conversation_id>/messages")
def list_messages(conversation_id: int):
    with engine.connect() as connection:
        rows = connection.execute(MESSAGES, {"id": conversation_id, **_page()}).mappings().all()
    return jsonify([_row(row) for row in rows])


@app.post("/conversations")
def create_conversation():
    body = json.loads(request.get_data())
    values = {"owner": OWNER_ID, "title": body["title"], "model_type": body["model_type"]}
    with engine.begin() as connection:
        row = connection.execute(CREATE, values).mappings().one()
    return jsonify(_row(row)), 201


@app.put("/conversations/<int:conversation_id>")
def update_conversation(conversation_id: int):
    body = json.loads(request.get_data())
    values = {"id": conversation_id, "title": body["title"], "model_type": body["model_type"]}
    with engine.begin() as connection:
        row = connection.execute(UPDATE, values).mappings().one_or_none()
    if row is None:
        abort(404)
    return jsonify(_row(row)), 202


@app.get("/readyz")
def ready():
    return {"status": "ok"}
