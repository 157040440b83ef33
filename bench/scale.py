"""Scale benchmark: 100,000 conversations and 1,000,000 messages in PostgreSQL.

Seeds the data with COPY (the GIN full-text indexes dropped for the load and built again
after it), the exchanges spread over 90 days, four models, mixed outcomes and latencies,
and the conversations round-robin over ``--owners`` users, with prompts (12 words) and
answers (30 words) drawn from a 5,000-word vocabulary with Zipf-like frequencies (as words
are in text) so that search has realistic posting lists; rebuilds the usage rollups from it
(``flask usage rebuild``, timed) and analyzes the tables; then times listing, reading and
paging at the start of the data and deep in it (a large ``skip`` against ``after=<id>``),
full-text search, and 30-day ``/usage`` reports (as a user and as an admin), with wrk under
real gunicorn. ``--only`` keeps the queries whose name contains a word (``search``,
``usage``), ``--database`` times against a database an earlier run seeded (no seeding and
no rebuild; it only gets new keys), ``--keep`` leaves the database it seeds for
that, ``--scale`` shrinks the data for a quick run.

    .venv/bin/python -m bench.scale                   # needs wrk: apt-get install wrk
    .venv/bin/python -m bench.scale --owners 1000 --only usage
    .venv/bin/python -m bench.scale --scale 0.01      # a smoke run: 1,000 conversations
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
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
VOCABULARY = 5_000
PROMPT_WORDS, ANSWER_WORDS = 12, 30
SYLLABLES = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]
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


@dataclass
class Data:
    """What the database holds: the sizes the queries and the report need."""

    conversations: int
    big: int  # the big conversation's id (the last)
    big_messages: int
    messages: int
    last_message: int
    owners: int
    seconds: int  # taken to seed (0: seeded by an earlier run)


def _libpq(url: str) -> str:
    return sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def seed(url: str, owner_name: str, owners: int, scale: float) -> Data:
    """Seed by COPY: ``scale`` times the conversations and the big one's messages.
    ``owners`` > 1: conversations go round-robin to that many users (``owner_name`` first),
    but the big one is always ``owner_name``'s (the user whose key times the queries)."""
    started = time.perf_counter()
    now = datetime.now(UTC)
    conversations = max(2, round(CONVERSATIONS * scale))
    big_messages = max(1, round(BIG_MESSAGES * scale))
    # Two streams, so that the text is the same whatever the exchanges draw, and vice versa.
    text = Text()
    rng = random.Random(10)
    with psycopg.connect(_libpq(url)) as connection, connection.cursor() as cursor:
        (owner,) = cursor.execute("SELECT id FROM users WHERE name = %s", (owner_name,)).fetchone()
        owner_ids = [owner]
        for i in range(1, owners):
            cursor.execute(
                "INSERT INTO users (name, role, is_active, created_at, updated_at)"
                " VALUES (%s, 'user', true, %s, %s) RETURNING id",
                (f"user{i}", now, now),
            )
            owner_ids.append(cursor.fetchone()[0])
        # Bulk-load practice: drop the migration's GIN indexes, load, build them again from
        # their own definitions (one build is many times faster than 1M row-by-row updates).
        gin = cursor.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE indexdef LIKE '%USING gin%'"
        ).fetchall()
        for name, _ in gin:
            cursor.execute(f'DROP INDEX "{name}"')
        columns = "title, model_type, owner_id, created_at, updated_at"
        with cursor.copy(f"COPY conversations ({columns}) FROM STDIN") as copy:
            for i in range(conversations):
                owner = owner_ids[0] if i == conversations - 1 else owner_ids[i % owners]
                copy.write_row((f"conversation {i}", "m", owner, now, now))
        first, big = cursor.execute("SELECT min(id), max(id) FROM conversations").fetchone()
        columns = "conversation_id, prompt_content, response_content, model, endpoint, outcome, "
        columns += "is_success, status_code, prompt_tokens, response_tokens, total_tokens, "
        columns += "ttft_ms, duration_ms, created_at, updated_at"
        with cursor.copy(f"COPY messages ({columns}) FROM STDIN") as copy:
            targets = itertools.chain(
                (c for c in range(first, big) for _ in range(MESSAGES_EACH)),
                itertools.repeat(big, big_messages),
            )
            for conversation_id in targets:
                prompt = text.sentence(PROMPT_WORDS)
                answer = text.sentence(ANSWER_WORDS)
                copy.write_row((conversation_id, prompt, answer, *_exchange(rng, now)))
        (last_message,) = cursor.execute("SELECT max(id) FROM messages").fetchone()
        cursor.execute("SET maintenance_work_mem = '256MB'")
        for _, definition in gin:
            cursor.execute(definition)
        connection.commit()
        connection.autocommit = True
        cursor.execute("VACUUM ANALYZE")
    return Data(
        conversations=conversations,
        big=big,
        big_messages=big_messages,
        messages=(conversations - 1) * MESSAGES_EACH + big_messages,
        last_message=last_message,
        owners=owners,
        seconds=round(time.perf_counter() - started),
    )


def seeded(url: str) -> Data:
    """What a database ``seed`` filled in an earlier run holds (whatever its scale)."""
    with psycopg.connect(_libpq(url)) as connection:
        conversations, big, owners = connection.execute(
            "SELECT count(*), max(id), count(DISTINCT owner_id) FROM conversations"
        ).fetchone()
        messages, last_message = connection.execute(
            "SELECT count(*), max(id) FROM messages"
        ).fetchone()
        (big_messages,) = connection.execute(
            "SELECT count(*) FROM messages WHERE conversation_id = %s", (big,)
        ).fetchone()
    return Data(conversations, big, big_messages, messages, last_message, owners, 0)


def new_key(env: Mapping[str, str], name: str, *, admin: bool = False) -> str:
    """Another API key for user ``name`` of a seeded database; the user is made if missing
    (a database seeded before the /usage timings has no admin)."""
    try:
        return flask_command(env, "keys", "create", name).strip().splitlines()[-1]
    except subprocess.CalledProcessError:
        return create_user(env, name, admin=admin)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--owners", type=int, default=1, help="users owning the conversations")
    parser.add_argument(
        "--only",
        default="",
        help="Time only the queries whose name contains this (e.g. search, usage); the first "
        "list query stays as a yardstick of the machine's load.",
    )
    parser.add_argument(
        "--database",
        help="Time against this database, seeded by an earlier run (kept; not seeded again, "
        "usage not rebuilt).",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="Keep the database this run seeds (its URL is printed), for later --database runs.",
    )
    parser.add_argument(
        "--scale",
        type=float,
        default=1.0,
        metavar="FRACTION",
        help="Seed this fraction of the conversations and messages (e.g. 0.01 to smoke-test).",
    )
    args = parser.parse_args(argv)
    if args.owners < 1 or not 0 < args.scale <= 1:
        parser.error("--owners must be at least 1 and --scale in (0, 1]")

    url = args.database or create_database("postgresql")
    if args.keep and not args.database:
        print(f"seeding {url} (kept: time it again with --database {url})", file=sys.stderr)
    env = {
        "DATABASE_URL": url,
        "WEB_CONCURRENCY": str(os.cpu_count() or 2),
        "GUNICORN_ACCESS_LOG": "",
        "LOG_LEVEL": "WARNING",
        # One key drives thousands of requests a second: the per-user limits would answer
        # most of them 429 (the errors column) and time that instead of the queries.
        "RATELIMIT_ENABLED": "false",
    }
    try:
        release(env)
        if args.database:
            key = new_key(env, "bench")
            admin_key = new_key(env, "bench-admin", admin=True)
            data = seeded(url)
            rebuild = "{:,} usage rollup rows (an earlier run's, not rebuilt)"
        else:
            key = create_user(env, "bench")
            admin_key = create_user(env, "bench-admin", admin=True)
            data = seed(url, "bench", args.owners, args.scale)
            started = time.perf_counter()
            rebuilt = flask_command(env, "usage", "rebuild").strip()
            rebuild_seconds = time.perf_counter() - started
            print(f"{rebuilt} in {rebuild_seconds:.1f} s", file=sys.stderr)
            rebuild = f"`flask usage rebuild`: {{:,}} rollup rows in {rebuild_seconds:.1f} s"
        with psycopg.connect(_libpq(url), autocommit=True) as connection:
            if not args.database:
                connection.execute("VACUUM ANALYZE usage_daily")
            # Fresh statistics whatever came before: without them PostgreSQL has been seen to
            # page the big conversation's messages by a primary-key scan over wide rows rather
            # than by ix_messages_conversation_id_id.
            connection.execute("ANALYZE messages, conversations")
            (rollups,) = connection.execute("SELECT count(*) FROM usage_daily").fetchone()
            # The key's user sees its own conversations only: every ``owners``-th from the
            # first (round-robin), and the big one. Paging goes as deep in those as it can.
            mine = "FROM conversations WHERE owner_id = (SELECT id FROM users WHERE name = %s)"
            owned, first = connection.execute(
                f"SELECT count(*), min(id) {mine}", ("bench",)
            ).fetchone()
            deep = owned - owned // 100
            (after,) = connection.execute(
                f"SELECT id {mine} ORDER BY id OFFSET %s LIMIT 1", ("bench", deep - 1)
            ).fetchone()
        words = Text().words  # most frequent first
        deep_messages = data.big_messages - data.big_messages // 100
        from_end = data.big_messages // 100
        big = data.big
        queries = [
            ("list 20, first page", "/conversations?take=20"),
            (f"list 20, skip={deep}", f"/conversations?take=20&skip={deep}"),
            (f"list 20, after={after}", f"/conversations?take=20&after={after}"),
            ("get one (random id)", "/conversations/{id}"),
            ("messages 20, first page", f"/conversations/{big}/messages?take=20"),
            (
                f"messages 20, skip={deep_messages}",
                f"/conversations/{big}/messages?take=20&skip={deep_messages}",
            ),
            (
                f"messages 20, after=({from_end:,} from the end)",
                f"/conversations/{big}/messages?take=20&after={data.last_message - from_end}",
            ),
            # Word ranks 100 and 300: each in 1-4% of messages, together in a few hundred.
            ("search, two words", f"/search?q={words[99]}+{words[299]}&take=20"),
            ("search, a phrase", f"/search?q=%22{words[99]}+{words[299]}%22&take=20"),
            ("search, two words, one excluded", f"/search?q={words[99]}+-{words[299]}&take=20"),
            # Ranks 1 and 2: in most messages (listed newest first: issue 25).
            ("search, two of the commonest words", f"/search?q={words[0]}+{words[1]}&take=20"),
            # The edges of the newest-first plan: rank 1,500, past the 2,000 ranked matches
            # (3,031) but rarer than any word the statistics list; ranks 21 and 22 as a
            # phrase, common words (24,000 fields hold both) seldom side by side (1,046).
            ("search, a word just past the ranked limit", f"/search?q={words[1499]}&take=20"),
            (
                "search, a phrase of two common words",
                f"/search?q=%22{words[20]}+{words[21]}%22&take=20",
            ),
        ]
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
        runs = [(name, path, key, args.connections) for name, path in queries]
        # A report's latency alone (one client), and under the load the others are timed at.
        runs += [(f"{name}, 1 connection", path, bearer, 1) for name, path, bearer in usage_queries]
        runs += [(name, path, bearer, args.connections) for name, path, bearer in usage_queries]
        if args.only:
            # The first list query stays as a yardstick of the machine's load.
            yardstick, *others = runs
            runs = [run for run in others if args.only in run[0]]
            runs.insert(0, yardstick)
        # "get one" draws among the key's user's conversations: ids of them, every owners-th.
        ids = -(-data.conversations // data.owners)
        pick = f"({first} + (math.random(1, ids) - 1) * {data.owners})"
        log = Path(tempfile.mkdtemp(prefix="convstore-bench-")) / "gunicorn.log"
        rows = []
        with WebProcess(env, log) as web:
            base = f"http://127.0.0.1:{web.port}"
            for name, path, bearer, connections in runs:
                script = wrk_script("GET", path, {"Authorization": f"Bearer {bearer}"})
                script = script.replace("math.random(1, ids)", pick)
                threads = min(2, connections)  # wrk wants a connection per thread
                run_wrk(base, script, connections=connections, seconds=1, ids=ids, threads=threads)
                result = run_wrk(
                    base,
                    script,
                    connections=connections,
                    seconds=args.seconds,
                    ids=ids,
                    threads=threads,
                )
                rows.append((name, result))
                print(f"{name}: p50 {result.p50_ms:.1f} ms", file=sys.stderr)
    finally:
        if not args.database and not args.keep:
            drop_database(url)

    seeding = f"seeded by COPY in {data.seconds} s" if data.seconds else "seeded earlier"
    print(
        f"Scale benchmark, {time.strftime('%Y-%m-%d')}, {platform.node()}: {os.cpu_count()} "
        f"cores, Python {platform.python_version()}; {data.conversations:,} conversations and "
        f"{data.messages:,} messages over {DAYS} days owned by {data.owners} user(s) "
        f"({seeding}); {rebuild.format(rollups)}; "
        f"wrk {args.connections} connections, {args.seconds:g} s per query.\n"
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
