"""An export streams: the server's memory stays flat while it sends 100,000 messages."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import sqlalchemy as sa

from bench.common import rss_mb
from tests.procfile import WebProcess, create_user, deployment_env, release

CONVERSATIONS = 100
MESSAGES_EACH = 1_000  # 100,000 messages in all
# About 80 MB of NDJSON: holding the export in memory would break the bound several times.
ANSWER = "An answer long enough to weigh something in the export. " * 10
LIMIT_MIB = 50


def seed(url: str, owner_name: str) -> None:
    """Insert the rows in bulk (executemany), not through the API."""
    now = datetime.now(UTC)
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        owner = connection.scalar(
            sa.text("SELECT id FROM users WHERE name = :n"), {"n": owner_name}
        )
        connection.execute(
            sa.text(
                "INSERT INTO conversations (owner_id, title, model_type, metadata, created_at,"
                " updated_at) VALUES (:owner, :title, 'm', '{}', :t, :t)"
            ),
            [{"owner": owner, "title": f"c{n}", "t": now} for n in range(CONVERSATIONS)],
        )
        ids = connection.execute(sa.text("SELECT id FROM conversations ORDER BY id")).scalars()
        connection.execute(
            sa.text(
                "INSERT INTO messages (conversation_id, prompt_content, response_content,"
                " is_success, status_code, created_at, updated_at)"
                " VALUES (:c, :p, :r, true, 200, :t, :t)"
            ),
            [
                {"c": cid, "p": f"prompt {n}", "r": ANSWER, "t": now}
                for cid in list(ids)
                for n in range(MESSAGES_EACH)
            ],
        )
    engine.dispose()


def test_exporting_100k_messages_keeps_memory_flat(backend, database_factory, tmp_path):
    url = database_factory(backend)
    env = deployment_env(url, "http://127.0.0.1:9", WEB_CONCURRENCY="1")
    release(env)
    key = create_user(env, "big")
    seed(url, "big")

    with WebProcess(env, tmp_path / "gunicorn.log") as web:
        web.headers = {"Authorization": f"Bearer {key}"}
        # Warm up: the first export loads code and fills pools, which is not growth.
        status, _ = web.request("GET", "/conversations/1/export?format=markdown")
        assert status == 200
        baseline = rss_mb(web.process.pid)

        connection = web.connection(timeout=120)
        connection.request("GET", "/export?format=ndjson", headers=web.headers)
        response = connection.getresponse()
        assert response.status == 200
        peak, lines, size, tail = baseline, 0, 0, b""
        while chunk := response.read(256 * 1024):
            size += len(chunk)
            lines += chunk.count(b"\n")
            tail = (tail + chunk)[-4096:]
            peak = max(peak, rss_mb(web.process.pid))
        connection.close()

    assert lines == CONVERSATIONS + CONVERSATIONS * MESSAGES_EACH
    assert size > 60 * 1024 * 1024
    assert json.loads(tail.splitlines()[-1])["prompt_content"] == f"prompt {MESSAGES_EACH - 1}"
    growth = peak - baseline
    sent = size / 2**20
    print(f"{backend}: RSS {baseline:.1f} MiB before, peak {peak:.1f} MiB; {sent:.0f} MiB sent")
    assert growth < LIMIT_MIB, f"RSS grew by {growth:.1f} MiB while streaming"
