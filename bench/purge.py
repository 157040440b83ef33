"""Purge benchmark: a large retention purge while a CRUD load runs, on PostgreSQL.

Migrates a fresh database with the Procfile's release step, then seeds by COPY: a user
``bench`` with conversations the load reads and writes, and a user ``old`` with
``--conversations`` conversations of ``--exchanges`` ended exchanges each (40-word prompts,
80-word answers), inactive for 400 days. Serves the Procfile's web command, without
``RETENTION_DAYS``: nothing expires. A mixed CRUD load (wrk: 40 % reads of one conversation,
30 % lists of 20, 10 % creates, 20 % updates) runs in slices of ``--slice`` seconds:
``--baseline`` seconds of it first, no purge to do; then ``old`` gets a retention of 365 days
(one UPDATE: every one of their conversations is expired at once) and the load goes on in
slices until none is left. Who purges (``--purger``): ``workers``, the gunicorn workers' own
timer (``PURGE_INTERVAL_SECONDS=1``, so it finds them within a second; it ran, finding
nothing, during the baseline too), or ``command``, one ``flask conversations purge`` process
beside the server (the workers' timer off). Prints, as Markdown: the purge's duration and
rate, and each slice's req/s, p50, p99, requests over 1 s and errors, with the median and
worst slice of each phase.

    apt-get install wrk
    .venv/bin/python -m bench.purge > bench/results/purge.md   # 100,000 conversations, 1M exchanges
    .venv/bin/python -m bench.purge --purger command           # the same, purged by the command
    .venv/bin/python -m bench.purge --conversations 2000 --baseline 10   # a smoke run
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import string
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import WRK_DONE, WrkResult, create_database, drop_database, run_wrk  # noqa: E402
from tests.procfile import WebProcess, create_user, release  # noqa: E402
from tests.prometheus import samples, value  # noqa: E402

LOAD_CONVERSATIONS = 1000
LOAD_MESSAGES = 100  # in the load's first conversation
RETENTION_DAYS = 365
COPY_ROWS = 50_000  # rows per COPY transaction while seeding


def libpq(url: str) -> str:
    return sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def seed(url: str, conversations: int, exchanges: int) -> tuple[str, int]:
    """The load's conversations (ids 1 to LOAD_CONVERSATIONS) and the old ones, by COPY;
    returns the server's version and the old user's id."""
    now = datetime.now(UTC)
    inactive = now - timedelta(days=400)
    words = ["".join(random.choices(string.ascii_lowercase, k=random.randint(3, 9)))
             for _ in range(5000)]  # fmt: skip
    columns = "title, model_type, owner_id, created_at, updated_at, last_activity_at, message_count"
    with psycopg.connect(libpq(url), autocommit=True) as connection:
        cursor = connection.cursor()
        owners = dict(cursor.execute("SELECT name, id FROM users").fetchall())
        with (
            connection.transaction(),
            cursor.copy(f"COPY conversations ({columns}) FROM STDIN") as copy,
        ):
            for i in range(LOAD_CONVERSATIONS):
                copy.write_row((f"conversation {i}", "m", owners["bench"], now, now, now, 0))
        message_columns = (
            "conversation_id, prompt_content, response_content, is_success, outcome, "
            "status_code, model, prompt_tokens, response_tokens, total_tokens, ttft_ms, "
            "duration_ms, created_at, updated_at"
        )
        with (
            connection.transaction(),
            cursor.copy(f"COPY messages ({message_columns}) FROM STDIN") as copy,
        ):
            for _ in range(LOAD_MESSAGES):
                copy.write_row(_exchange(1, words, now))
        for start in range(0, conversations, COPY_ROWS):
            with (
                connection.transaction(),
                cursor.copy(f"COPY conversations ({columns}) FROM STDIN") as copy,
            ):
                for i in range(start, min(conversations, start + COPY_ROWS)):
                    row = (f"old {i}", "m", owners["old"], inactive, inactive, inactive, exchanges)
                    copy.write_row(row)
        ids = [row[0] for row in cursor.execute(
            "SELECT id FROM conversations WHERE owner_id = %s ORDER BY id", (owners["old"],)
        )]  # fmt: skip
        per_copy = max(1, COPY_ROWS // max(1, exchanges))
        for start in range(0, len(ids), per_copy):
            with (
                connection.transaction(),
                cursor.copy(f"COPY messages ({message_columns}) FROM STDIN") as copy,
            ):
                for uid in ids[start : start + per_copy]:
                    for _ in range(exchanges):
                        copy.write_row(_exchange(uid, words, inactive))
            print(f"seeded {min(len(ids), start + per_copy)} old conversations", file=sys.stderr)
        cursor.execute("VACUUM ANALYZE")
        return cursor.execute("SHOW server_version").fetchone()[0], owners["old"]


def _exchange(conversation_id: int, words: list[str], at: datetime) -> tuple[object, ...]:
    return (
        conversation_id,
        " ".join(random.choices(words, k=40)),
        " ".join(random.choices(words, k=80)),
        True,
        "complete",
        200,
        "m",
        40,
        60,
        100,
        100,
        900,
        at,
        at,
    )


def load_script(key: str) -> str:
    """wrk's mixed CRUD load on the load's conversations (ids 1 to BENCH_IDS)."""
    return (
        f"""
wrk.headers["Authorization"] = "Bearer {key}"
wrk.headers["Content-Type"] = "application/json"
ids = tonumber(os.getenv('BENCH_IDS') or '1')
request = function()
  local r = math.random(1, 10)
  local id = math.random(1, ids)
  if r <= 4 then return wrk.format("GET", "/conversations/" .. id) end
  if r <= 7 then return wrk.format("GET", "/conversations?take=20") end
  if r <= 8 then
    return wrk.format("POST", "/conversations", nil, '{{"title": "bench", "model_type": "m"}}')
  end
  local renamed = '{{"title": "renamed", "model_type": "m"}}'
  return wrk.format("PUT", "/conversations/" .. id, nil, renamed)
end
"""
        + WRK_DONE
    )


def purge_command(env: dict[str, str]) -> subprocess.Popen[str]:
    """``flask conversations purge`` on the database, in a process of its own."""
    command = [sys.executable, "-m", "flask", "--app", "wsgi", "conversations", "purge"]
    return subprocess.Popen(
        command,
        cwd=ROOT,
        env={**os.environ, **env, "FLASK_SKIP_DOTENV": "1"},
        stdout=subprocess.PIPE,
        text=True,
    )


def remaining(db: psycopg.Connection, owner_id: int) -> int:
    query = "SELECT count(*) FROM conversations WHERE owner_id = %s"
    return int(db.execute(query, (owner_id,)).fetchone()[0])  # type: ignore[index]


@dataclass
class Slice:
    phase: str
    result: WrkResult


def slices_until(
    web: WebProcess, script: str, args: argparse.Namespace, phase: str, done: threading.Event
) -> list[Slice]:
    """wrk in slices of ``--slice`` seconds until ``done`` is set (the slice running then
    finishes)."""
    base = f"http://127.0.0.1:{web.port}"
    found = []
    while not done.is_set():
        result = run_wrk(
            base, script, connections=args.connections, seconds=args.slice, ids=LOAD_CONVERSATIONS
        )
        found.append(Slice(phase, result))
        print(f"{phase}: {result.requests_per_second:.0f} req/s, p99 {result.p99_ms:.1f} ms",
              file=sys.stderr)  # fmt: skip
    return found


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=100_000, help="expired ones")
    parser.add_argument("--exchanges", type=int, default=10, help="per expired conversation")
    parser.add_argument("--baseline", type=float, default=60, help="seconds of load, no purge")
    parser.add_argument("--slice", type=float, default=5, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", default=str(os.cpu_count() or 2))
    parser.add_argument("--purger", choices=("workers", "command"), default="workers")
    parser.add_argument("--keep", action="store_true", help="keep the database (prints its URL)")
    args = parser.parse_args(argv)

    url = create_database("postgresql")
    env = {
        "DATABASE_URL": url,
        "WEB_CONCURRENCY": args.workers,
        "GUNICORN_ACCESS_LOG": "",
        "LOG_LEVEL": "WARNING",
        "RATELIMIT_ENABLED": "false",
        "PURGE_INTERVAL_SECONDS": "1" if args.purger == "workers" else "0",
    }
    try:
        release(env)
        key = create_user(env, "bench")
        create_user(env, "old")
        version, old_id = seed(url, args.conversations, args.exchanges)
        log = Path(tempfile.mkdtemp(prefix="convstore-bench-")) / "gunicorn.log"
        with WebProcess(env, log) as web, psycopg.connect(libpq(url), autocommit=True) as db:
            script = load_script(key)
            run_wrk(f"http://127.0.0.1:{web.port}", script, connections=args.connections,
                    seconds=2, ids=LOAD_CONVERSATIONS)  # fmt: skip  # warm-up
            baseline_over = threading.Event()
            timer = threading.Timer(args.baseline, baseline_over.set)
            timer.start()
            measured = slices_until(web, script, args, "no purge", baseline_over)
            untouched = remaining(db, old_id)
            purged = threading.Event()
            load: list[Slice] = []
            runner = threading.Thread(
                target=lambda: load.extend(slices_until(web, script, args, "purge", purged))
            )
            runner.start()
            started = time.monotonic()
            db.execute(
                "UPDATE users SET retention_days = %s WHERE id = %s", (RETENTION_DAYS, old_id)
            )
            command = purge_command(env) if args.purger == "command" else None
            while remaining(db, old_id):
                time.sleep(0.2)
            took = time.monotonic() - started
            purged.set()
            runner.join()
            if command is None:
                scraped = samples(web.get("/metrics")[1].decode())
                passes = value(scraped, "convstore_purge_passes_total")
                said = f"/metrics: {passes:g} passes of the workers"
            else:
                said = f"the command: {command.communicate()[0].splitlines()[-1]}"
        measured += load
        report(args, version, untouched, took, said, measured)
        if args.keep:
            print(f"\nkept the database: {url}", file=sys.stderr)
    finally:
        if not args.keep:
            drop_database(url)


def report(
    args: argparse.Namespace,
    version: str,
    untouched: int,
    took: float,
    said: str,
    measured: list[Slice],
) -> None:
    exchanges = args.conversations * args.exchanges
    purger = (
        "the workers' timer (each purges every second)"
        if args.purger == "workers"
        else "one `flask conversations purge` process"
    )
    print(
        f"Purge benchmark, {time.strftime('%Y-%m-%d')}, {platform.node()}: {os.cpu_count()} "
        f"cores, Python {platform.python_version()}, PostgreSQL {version}, {args.workers} "
        f"gunicorn workers, purged by {purger}, wrk {args.connections} connections in "
        f"slices of {args.slice:g} s on the same cores.\n"
    )
    print(
        f"Purged {args.conversations:,} conversations and {exchanges:,} exchanges in "
        f"{took:.1f} s ({args.conversations / took:,.0f} conversations/s, "
        f"{exchanges / took:,.0f} exchanges/s) while the load ran; {untouched:,} were left "
        f"untouched by the {args.baseline:g} s before. {said}\n"
    )
    print("| phase | slice | req/s | p50 ms | p99 ms | over 1 s | errors |")
    print("|---|---|---|---|---|---|---|")
    for phase in ("no purge", "purge"):
        results = [s.result for s in measured if s.phase == phase]
        for n, r in enumerate(results, start=1):
            print(
                f"| {phase} | {n} | {r.requests_per_second:.0f} | {r.p50_ms:.1f} "
                f"| {r.p99_ms:.1f} | {r.over_1s} | {r.non_2xx + r.socket_errors} |"
            )
    print("\n| phase | slices | median req/s | median p99 ms | worst p99 ms | over 1 s |")
    print("|---|---|---|---|---|---|")
    for phase in ("no purge", "purge"):
        results = [s.result for s in measured if s.phase == phase]
        if not results:
            continue
        print(
            f"| {phase} | {len(results)} "
            f"| {statistics.median(r.requests_per_second for r in results):.0f} "
            f"| {statistics.median(r.p99_ms for r in results):.1f} "
            f"| {max(r.p99_ms for r in results):.1f} | {sum(r.over_1s for r in results)} |"
        )


if __name__ == "__main__":
    main()
