"""Scale benchmark: 100,000 conversations and 1,000,000 messages in PostgreSQL.

Seeds the data with COPY, then times listing, reading and paging at the start of the data
and deep in it (a large ``skip`` against ``after=<id>``), and full-text search, with wrk
under real gunicorn. Prompts and answers are drawn from a 5,000-word vocabulary with
Zipf-like frequencies (as words are in text), so that search has realistic posting lists.

    .venv/bin/python -m bench.scale                   # needs wrk: apt-get install wrk
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import random
import sys
import tempfile
import time
from datetime import UTC, datetime
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
VOCABULARY = 5_000
PROMPT_WORDS, ANSWER_WORDS = 12, 30
SYLLABLES = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]


def vocabulary(rng: random.Random) -> tuple[list[str], list[float]]:
    """Distinct made-up words, most frequent first, and cumulative Zipf weights (s = 1)."""
    words: list[str] = []
    seen: set[str] = set()
    while len(words) < VOCABULARY:
        word = "".join(rng.choices(SYLLABLES, k=rng.randint(2, 4)))
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words, list(itertools.accumulate(1 / rank for rank in range(1, VOCABULARY + 1)))


class Text:
    """Prompts and answers drawn from the vocabulary, deterministically."""

    def __init__(self, seed: int = 12) -> None:
        self.rng = random.Random(seed)
        self.words, self.weights = vocabulary(self.rng)

    def sentence(self, length: int) -> str:
        return " ".join(self.rng.choices(self.words, cum_weights=self.weights, k=length))


def seed(url: str, owner_name: str) -> tuple[int, int, int]:
    """Seed by COPY; returns (big conversation id, last message id, seconds taken)."""
    started = time.perf_counter()
    now = datetime.now(UTC)
    text = Text()
    libpq = sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(libpq) as connection, connection.cursor() as cursor:
        (owner,) = cursor.execute("SELECT id FROM users WHERE name = %s", (owner_name,)).fetchone()
        # Bulk-load practice: drop the migration's GIN indexes, load, build them again from
        # their own definitions (one build is many times faster than 1M row-by-row updates).
        gin = cursor.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE indexdef LIKE '%USING gin%'"
        ).fetchall()
        for name, _ in gin:
            cursor.execute(f'DROP INDEX "{name}"')
        columns = "title, model_type, owner_id, created_at, updated_at"
        with cursor.copy(f"COPY conversations ({columns}) FROM STDIN") as copy:
            for i in range(CONVERSATIONS):
                copy.write_row((f"conversation {i}", "m", owner, now, now))
        first, big = cursor.execute("SELECT min(id), max(id) FROM conversations").fetchone()
        columns = "conversation_id, prompt_content, response_content, prompt_tokens, "
        columns += "response_tokens, total_tokens, is_success, status_code, created_at, updated_at"
        with cursor.copy(f"COPY messages ({columns}) FROM STDIN") as copy:
            owners = itertools.chain(
                (c for c in range(first, big) for _ in range(MESSAGES_EACH)),
                itertools.repeat(big, BIG_MESSAGES),
            )
            for conversation_id in owners:
                prompt = text.sentence(PROMPT_WORDS)
                answer = text.sentence(ANSWER_WORDS)
                copy.write_row((conversation_id, prompt, answer, 12, 30, 42, True, 200, now, now))
        (last_message,) = cursor.execute("SELECT max(id) FROM messages").fetchone()
        cursor.execute("SET maintenance_work_mem = '256MB'")
        for _, definition in gin:
            cursor.execute(definition)
        connection.commit()
        connection.autocommit = True
        cursor.execute("VACUUM ANALYZE")
    return big, last_message, round(time.perf_counter() - started)


def seeded(url: str) -> tuple[int, int, int]:
    """(big conversation id, last message id, 0) of a database ``seed`` filled earlier."""
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        big = connection.scalar(sa.text("SELECT max(id) FROM conversations"))
        last = connection.scalar(sa.text("SELECT max(id) FROM messages"))
    engine.dispose()
    return big, last, 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument(
        "--only", default="", help="Time only the queries whose name contains this (e.g. search)."
    )
    parser.add_argument(
        "--database", help="Time against this database, seeded by an earlier run (kept)."
    )
    args = parser.parse_args(argv)

    url = args.database or create_database("postgresql")
    env = {
        "DATABASE_URL": url,
        "WEB_CONCURRENCY": str(os.cpu_count() or 2),
        "GUNICORN_ACCESS_LOG": "",
        "LOG_LEVEL": "WARNING",
    }
    try:
        release(env)
        if args.database:
            key = flask_command(env, "keys", "create", "bench").strip().splitlines()[-1]
            big, last_message, seconds = seeded(url)
        else:
            key = create_user(env, "bench")
            big, last_message, seconds = seed(url, "bench")
        total_messages = (CONVERSATIONS - 1) * MESSAGES_EACH + BIG_MESSAGES
        words = Text().words  # most frequent first
        deep = CONVERSATIONS - 1000
        deep_messages = BIG_MESSAGES - 1000
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
            # Word ranks 100 and 300: each in 1-4% of messages, together in a few hundred.
            ("search, two words", f"/search?q={words[99]}+{words[299]}&take=20"),
            ("search, a phrase", f"/search?q=%22{words[99]}+{words[299]}%22&take=20"),
            ("search, two words, one excluded", f"/search?q={words[99]}+-{words[299]}&take=20"),
            # Ranks 1 and 2: in most messages, so every match is ranked (the worst case).
            ("search, two of the commonest words", f"/search?q={words[0]}+{words[1]}&take=20"),
        ]
        queries = [(name, path) for name, path in queries if args.only in name]
        log = Path(tempfile.mkdtemp(prefix="convstore-bench-")) / "gunicorn.log"
        rows = []
        with WebProcess(env, log) as web:
            base = f"http://127.0.0.1:{web.port}"
            for name, path in queries:
                script = wrk_script("GET", path, {"Authorization": f"Bearer {key}"})
                run_wrk(base, script, connections=args.connections, seconds=1, ids=CONVERSATIONS)
                result = run_wrk(
                    base,
                    script,
                    connections=args.connections,
                    seconds=args.seconds,
                    ids=CONVERSATIONS,
                )
                rows.append((name, result))
                print(f"{name}: p50 {result.p50_ms:.1f} ms", file=sys.stderr)
    finally:
        if not args.database:
            drop_database(url)

    print(
        f"Scale benchmark, {time.strftime('%Y-%m-%d')}, {platform.node()}: {os.cpu_count()} "
        f"cores, Python {platform.python_version()}; {CONVERSATIONS:,} conversations and "
        f"{total_messages:,} messages (seeded by COPY in {seconds} s); wrk {args.connections} "
        f"connections, {args.seconds:g} s per query.\n"
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
