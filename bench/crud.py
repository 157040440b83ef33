"""CRUD benchmark: convstore's REST endpoints against its peers, in one run, on PostgreSQL.

Migrates a fresh PostgreSQL database with the Procfile's release step, creates a user with
`flask users create`, seeds conversations and messages, then serves, side by side through
the Procfile's web command and the same gunicorn.conf.py (same worker count): convstore;
the seed's FastAPI shape (bench/seed_peer, uvicorn workers); bare Flask (bench/bare_flask.py).
Each round drives every endpoint with wrk on each server in turn (the servers' order
rotating from one endpoint to the next), so that the machine's drift hits all alike; one
round per ``--connections`` count. Prints, as Markdown: req/s, p50, p99, p99/p50, requests
over 1 s and errors, service CPU per request, and each round's ratios convstore/seed and
convstore/bare per endpoint (only ratios from one run count on a noisy machine).

    .venv/bin/pip install -e ".[bench]"               # the seed peer's FastAPI, asyncpg...
    apt-get install wrk
    .venv/bin/python -m bench.crud --repeat 3 --connections 32    # issue 25 target 2
    .venv/bin/python -m bench.crud --peers "" --only "get one,list 20,create" \
        --connections 32,64                                       # target 1 (starvation)
    .venv/bin/python -m bench.crud --seconds 1 --warmup 0 --only "get one"   # a smoke run

The seed peer runs on asyncpg; SEED_PEER_DRIVER=psycopg in the environment puts it on the
seed's own psycopg (async).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
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

# Who is measured: convstore itself, and the peers ``--peers`` adds (the WSGI/ASGI app each
# serves, and its gunicorn worker class; None: convstore's own, ``--worker-class``).
TARGETS = {
    "convstore": ("wsgi:app", None),
    "seed": ("bench.seed_peer.main:app", "uvicorn_worker.UvicornWorker"),
    "bare": ("bench.bare_flask:app", None),
}


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


def seed(url: str, owner_name: str) -> tuple[str, int]:
    """Conversations for ``owner_name``, and messages in the first, by COPY; returns the
    server's version and the owner's id."""
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
        return cursor.execute("SHOW server_version").fetchone()[0], owner[0]


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


@dataclass
class Measure:
    round: int
    connections: int
    endpoint: str
    target: str
    result: WrkResult
    cpu_ms: float  # service CPU (gunicorn's master and workers) per request


def drive(web: WebProcess, endpoint: Endpoint, key: str, connections: int, args) -> WrkResult:
    script = wrk_script(
        endpoint.method, endpoint.path, {"Authorization": f"Bearer {key}"}, endpoint.body
    )
    base = f"http://127.0.0.1:{web.port}"
    if args.warmup:
        run_wrk(base, script, connections=connections, seconds=args.warmup, ids=CONVERSATIONS)
    return run_wrk(base, script, connections=connections, seconds=args.seconds, ids=CONVERSATIONS)


def measure_round(
    webs: dict[str, WebProcess], key: str, number: int, connections: int, args
) -> list[Measure]:
    """Every chosen endpoint on every server, the servers' order rotating per endpoint."""
    names = list(webs)
    chosen = [e for e in ENDPOINTS if not args.only or e.name in args.only.split(",")]
    measures = []
    for i, endpoint in enumerate(chosen):
        shift = (i + number) % len(names)
        for target in names[shift:] + names[:shift]:
            web = webs[target]
            assert web.process is not None
            before = cpu_seconds(web.process.pid)
            result = drive(web, endpoint, key, connections, args)
            cpu = (cpu_seconds(web.process.pid) - before) * 1000 / max(1, result.requests)
            measures.append(Measure(number, connections, endpoint.name, target, result, cpu))
            print(
                f"round {number} c{connections} {endpoint.name} {target}: "
                f"{result.requests_per_second:.0f} req/s",
                file=sys.stderr,
            )
    return measures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10, help="per endpoint and server")
    parser.add_argument("--warmup", type=float, default=1, help="seconds before each (0: none)")
    parser.add_argument(
        "--connections", default="32", help="wrk's open connections; a list runs each (32,64)"
    )
    parser.add_argument("--repeat", type=int, default=1, help="rounds in this one run")
    parser.add_argument(
        "--peers", default="seed,bare", help="servers measured beside convstore: seed, bare"
    )
    parser.add_argument("--workers", default=str(os.cpu_count() or 2))
    parser.add_argument(
        "--worker-class",
        default="",
        help="gunicorn's worker class (default: gunicorn.conf.py's, the fair gevent worker)",
    )
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
    peers = [p for p in args.peers.split(",") if p]
    if unknown := [p for p in peers if p not in TARGETS or p == "convstore"]:
        parser.error(f"unknown peers: {unknown}; choose among seed, bare")
    if "seed" in peers:
        try:
            import fastapi  # noqa: F401
            import uvicorn_worker  # noqa: F401
        except ImportError:
            parser.error('the seed peer needs the bench extra: pip install -e ".[bench]"')
    connection_counts = [int(c) for c in args.connections.split(",")]

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
        version, owner_id = seed(url, "bench")
        counts = statements_per_request(url, key)
        measures: list[Measure] = []
        with ExitStack() as stack:
            webs = {}
            for target in ["convstore", *peers]:
                app, worker_class = TARGETS[target]
                served = {**env, "BENCH_OWNER_ID": str(owner_id)}
                if worker_class:
                    served["GUNICORN_WORKER_CLASS"] = worker_class
                webs[target] = stack.enter_context(serving(served, app=app))
            for number in range(1, args.repeat + 1):
                for connections in connection_counts:
                    measures += measure_round(webs, key, number, connections, args)
        report(args, version, counts, measures, peers)
    finally:
        drop_database(url)


def report(
    args: argparse.Namespace,
    version: str,
    counts: dict[str, int],
    measures: list[Measure],
    peers: list[str],
) -> None:
    pool = settings_from_env(tempfile.gettempdir())  # what the served app reads
    print(
        f"CRUD benchmark, {time.strftime('%Y-%m-%d')}, {platform.node()}: {os.cpu_count()} "
        f"cores, load average {os.getloadavg()[0]:.2f} at the end, Python "
        f"{platform.python_version()}, PostgreSQL {version}, {args.workers} gunicorn workers "
        f"each (convstore and bare: {args.worker_class or 'fair gevent'}, "
        f"threads {args.threads}; seed: "
        f"uvicorn), pool {pool['DB_POOL_SIZE']}+{pool['DB_MAX_OVERFLOW']} per worker, wrk "
        f"{args.seconds:g} s per endpoint and server after {args.warmup:g} s of warm-up, "
        f"{args.repeat} round(s) (wrk runs on the same cores).\n"
    )
    print(
        "| round | connections | endpoint | server | req/s | p50 ms | p99 ms | p99/p50 "
        "| over 1 s | errors | SQL statements | service CPU ms/req |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for m in measures:
        r = m.result
        statements = counts[m.endpoint] if m.target == "convstore" else ""
        print(
            f"| {m.round} | {m.connections} | {m.endpoint} | {m.target} "
            f"| {r.requests_per_second:.0f} | {r.p50_ms:.1f} | {r.p99_ms:.1f} "
            f"| {r.p99_ms / r.p50_ms:.1f} | {r.over_1s} | {r.non_2xx + r.socket_errors} "
            f"| {statements} | {m.cpu_ms:.2f} |"
        )
    by_key = {(m.round, m.connections, m.endpoint, m.target): m for m in measures}
    order = [e.name for e in ENDPOINTS]
    keys = sorted(
        {(m.connections, m.endpoint) for m in measures}, key=lambda k: (k[0], order.index(k[1]))
    )
    for peer in peers:
        print(f"\nconvstore/{peer}, req/s, each round (>= 1: convstore is faster):\n")
        print("| connections | endpoint | " + " | ".join(f"round {n}" for n in rounds(args)) + " |")
        print("|---|---|" + "---|" * args.repeat)
        for connections, endpoint in keys:
            cells = []
            for n in rounds(args):
                ours = by_key.get((n, connections, endpoint, "convstore"))
                theirs = by_key.get((n, connections, endpoint, peer))
                if ours and theirs and theirs.result.requests_per_second:
                    ratio = ours.result.requests_per_second / theirs.result.requests_per_second
                    cells.append(f"{ratio:.2f}")
                else:
                    cells.append("")
            print(f"| {connections} | {endpoint} | " + " | ".join(cells) + " |")
    print("\nconvstore, starvation (target: 0 over 1 s and p99/p50 <= 4), each round:\n")
    print("| connections | endpoint | " + " | ".join(f"round {n}" for n in rounds(args)) + " |")
    print("|---|---|" + "---|" * args.repeat)
    for connections, endpoint in keys:
        cells = []
        for n in rounds(args):
            m = by_key.get((n, connections, endpoint, "convstore"))
            r = m.result if m else None
            cells.append(f"{r.over_1s} over 1 s, {r.p99_ms / r.p50_ms:.1f}x" if r else "")
        print(f"| {connections} | {endpoint} | " + " | ".join(cells) + " |")


def rounds(args: argparse.Namespace) -> range:
    return range(1, args.repeat + 1)


if __name__ == "__main__":
    main()
