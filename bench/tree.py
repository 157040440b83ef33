"""Tree benchmark (issue 23): recent-first lists and a branch read at 1M messages, PostgreSQL.

Seeds, with COPY, one user's 100,000 conversations (their last activity spread over 90
days, every hundredth pinned) and 1,000,990 exchanges: ten in a line in each conversation
but the last, and in the last 1,000 in 100 branches of ten, each branch leaving from an
exchange of an earlier one (its current exchange: the last branch's leaf). Then times, with
wrk and one connection under the Procfile's gunicorn: the first page of ``order=recent``,
the next page by its cursor, and the current branch of the 1,000-exchange conversation;
and counts the statements each sends (in-process, the key's lookup excluded).

    .venv/bin/python -m bench.tree                 # needs wrk: apt-get install wrk
    .venv/bin/python -m bench.tree --scale 0.01    # a smoke run
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.models.unmanaged import (  # noqa: E402
    PROMPT_SEARCH_INDEX,
    RESPONSE_SEARCH_INDEX,
    TITLE_SEARCH_INDEX,
)
from bench.common import create_database, drop_database, run_wrk, wrk_script  # noqa: E402
from tests.procfile import WebProcess, create_user, release  # noqa: E402

CONVERSATIONS = 100_000
LINE = 10  # exchanges in each conversation but the big one
BRANCHES, BRANCH_DEPTH = 100, 10  # the big one: 1,000 exchanges
DAYS = 90


def _libpq(url: str) -> str:
    return sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def seed(url: str, owner: str, scale: float) -> int:
    """The conversations and exchanges; returns the big conversation's id (the last)."""
    rng = random.Random(23)
    now = datetime.now(UTC)
    conversations = max(2, int(CONVERSATIONS * scale))
    with psycopg.connect(_libpq(url)) as connection, connection.cursor() as cursor:
        (owner_id,) = cursor.execute("SELECT id FROM users WHERE name = %s", (owner,)).fetchone()
        for index in (TITLE_SEARCH_INDEX, PROMPT_SEARCH_INDEX, RESPONSE_SEARCH_INDEX):
            cursor.execute(f"DROP INDEX IF EXISTS {index}")  # not what is timed here
        columns = (
            "id, owner_id, title, model_type, created_at, updated_at, last_activity_at, "
            "message_count, pinned, current_message_id"
        )
        plans = []  # (conversation id, created, its exchanges' parent ids), ids in order
        message_id = 0
        for uid in range(1, conversations + 1):
            created = now - timedelta(seconds=rng.uniform(0, DAYS * 86400))
            if uid < conversations:
                parents = [None] + [message_id + n for n in range(1, LINE)]
            else:  # the big one: branch 0 from the root, the others from earlier ones
                parents = []
                for branch in range(BRANCHES):
                    start = message_id + len(parents)
                    parents.append(rng.randint(message_id + 1, start) if branch else None)
                    parents += [start + depth for depth in range(1, BRANCH_DEPTH)]
            plans.append((uid, created, parents))
            message_id += len(parents)
        with cursor.copy(f"COPY conversations ({columns}) FROM STDIN") as copy:
            last = 0
            for uid, created, parents in plans:
                last += len(parents)
                at = created + timedelta(seconds=last % 600)
                copy.write_row(
                    (uid, owner_id, f"conversation {uid}", "m", created, created, at,
                     len(parents), uid % 100 == 0, last)
                )  # fmt: skip
        with cursor.copy(
            "COPY messages (id, conversation_id, parent_id, prompt_content, response_content, "
            "is_success, status_code, outcome, created_at, updated_at) FROM STDIN"
        ) as copy:
            uid_id = 0
            for uid, created, parents in plans:
                for parent in parents:
                    uid_id += 1
                    at = created + timedelta(seconds=uid_id % 600)
                    copy.write_row(
                        (uid_id, uid, parent, f"prompt {uid_id}", f"answer {uid_id}",
                         True, 200, "complete", at, at)
                    )  # fmt: skip
        cursor.execute("SELECT setval('conversations_id_seq', %s)", (conversations,))
        cursor.execute("SELECT setval('messages_id_seq', %s)", (message_id,))
        connection.commit()
        connection.autocommit = True
        cursor.execute("VACUUM ANALYZE conversations, messages")
        print(f"seeded {conversations:,} conversations, {message_id:,} exchanges", file=sys.stderr)
        return conversations


def statements(url: str, key: str, paths: list[str]) -> list[int]:
    """SQL statements each path sends once the key is cached, counted in-process."""
    from app import create_app
    from app.extensions import db

    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "LOG_LEVEL": "WARNING"})
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {key}"
    client.get("/conversations?take=1")
    with app.app_context():
        engine = db.engine
    counts = []
    for path in paths:
        seen: list[str] = []

        def record(_conn, _cursor, statement, *_args, into=seen) -> None:
            into.append(statement)

        sa.event.listen(engine, "before_cursor_execute", record)
        assert client.get(path).status_code == 200, path
        sa.event.remove(engine, "before_cursor_execute", record)
        counts.append(len(seen))
    with app.app_context():
        db.engine.dispose()
    return counts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the conversations")
    args = parser.parse_args(argv)

    url = create_database("postgresql")
    env = {
        "DATABASE_URL": url,
        "WEB_CONCURRENCY": str(os.cpu_count() or 2),
        "GUNICORN_ACCESS_LOG": "",
        "LOG_LEVEL": "WARNING",
        "RATELIMIT_ENABLED": "false",
    }
    try:
        release(env)
        key = create_user(env, "bench")
        big = seed(url, "bench", args.scale)
        import requests

        log = Path(tempfile.mkdtemp(prefix="convstore-bench-")) / "gunicorn.log"
        with WebProcess(env, log) as web:
            base = f"http://127.0.0.1:{web.port}"
            headers = {"Authorization": f"Bearer {key}"}
            first = requests.get(f"{base}/conversations?order=recent&take=20", headers=headers)
            cursor = first.links["next"]["url"].split("cursor=")[1]
            queries = [
                ("order=recent, first page of 20", "/conversations?order=recent&take=20"),
                (
                    "order=recent, the next page (cursor)",
                    f"/conversations?order=recent&take=20&cursor={cursor}",
                ),
                (
                    "current branch of the 1,000-exchange conversation",
                    f"/conversations/{big}/messages",
                ),
            ]
            counts = statements(url, key, [path for _, path in queries])
            results = []
            for name, path in queries:
                script = wrk_script("GET", path, headers)
                run_wrk(base, script, connections=1, seconds=1, threads=1)
                results.append(
                    (name, run_wrk(base, script, connections=1, seconds=args.seconds, threads=1))
                )
        with psycopg.connect(_libpq(url)) as connection:
            (depth,) = connection.execute(
                "WITH RECURSIVE up(id, parent_id) AS (SELECT id, parent_id FROM messages WHERE id"
                " = (SELECT current_message_id FROM conversations WHERE id = %s) UNION ALL"
                " SELECT m.id, m.parent_id FROM messages m JOIN up ON m.id = up.parent_id)"
                " SELECT count(*) FROM up",
                (big,),
            ).fetchone()
        load = os.getloadavg()[0]
        print(
            f"Tree benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node() or 'vm'}: "
            f"{os.cpu_count()} cores, load average {load:.2f} at the end; wrk, 1 connection, "
            f"{args.seconds:g} s per query; the current branch is {depth} exchanges deep.\n"
        )
        print("| query | req/s | p50 ms | p99 ms | SQL statements |")
        print("|---|---|---|---|---|")
        for (name, result), count in zip(results, counts, strict=True):
            print(
                f"| {name} | {result.requests_per_second:.0f} | {result.p50_ms:.2f} | "
                f"{result.p99_ms:.2f} | {count} |"
            )
    finally:
        drop_database(url)


if __name__ == "__main__":
    main()
