"""The baseline: a bare Flask get-by-id (no framework, no ORM, no schema), served like the app.

gunicorn -c gunicorn.conf.py bench.bare_flask:app      (DATABASE_URL set)
"""

from __future__ import annotations

import os

from flask import Flask, abort, jsonify
from sqlalchemy import create_engine, text

from app.config import normalize_database_url

app = Flask(__name__)
engine = create_engine(normalize_database_url(os.environ["DATABASE_URL"]), pool_pre_ping=True)
QUERY = text(
    "SELECT id, owner_id, title, model_type, created_at, updated_at FROM conversations "
    "WHERE id = :id"
)


@app.get("/conversations/<int:conversation_id>")
def get_conversation(conversation_id: int):
    with engine.connect() as connection:
        row = connection.execute(QUERY, {"id": conversation_id}).mappings().one_or_none()
    if row is None:
        abort(404)
    return jsonify(
        {
            **row,
            "created_at": row["created_at"].isoformat(),
            "updated_at": row["updated_at"].isoformat(),
        }
    )


@app.get("/readyz")
def ready():
    return {"status": "ok"}
