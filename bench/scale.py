"""Scale benchmark: 100,000 conversations and 1,000,000 messages in PostgreSQL.

Seeds the data with COPY (exchanges spread over 90 days, four models, mixed outcomes and
latencies), rebuilds the usage rollups from it (``flask usage rebuild``, timed), then times
listing, reading and paging at the start of the data and deep in it (a large ``skip``
against ``after=<id>``), and 30-day ``/usage`` reports, with wrk under real gunicorn.

    .venv/bin/python -m bench.scale                   # needs wrk: apt-get install wrk
    .venv/bin/python -m bench.scale --owners 1000 --only usage
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import create_database, drop_database, run_wrk, wrk_script  # noqa: E402
from tests.procfile import WebProcess, create_user, flask_command, release  # noqa: E402

CONVERSATIONS = 100_000
MESSAGES_EACH = 9  # in every conversation but the big one
BIG_MESSAGES = 100_009  # in the big one (the last): 1,000,000 messages in all
DAYS = 90
MODELS = ("gpt-4o-mini", "gpt-4o", "llama3.1:8b", "qwen2.5:7b")
# (outcome, is_success, status_code, weight)
OUTCOMES = (
    ("complete", True, 200, 90),
    ("failed", False, 502, 4),
    ("failed", False, 429, 2),
    ("client_closed", False, 499, 3),
    ("interrupted", False, 500, 1),
)


def _exchange(rng: random.Random, now: datetime) -> tuple:
    """The measured columns of one seeded exchange, asked some time in the last DAYS days."""
    outcome, success, status, _ = rng.choices(OUTCOMES, [o[3] for o in OUTCOMES])[0]
    created = now - timedelta(seconds=rng.uniform(0, DAYS * 86400))
    ttft = None if status in {502, 429} else int(rng.lognormvariate(5.5, 0.6))
    duration = int(rng.lognormvariate(7.5, 0.8)) + (ttft or 0)
    prompt, response = rng.randint(10, 2000), rng.randint(1, 800)
    return (
        rng.choice(MODELS),
        rng.choice(("text", "messages")),
        outcome,
        success,
        status,
        prompt,
        response,
        prompt + response,
        ttft,
        duration,
        created,
        created,
    )


def seed(url: str, owner_name: str, owners: int) -> tuple[int, int, int]:
    """Seed by COPY; returns (big conversation id, last message id, seconds taken).
    ``owners`` > 1: conversations go round-robin to that many users (``owner_name`` first)."""
    started = time.perf_counter()
    now = datetime.now(UTC)
    rng = random.Random(10)
    libpq = sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(libpq) as connection, connection.cursor() as cursor:
        (owner,) = cursor.execute("SELECT id FROM users WHERE name = %s", (owner_name,)).fetchone()
        owner_ids = [owner]
        for i in range(1, owners):
            cursor.execute(
                "INSERT INTO users (name, role, is_active, created_at, updated_at)"
                " VALUES (%s, 'user', true, %s, %s) RETURNING id",
                (f"user{i}", now, now),
            )
            owner_ids.append(cursor.fetchone()[0])
        columns = "title, model_type, owner_id, created_at, updated_at"
        with cursor.copy(f"COPY conversations ({columns}) FROM STDIN") as copy:
            for i in range(CONVERSATIONS):
                copy.write_row((f"conversation {i}", "m", owner_ids[i % owners], now, now))
        first, big = cursor.execute("SELECT min(id), max(id) FROM conversations").fetchone()
        columns = "conversation_id, prompt_content, response_content, model, endpoint, outcome, "
        columns += "is_success, status_code, prompt_tokens, response_tokens, total_tokens, "
        columns += "ttft_ms, duration_ms, created_at, updated_at"
        with cursor.copy(f"COPY messages ({columns}) FROM STDIN") as copy:
            for conversation_id in range(first, big):
                for i in range(MESSAGES_EACH):
                    copy.write_row(
                        (conversation_id, f"prompt {i}", "an answer", *_exchange(rng, now))
                    )
            for i in range(BIG_MESSAGES):
                copy.write_row((big, f"prompt {i}", "an answer", *_exchange(rng, now)))
        (last_message,) = cursor.execute("SELECT max(id) FROM messages").fetchone()
        connection.commit()
        connection.autocommit = True
        cursor.execute("VACUUM ANALYZE")
    return big, last_message, round(time.perf_counter() - started)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--owners", type=int, default=1, help="users owning the conversations")
    parser.add_argument("--only", choices=["usage"], help="time only the /usage reports")
    args = parser.parse_args(argv)

    url = create_database("postgresql")
    env = {
        "DATABASE_URL": url,
        "WEB_CONCURRENCY": str(os.cpu_count() or 2),
        "GUNICORN_ACCESS_LOG": "",
        "LOG_LEVEL": "WARNING",
    }
    try:
        release(env)
        key = create_user(env, "bench")
        admin_key = create_user(env, "bench-admin", admin=True)
        big, last_message, seconds = seed(url, "bench", args.owners)
        started = time.perf_counter()
        rebuilt = flask_command(env, "usage", "rebuild").strip()
        rebuild_seconds = time.perf_counter() - started
        print(f"{rebuilt} in {rebuild_seconds:.1f} s", file=sys.stderr)
        with psycopg.connect(
            sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False),
            autocommit=True,
        ) as connection:
            connection.execute("VACUUM ANALYZE usage_daily")
            (rollups,) = connection.execute("SELECT count(*) FROM usage_daily").fetchone()
        total_messages = (CONVERSATIONS - 1) * MESSAGES_EACH + BIG_MESSAGES
        deep = CONVERSATIONS - 1000
        deep_messages = BIG_MESSAGES - 1000
        since = (datetime.now(UTC).date() - timedelta(days=29)).isoformat()
        usage_queries = [
            ("usage 30 days by day,model (a user: owner=me)", "day,model", "me", key),
            ("usage 30 days by day,model (admin: owner=all)", "day,model", "all", admin_key),
            ("usage 30 days by day,model,user (admin: all)", "day,model,user", "all", admin_key),
        ]
        usage_queries = [
            (name, f"/usage?from={since}&group_by={groups}&owner={owner}", bearer)
            for name, groups, owner, bearer in usage_queries
        ]
        queries = [
            ("list 20, first page", "/conversations?take=20"),
            (f"list 20, skip={deep}", f"/conversations?take=20&skip={deep}"),
            (f"list 20, after={deep}", f"/conversations?take=20&after={deep}"),
            ("get one (random id)", "/conversations/{id}"),
            ("messages 20, first page", f"/conversations/{big}/messages?take=20"),
            (
                f"messages 20, skip={deep_messages}",
                f"/conversations/{big}/messages?take=20&skip={deep_messages}",
            ),
            (
                "messages 20, after=(1,000 from the end)",
                f"/conversations/{big}/messages?take=20&after={last_message - 1000}",
            ),
        ]
        log = Path(tempfile.mkdtemp(prefix="convstore-bench-")) / "gunicorn.log"
        rows = []
        # A report's latency alone (one client), and under the load the others are timed at.
        usage_runs = [
            (f"{name}, 1 connection", path, bearer, 1) for name, path, bearer in usage_queries
        ]
        usage_runs += [
            (name, path, bearer, args.connections) for name, path, bearer in usage_queries
        ]
        runs = [(name, path, key, args.connections) for name, path in queries]
        # With --only usage, one list query stays as a yardstick of the machine's load.
        runs = [*runs[:1], *usage_runs] if args.only == "usage" else runs + usage_runs
        with WebProcess(env, log) as web:
            base = f"http://127.0.0.1:{web.port}"
            for name, path, bearer, connections in runs:
                script = wrk_script("GET", path, {"Authorization": f"Bearer {bearer}"})
                threads = min(2, connections)  # wrk wants a connection per thread
                run_wrk(
                    base,
                    script,
                    connections=connections,
                    seconds=1,
                    ids=CONVERSATIONS,
                    threads=threads,
                )
                result = run_wrk(
                    base,
                    script,
                    connections=connections,
                    seconds=args.seconds,
                    ids=CONVERSATIONS,
                    threads=threads,
                )
                rows.append((name, result))
                print(f"{name}: p50 {result.p50_ms:.1f} ms", file=sys.stderr)
    finally:
        drop_database(url)

    print(
        f"Scale benchmark, {time.strftime('%Y-%m-%d')}, {platform.node()}: {os.cpu_count()} "
        f"cores, Python {platform.python_version()}; {CONVERSATIONS:,} conversations and "
        f"{total_messages:,} messages over {DAYS} days owned by {args.owners} user(s) (seeded "
        f"by COPY in {seconds} s); `flask usage rebuild`: {rollups:,} rollup rows in "
        f"{rebuild_seconds:.1f} s; wrk {args.connections} connections, {args.seconds:g} s per "
        "query.\n"
    )
    print("| query | req/s | p50 ms | p99 ms | errors |")
    print("|---|---|---|---|---|")
    for name, result in rows:
        print(
            f"| {name} | {result.requests_per_second:.0f} | {result.p50_ms:.1f} "
            f"| {result.p99_ms:.1f} | {result.non_2xx + result.socket_errors} |"
        )


if __name__ == "__main__":
    main()
