"""The three statements a stream's guarantees need, timed alone: the history read, the
prompt's INSERT and the save (the exchange's ending), each in the service's thread CPU.

Issue 25's relay budget is 2x the bare relay's CPU per stream plus these three; give their
sum to bench/streaming.py as ``--statements-ms``. In-process (like bench/ab.py), on a fresh
PostgreSQL database, through the app's own code: ConversationRepository.generation_context
and MessageRepository.insert under one_statement, as app/services/generation.py's
begin_exchange calls them, and generation._save. The conversation holds a full history
(HISTORY_MAX_MESSAGES exchanges of ``--tokens`` tokens), as in a long benchmark run. Each
round runs the three in turn, then begin_exchange whole (history read + INSERT, the cross-
check) and the save of its row, untimed. Prints each one's median and p90 (ms) and the sum.
The database server's own CPU is not counted, as in bench/streaming.py's service CPU; nor is
gevent's (no monkey-patching in-process, as in bench/ab.py).

    .venv/bin/python -m bench.statements                     # 400 rounds
    .venv/bin/python -m bench.statements --streams 20        # a smoke run
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import create_bench_conversation, create_database, drop_database  # noqa: E402
from tests.procfile import create_user, release  # noqa: E402


def fill_history(url: str, conversation_id: int, exchanges: int, tokens: int) -> None:
    """``exchanges`` complete exchanges in the conversation, as streams leave them: each
    the parent of the next, the last one current."""
    now = datetime.now(UTC)
    engine = sa.create_engine(url)
    insert = sa.text(
        "INSERT INTO messages (conversation_id, parent_id, prompt_content, response_content, "
        "is_success, status_code, outcome, created_at, updated_at) "
        "VALUES (:c, :parent, :p, :r, true, 200, 'complete', :t, :t) RETURNING id"
    )
    with engine.begin() as connection:
        parent = connection.scalar(
            sa.text("SELECT current_message_id FROM conversations WHERE id = :c"),
            {"c": conversation_id},
        )
        for i in range(exchanges):
            values = {"c": conversation_id, "p": f"history {i}", "r": "token " * tokens}
            parent = connection.scalar(insert, {**values, "parent": parent, "t": now})
        connection.execute(
            sa.text(
                "UPDATE conversations SET current_message_id = :m,"
                " message_count = message_count + :n WHERE id = :c"
            ),
            {"m": parent, "n": exchanges, "c": conversation_id},
        )
    engine.dispose()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] * 1000


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=400, help="rounds timed")
    parser.add_argument("--tokens", type=int, default=20, help="tokens of each saved answer")
    args = parser.parse_args(argv)

    url = create_database("postgresql")
    env = {"DATABASE_URL": url, "LOG_LEVEL": "WARNING", "RATELIMIT_ENABLED": "false"}
    try:
        release(env)
        create_user(env, "bench")
        os.environ.update(env)
        conversation_id = create_bench_conversation(url)
        times = run(conversation_id, args)
    finally:
        drop_database(url)
    report(times, args)


def run(conversation_id: int, args: argparse.Namespace) -> dict[str, list[float]]:
    from app import create_app
    from app.exchange.lifecycle import PendingExchange
    from app.extensions import db
    from app.models import User, utcnow
    from app.repositories import ConversationRepository, MessageRepository
    from app.services import generation
    from app.services.auth import Principal
    from app.services.unit_of_work import one_statement

    app = create_app()
    limit = app.config["HISTORY_MAX_MESSAGES"]
    with app.app_context():
        user = db.session.scalars(sa.select(User).where(User.name == "bench")).one()
        actor = Principal(user.id, user.name, user.role)
        url = db.engine.url.render_as_string(hide_password=False)
    fill_history(url, conversation_id, limit, args.tokens)
    answer = "token " * args.tokens

    def save(message_id: int) -> None:
        pending = PendingExchange(
            message_id=message_id,
            conversation_id=conversation_id,
            model="bench",
            prompt="p",
            messages=(),
            needs_title=False,
            endpoint="text",
            request_id=None,
            received_at=time.perf_counter(),
        )
        values = {
            "response_content": answer,
            "reasoning_content": None,
            "is_success": True,
            "outcome": "complete",
            "status_code": 200,
            "finish_reason": "stop",
            "prompt_tokens": 10,
            "response_tokens": args.tokens,
            "total_tokens": 10 + args.tokens,
            "ttft_ms": 5,
            "duration_ms": 1000,
        }
        generation._save(SimpleNamespace(app=app, pending=pending), values)

    times: dict[str, list[float]] = {"history read": [], "prompt INSERT": [], "save": []}
    times["begin_exchange (cross-check)"] = []
    warm_up = 30
    for n in range(warm_up + args.streams):
        with app.app_context():
            started = time.thread_time()
            repository = ConversationRepository(db.session, actor.scope)
            context = repository.generation_context(conversation_id, limit)
            read = time.thread_time()
            assert context is not None
            assert len(context.exchanges) == limit
        with app.app_context():
            inserting = time.thread_time()
            with one_statement() as session:
                message_id = MessageRepository(session).insert(
                    {
                        "conversation_id": conversation_id,
                        "parent_id": context.parent_id,
                        "prompt_content": f"p{n}",
                        "model": context.model_type,
                        "endpoint": "text",
                        "request_id": None,
                        "heartbeat_at": utcnow(),
                    }
                )
            inserted = time.thread_time()
        save(message_id)
        saved = time.thread_time()
        with app.app_context():
            beginning = time.thread_time()
            pending = generation.begin_exchange(actor, conversation_id, f"q{n}", "text")
            begun = time.thread_time()
        save(pending.message_id)
        if n >= warm_up:
            times["history read"].append(read - started)
            times["prompt INSERT"].append(inserted - inserting)
            times["save"].append(saved - inserted)
            times["begin_exchange (cross-check)"].append(begun - beginning)
    with app.app_context():
        db.engine.dispose()
    return times


def report(times: dict[str, list[float]], args: argparse.Namespace) -> None:
    print(
        f"The three statements per stream, {args.streams} rounds, answers of {args.tokens} "
        f"tokens, full history; thread CPU of the service's side (load average "
        f"{os.getloadavg()[0]:.2f}).\n"
    )
    print("| statement | median ms | p90 ms |")
    print("|---|---|---|")
    for name, values in times.items():
        print(
            f"| {name} | {statistics.median(values) * 1000:.3f} | {percentile(values, 0.9):.3f} |"
        )
    total = sum(statistics.median(times[k]) for k in ("history read", "prompt INSERT", "save"))
    print(
        f"\nThe three, sum of medians: {total * 1000:.3f} ms (--statements-ms {total * 1000:.2f})"
    )


if __name__ == "__main__":
    main()
