"""Deletes: one request deleting a conversation of many exchanges, and a small delete in a
large database (SQLite compacts its whole full-text index after every delete).

Seeds, with Core INSERTs, ``--others`` ended exchanges in one conversation and ``--exchanges``
in another, each with a 40-word prompt and an 80-word answer; times ``DELETE
/conversations/{id}`` of the second, then of three one-exchange conversations, in-process
(Flask's test client) on the engine asked for.

    .venv/bin/python -m bench.deletes --engine sqlite --exchanges 10000 --others 200000
    .venv/bin/python -m bench.deletes --engine postgresql
"""

from __future__ import annotations

import argparse
import random
import string
import sys
import time
from pathlib import Path

import flask_migrate
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app import create_app  # noqa: E402
from app.extensions import db  # noqa: E402
from app.models import Conversation, Message, utcnow  # noqa: E402
from app.services.users import create_user  # noqa: E402
from bench.common import create_database, drop_database  # noqa: E402
from tests.conftest import keyed_client  # noqa: E402

BATCH = 5000


def seed(owner_id: int, exchanges: int, words: list[str]) -> int:
    """A conversation of ``exchanges`` ended exchanges; its id."""
    conversation = Conversation(title="bench", model_type="m", owner_id=owner_id)
    db.session.add(conversation)
    db.session.commit()
    now = utcnow()
    for start in range(0, exchanges, BATCH):
        rows = [
            {
                "conversation_id": conversation.id,
                "prompt_content": " ".join(random.choices(words, k=40)),
                "response_content": " ".join(random.choices(words, k=80)),
                "is_success": True,
                "outcome": "complete",
                "status_code": 200,
                "model": "m",
                "prompt_tokens": 40,
                "response_tokens": 60,
                "total_tokens": 100,
                "ttft_ms": 100,
                "duration_ms": 900,
                "created_at": now,
                "updated_at": now,
            }
            for _ in range(min(BATCH, exchanges - start))
        ]
        db.session.execute(sa.insert(Message), rows)
        db.session.commit()
    conversation.message_count = exchanges
    db.session.commit()
    return conversation.id


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=["sqlite", "postgresql"], default="postgresql")
    parser.add_argument("--exchanges", type=int, default=10_000)
    parser.add_argument("--others", type=int, default=0)
    args = parser.parse_args(argv)

    url = create_database(args.engine)
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "RATELIMIT_ENABLED": False})
    words = ["".join(random.choices(string.ascii_lowercase, k=random.randint(3, 9)))
             for _ in range(5000)]  # fmt: skip
    try:
        with app.app_context():
            flask_migrate.upgrade()
            key = create_user("bench").secret
            owner_id = db.session.scalar(sa.text("SELECT id FROM users WHERE name = 'bench'"))
            if args.others:
                seed(owner_id, args.others, words)
            big = seed(owner_id, args.exchanges, words)
            small = [seed(owner_id, 1, words) for _ in range(3)]
        client = keyed_client(app, key)
        client.get("/conversations")  # the key, cached
        for label, ids in (("large", [big]), ("one-exchange", small)):
            for uid in ids:
                started = time.perf_counter()
                status = client.delete(f"/conversations/{uid}").status_code
                elapsed = time.perf_counter() - started
                print(f"{args.engine}: delete {label} conversation: {status} in {elapsed:.3f} s")
    finally:
        with app.app_context():
            db.engine.dispose()
        drop_database(url)


if __name__ == "__main__":
    main()
