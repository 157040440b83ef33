"""CRUD benchmark: req/s and latency of the REST endpoints under real gunicorn on PostgreSQL.

Migrates a fresh PostgreSQL database with the Procfile's release step, creates a user with
`flask users create`, seeds conversations and messages, serves the app with the Procfile's
web command, and drives each endpoint with wrk (random ids, ``--connections`` open). Then
the same for a bare Flask get-by-id (bench/bare_flask.py), the baseline. Prints Markdown.

    .venv/bin/python -m bench.crud                    # needs wrk: apt-get install wrk
    .venv/bin/python -m bench.crud --seconds 5 --connections 32
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.config import settings_from_env  # noqa: E402
from bench.common import (  # noqa: E402
    LIMIT_MODES,
    WrkResult,
    cpu_seconds,
    create_database,
    drop_database,
    limits_env,
    run_wrk,
    wrk_script,
)
from tests.procfile import WebProcess, create_user, release  # noqa: E402

CONVERSATIONS = 1000
MESSAGES = 100  # in conversation 1

# The seed's FastAPI + async SQLAlchemy design, measured on this kind of machine (2 cores,
# 2 uvicorn workers): req/s. From the issue that asked for this benchmark.
SEED_RPS = {"get one": 1618, "list 20": 1188, "create": 609}


@dataclass(frozen=True)
class Endpoint:
    name: str
    method: str
    path: str
    body: str | None = None


ENDPOINTS = [
    Endpoint("get one", "GET", "/conversations/{id}"),
    Endpoint("list 20", "GET", "/conversations?take=20"),
    Endpoint("list messages 20", "GET", "/conversations/1/messages?take=20"),
    Endpoint("create", "POST", "/conversations", '{"title": "bench", "model_type": "m"}'),
    Endpoint("update", "PUT", "/conversations/{id}", '{"title": "renamed", "model_type": "m"}'),
]


def seed(url: str, owner_name: str) -> str:
    """Conversations for ``owner_name``, and messages in the first, by COPY; returns the
    server's version."""
    now = datetime.now(UTC)
    libpq = sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(libpq) as connection, connection.cursor() as cursor:
        owner = cursor.execute("SELECT id FROM users WHERE name = %s", (owner_name,)).fetchone()
        columns = "title, model_type, owner_id, created_at, updated_at"
        with cursor.copy(f"COPY conversations ({columns}) FROM STDIN") as copy:
            for i in range(CONVERSATIONS):
                copy.write_row((f"conversation {i}", "m", owner[0], now, now))
        columns = "conversation_id, prompt_content, response_content, is_success, status_code, "
        columns += "created_at, updated_at"
        with cursor.copy(f"COPY messages ({columns}) FROM STDIN") as copy:
            for i in range(MESSAGES):
                copy.write_row((1, f"prompt {i}", "answer " * 40, True, 200, now, now))
        cursor.execute("ANALYZE")
        return cursor.execute("SHOW server_version").fetchone()[0]


def statements_per_request(url: str, key: str) -> dict[str, int]:
    """SQL statements each endpoint sends once the key is cached, counted in-process."""
    from app import create_app
    from app.extensions import db

    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "LOG_LEVEL": "WARNING"})
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {key}"
    client.get("/conversations?take=1")  # the key's lookup is not part of any endpoint's cost
    with app.app_context():
        engine = db.engine
    counts: dict[str, int] = {}
    for endpoint in ENDPOINTS:
        statements: list[str] = []

        def record(_conn, _cursor, statement, *_args, into=statements) -> None:
            into.append(statement)

        sa.event.listen(engine, "before_cursor_execute", record)
        client.open(
            endpoint.path.replace("{id}", "2"),
            method=endpoint.method,
            data=endpoint.body,
            content_type="application/json",
        )
        sa.event.remove(engine, "before_cursor_execute", record)
        counts[endpoint.name] = len(statements)
    with app.app_context():
        db.engine.dispose()
    return counts


@contextmanager
def serving(env: dict[str, str], app: str = "wsgi:app") -> Iterator[WebProcess]:
    log = Path(tempfile.mkdtemp(prefix="convstore-bench-")) / "gunicorn.log"
    with WebProcess(env, log, app=app) as web:
        yield web


def drive(web: WebProcess, endpoint: Endpoint, key: str, args: argparse.Namespace) -> WrkResult:
    script = wrk_script(
        endpoint.method, endpoint.path, {"Authorization": f"Bearer {key}"}, endpoint.body
    )
    base = f"http://127.0.0.1:{web.port}"
    run_wrk(base, script, connections=args.connections, seconds=1, ids=CONVERSATIONS)  # warm
    return run_wrk(
        base, script, connections=args.connections, seconds=args.seconds, ids=CONVERSATIONS
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", default=str(os.cpu_count() or 2))
    parser.add_argument("--worker-class", default="gevent")
    parser.add_argument("--threads", default="1", help="gunicorn threads per worker (gthread)")
    parser.add_argument(
        "--only", default="", help="comma-separated endpoint names to drive (default: all)"
    )
    parser.add_argument(
        "--limits",
        choices=LIMIT_MODES,
        default="off",
        help="rate limiting off, or counted in memory or in the local Redis (its cost)",
    )
    args = parser.parse_args(argv)

    url = create_database("postgresql")
    env = {
        "DATABASE_URL": url,
        "WEB_CONCURRENCY": args.workers,
        "GUNICORN_WORKER_CLASS": args.worker_class,
        "GUNICORN_THREADS": args.threads,
        "GUNICORN_ACCESS_LOG": "",
        "LOG_LEVEL": "WARNING",
        **limits_env(args.limits),
    }
    try:
        release(env)
        key = create_user(env, "bench", admin=True)
        version = seed(url, "bench")
        counts = statements_per_request(url, key)
        results: dict[str, tuple[WrkResult, float]] = {}
        with serving(env) as web:
            assert web.process is not None
            chosen = [e for e in ENDPOINTS if not args.only or e.name in args.only.split(",")]
            for endpoint in chosen:
                before = cpu_seconds(web.process.pid)
                result = drive(web, endpoint, key, args)
                cpu = (cpu_seconds(web.process.pid) - before) * 1000 / max(1, result.requests)
                results[endpoint.name] = (result, cpu)
                print(f"{endpoint.name}: {result.requests_per_second:.0f} req/s", file=sys.stderr)
        with serving(env, app="bench.bare_flask:app") as web:
            bare = drive(web, ENDPOINTS[0], key, args)
        report(args, version, counts, results, bare)
    finally:
        drop_database(url)


def report(
    args: argparse.Namespace,
    version: str,
    counts: dict[str, int],
    results: dict[str, tuple[WrkResult, float]],
    bare: WrkResult,
) -> None:
    pool = settings_from_env(tempfile.gettempdir())  # what the served app reads
    print(
        f"CRUD benchmark, {time.strftime('%Y-%m-%d')}, {platform.node()}: {os.cpu_count()} "
        f"cores, Python {platform.python_version()}, PostgreSQL {version}, {args.workers} "
        f"gunicorn {args.worker_class} workers (threads: {args.threads}), pool "
        f"{pool['DB_POOL_SIZE']}+{pool['DB_MAX_OVERFLOW']}, wrk {args.connections} connections "
        f"{args.seconds:g} s per endpoint (wrk runs on the same cores).\n"
    )
    print(
        "| endpoint | req/s | p50 ms | p99 ms | errors | SQL statements | "
        "service CPU ms/req | vs seed FastAPI |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, (result, cpu) in results.items():
        seed_rps = SEED_RPS.get(name)
        ratio = f"{result.requests_per_second / seed_rps:.2f}x" if seed_rps else ""
        print(
            f"| {name} | {result.requests_per_second:.0f} | {result.p50_ms:.1f} "
            f"| {result.p99_ms:.1f} | {result.non_2xx + result.socket_errors} | {counts[name]} "
            f"| {cpu:.2f} | {ratio} |"
        )
    print(
        f"| bare Flask get one (baseline) | {bare.requests_per_second:.0f} | {bare.p50_ms:.1f} "
        f"| {bare.p99_ms:.1f} | {bare.non_2xx + bare.socket_errors} | 1 | | |"
    )
    if "get one" in results:
        get_rps = results["get one"][0].requests_per_second
        print(f"\nget one: {bare.requests_per_second / get_rps:.2f}x slower than bare Flask.")


if __name__ == "__main__":
    main()
