"""Usage: daily rollups kept exactly in step with the messages, and GET /usage read from them."""

from __future__ import annotations

import bisect
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.models import Conversation, Message, User
from app.models.usage import LATENCY_BUCKETS_MS, USAGE_SHARDS, UsageDaily, latency_columns
from app.services import users as users_service
from app.services.usage import percentile
from tests.conftest import keyed_client
from tests.fake_llm import Behavior
from tests.generation import parse_sse, post_stream, stream_text

OUTCOMES = ("complete", "failed", "client_closed", "interrupted")
SUMS = (
    "calls",
    "rate_limited",
    "prompt_tokens",
    "response_tokens",
    "total_tokens",
    "estimated",
    "estimated_tokens",
)
BUCKETS = (*latency_columns("ttft"), *latency_columns("duration"))
TITLE_USAGE = {"prompt_tokens": 40, "completion_tokens": 4, "total_tokens": 44}


def bucket(value: int) -> int:
    """The index of the histogram bucket holding ``value`` ms: (previous bound, bound]."""
    return bisect.bisect_left(LATENCY_BUCKETS_MS, value)


def expected_rollups(app) -> dict[tuple, dict[str, int]]:
    """The exchange rollups, computed straight from the messages."""
    with app.app_context():
        rows = db.session.execute(
            sa.select(Message, Conversation.owner_id).join(Conversation)
        ).all()
    rollups: dict[tuple, dict[str, int]] = defaultdict(lambda: dict.fromkeys(SUMS + BUCKETS, 0))
    for message, owner_id in rows:
        if message.outcome is None:
            continue
        key = (owner_id, message.created_at.date(), message.model or "", message.outcome)
        sums = rollups[key]
        sums["calls"] += 1
        sums["rate_limited"] += message.status_code == 429
        sums["prompt_tokens"] += message.prompt_tokens or 0
        sums["response_tokens"] += message.response_tokens or 0
        sums["total_tokens"] += message.total_tokens or 0
        sums["estimated"] += message.usage_estimated
        sums["estimated_tokens"] += (message.total_tokens or 0) if message.usage_estimated else 0
        for measure, value in (("ttft", message.ttft_ms), ("duration", message.duration_ms)):
            if value is not None:
                sums[latency_columns(measure)[bucket(value)]] += 1
    return dict(rollups)


def stored_rollups(app, kind: str = "exchange") -> dict[tuple, dict[str, int]]:
    """The rollups as stored, their shards added up (each must be in its exchanges' shard)."""
    with app.app_context():
        rows = db.session.scalars(sa.select(UsageDaily).where(UsageDaily.kind == kind)).all()
        shards = db.session.execute(
            sa.select(Message.id % USAGE_SHARDS).where(Message.outcome.is_not(None))
        ).scalars()
        if kind == "exchange":
            assert {r.shard for r in rows} == set(shards)
    rollups: dict[tuple, dict[str, int]] = defaultdict(lambda: dict.fromkeys(SUMS + BUCKETS, 0))
    for r in rows:
        sums = rollups[(r.owner_id, r.day, r.model, r.outcome)]
        for name in SUMS + BUCKETS:
            sums[name] += getattr(r, name)
    return dict(rollups)


def expected_report(app, group_by: tuple[str, ...], owner_id: int | None = None) -> list[dict]:
    """What /usage must answer, computed from the messages (and the title rows for titles)."""
    groups: dict[tuple, dict] = {}
    names = {"day": 1, "model": 2, "user": 0}
    for key, sums in expected_rollups(app).items():
        if owner_id is not None and key[0] != owner_id:
            continue
        group = tuple(key[names[name]] for name in group_by)
        row = groups.setdefault(group, {"sums": dict.fromkeys(SUMS + BUCKETS, 0), "by": {}})
        for name, value in sums.items():
            row["sums"][name] += value
        row["by"][key[3]] = row["by"].get(key[3], 0) + sums["calls"]
    report = []
    for group, row in sorted(groups.items()):
        sums, by = row["sums"], row["by"]
        values = dict(zip(group_by, group, strict=True))
        report.append(
            {
                "day": values["day"].isoformat() if "day" in values else None,
                "model": (values.get("model") or None) if "model" in values else None,
                "user_id": values.get("user"),
                "exchanges": sums["calls"],
                "succeeded": by.get("complete", 0),
                "failed": sums["calls"] - by.get("complete", 0),
                "outcomes": {
                    **{outcome: by.get(outcome, 0) for outcome in OUTCOMES},
                    "rate_limited": sums["rate_limited"],
                },
                "prompt_tokens": sums["prompt_tokens"],
                "response_tokens": sums["response_tokens"],
                "total_tokens": sums["total_tokens"],
                "title_tokens": 0,
                "estimated": {
                    "exchanges": sums["estimated"],
                    "total_tokens": sums["estimated_tokens"],
                },
                **{
                    f"{measure}_ms": {
                        "p50": percentile([sums[c] for c in latency_columns(measure)], 0.5),
                        "p95": percentile([sums[c] for c in latency_columns(measure)], 0.95),
                    }
                    for measure in ("ttft", "duration")
                },
            }
        )
    return report


@pytest.fixture
def mixed_run(pooled_app, fake_llm):
    """Successes, upstream failures (one rate limited), a break mid-stream, hang-ups, a
    dead worker's exchange reaped, and one reaped then ended by its owner after all; by
    alice (two models) and bob. Returns (alice's client, bob's id, an admin client)."""
    app = pooled_app
    alice = keyed_client(app, app.config["TEST_KEY"])
    with app.app_context():
        bob_key = users_service.create_user("bob").secret
        admin_key = users_service.create_user("root", admin=True).secret
        bob_id = db.session.scalar(sa.select(User.id).where(User.name == "bob"))
    bob = keyed_client(app, bob_key)

    def conversation(client, model):
        body = {"title": "t", "model_type": model}
        return client.post("/conversations", json=body).json["id"]

    a1, a2, b1 = conversation(alice, "model-a"), conversation(alice, "model-b"), None
    b1 = conversation(bob, "model-a")

    fake_llm.behavior = Behavior(tokens=["a", "b", "c"])
    assert alice.post(f"/conversations/{a1}/messages", json={"prompt": "p"}).status_code == 201
    assert stream_text(alice, a1).status_code == 200
    post_stream(alice, a2)
    fake_llm.behavior = Behavior(tokens=["x"] * 7, usage={"prompt_tokens": 11})
    assert bob.post(f"/conversations/{b1}/messages", json={"prompt": "p"}).status_code == 201
    fake_llm.behavior = Behavior(error_status=500)
    assert alice.post(f"/conversations/{a1}/messages", json={"prompt": "p"}).status_code == 502
    fake_llm.behavior = Behavior(error_status=429)
    assert bob.post(f"/conversations/{b1}/messages", json={"prompt": "p"}).status_code == 429
    fake_llm.behavior = Behavior(n_tokens=5, break_after=2)
    post_stream(alice, a2)
    # No usage from the upstream: charged an estimate; and one cut off by the time limit.
    fake_llm.behavior = Behavior(tokens=["e"], send_usage=False)
    assert bob.post(f"/conversations/{b1}/messages", json={"prompt": "p"}).status_code == 201
    app.config["GENERATION_TIMEOUT"] = 0.3
    fake_llm.behavior = Behavior(n_tokens=40, delay=0.05)
    assert parse_sse(post_stream(alice, a1).data)[-1][1]["code"] == 504
    app.config["GENERATION_TIMEOUT"] = 0

    # Hang-ups: the client reads one piece and leaves.
    fake_llm.behavior = Behavior(n_tokens=40, delay=0.02)
    for client, cid in ((alice, a1), (bob, b1)):
        response = post_stream(client, cid, buffered=False)
        next(iter(response.response))
        response.close()

    # A worker dies mid-stream: its exchange is reaped, then (as after a long outage) its
    # owner's ending arrives after all and replaces the reaper's guess.
    live = app.extensions["live_exchanges"]
    survivor = stream_text(alice, a2, buffered=False)
    pieces = iter(survivor.response)
    next(pieces)
    next(pieces)
    (exchange,) = live._live.values()
    live.discard(exchange)
    # And a worker of three days ago left one in progress that nobody ended.
    three_days_ago = datetime.now(UTC) - timedelta(days=3)
    with app.app_context():
        db.session.add(
            Message(
                conversation_id=b1,
                prompt_content="p",
                model="model-a",
                endpoint="text",
                created_at=three_days_ago,
                heartbeat_at=three_days_ago,
            )
        )
        db.session.commit()
    live.stale_after = 0
    assert live.tick(reap=True)[1] == 2
    survivor.close()
    return alice, bob_id, keyed_client(app, admin_key)


def test_rollups_agree_exactly_with_the_messages_after_a_mixed_run(pooled_app, mixed_run):
    expected = expected_rollups(pooled_app)

    assert stored_rollups(pooled_app) == expected
    outcomes = {key[3] for key in expected}
    assert outcomes == set(OUTCOMES)
    assert sum(sums["rate_limited"] for sums in expected.values()) == 1
    assert sum(sums["calls"] for sums in expected.values()) == 13
    # Estimated: the reaped, the hung up, the timed out, the one without usage, the break.
    assert sum(sums["estimated"] for sums in expected.values()) == 7
    with pooled_app.app_context():
        timed_out = sa.select(sa.func.count()).where(Message.finish_reason == "timeout")
        assert db.session.scalar(timed_out) == 1


@pytest.mark.parametrize(
    "group_by", [(), ("day",), ("model",), ("user",), ("day", "model"), ("day", "model", "user")]
)
def test_usage_answers_what_the_messages_say(pooled_app, mixed_run, group_by):
    _alice, _bob_id, admin = mixed_run
    query = {"owner": "all", "from": (date.today() - timedelta(days=5)).isoformat()}
    if group_by:
        query["group_by"] = ",".join(group_by)

    response = admin.get("/usage", query_string=query)

    assert response.status_code == 200
    assert response.json["group_by"] == list(group_by)
    assert response.json["rows"] == expected_report(pooled_app, group_by)


def test_a_user_sees_their_own_usage_and_an_admin_anyones(pooled_app, mixed_run):
    alice, bob_id, admin = mixed_run
    week_ago = (date.today() - timedelta(days=7)).isoformat()
    with pooled_app.app_context():
        alice_id = db.session.scalar(sa.select(User.id).where(User.name == "alice"))

    mine = alice.get("/usage", query_string={"group_by": "model", "from": week_ago})
    bobs = admin.get("/usage", query_string={"owner": bob_id, "group_by": "model"})

    assert mine.status_code == 200
    assert mine.json["rows"] == expected_report(pooled_app, ("model",), alice_id)
    assert [row["model"] for row in mine.json["rows"]] == ["model-a", "model-b"]
    assert bobs.json["rows"] == expected_report(pooled_app, ("model",), bob_id)
    assert alice.get("/usage", query_string={"owner": alice_id}).status_code == 200
    for owner in ("all", bob_id):
        forbidden = alice.get("/usage", query_string={"owner": owner})
        assert forbidden.status_code == 403
        assert forbidden.json["message"] == "Only an admin can see other users' usage."


def test_rebuild_recomputes_the_rollups_and_keeps_title_usage(pooled_app, mixed_run):
    with pooled_app.app_context():
        owner = db.session.scalar(sa.select(Conversation.owner_id).limit(1))
        db.session.execute(sa.update(UsageDaily).values(calls=UsageDaily.calls + 5))
        db.session.add(
            UsageDaily(
                owner_id=owner, day=date(2020, 1, 1), model="m", kind="title", outcome="", shard=0,
                calls=1, total_tokens=9,
            )
        )  # fmt: skip
        db.session.commit()

    result = pooled_app.test_cli_runner().invoke(args=["usage", "rebuild"])

    assert result.exit_code == 0, result.output
    assert "rebuilt the usage rollups" in result.output
    assert stored_rollups(pooled_app) == expected_rollups(pooled_app)
    assert stored_rollups(pooled_app, "title") == {
        (owner, date(2020, 1, 1), "m", ""): {
            **dict.fromkeys(SUMS + BUCKETS, 0), "calls": 1, "total_tokens": 9
        }
    }  # fmt: skip


def test_title_calls_count_as_title_tokens_not_exchanges(client, configure, fake_llm):
    configure(TITLE_MODEL="title-model")
    fake_llm.set_behavior(Behavior(tokens=["Trip"], usage=TITLE_USAGE), model="title-model")
    fake_llm.behavior = Behavior(tokens=["ok"], usage={"prompt_tokens": 3})
    untitled = client.post("/conversations", json={"model_type": "chat-model"}).json["id"]
    client.post(f"/conversations/{untitled}/messages", json={"prompt": "trip"}, buffered=True)

    response = client.get("/usage", query_string={"group_by": "model"})

    by_model = {row["model"]: row for row in response.json["rows"]}
    assert set(by_model) == {"chat-model", "title-model"}
    assert by_model["title-model"]["exchanges"] == 0
    assert by_model["title-model"]["title_tokens"] == 44
    assert by_model["title-model"]["total_tokens"] == 44
    assert (
        by_model["title-model"]["prompt_tokens"],
        by_model["title-model"]["response_tokens"],
    ) == (
        40,
        4,
    )
    assert by_model["chat-model"]["exchanges"] == 1
    assert by_model["chat-model"]["title_tokens"] == 0


def test_the_default_range_is_the_last_30_utc_days(client):
    response = client.get("/usage")

    today = datetime.now(UTC).date()
    assert response.status_code == 200
    assert response.json == {
        "from": (today - timedelta(days=29)).isoformat(),
        "to": today.isoformat(),
        "group_by": [],
        "rows": [],
    }


def test_a_range_at_the_start_of_the_calendar_is_cut_there_not_a_500(client):
    response = client.get("/usage", query_string={"to": "0001-01-05"})

    assert response.status_code == 200
    assert (response.json["from"], response.json["to"]) == ("0001-01-01", "0001-01-05")


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"from": "2026-02-01", "to": "2026-01-01"}, "to"),
        ({"from": "2024-01-01", "to": "2026-01-01"}, "to"),
        ({"from": "yesterday"}, "from"),
        ({"from": "2999-01-01"}, "to"),  # after today, the default end
        ({"group_by": "day,week"}, "group_by"),
        ({"owner": "everyone"}, "owner"),
    ],
)
def test_invalid_queries_are_422(client, query, field):
    response = client.get("/usage", query_string=query)

    assert response.status_code == 422
    assert field in response.json["errors"]["query"]


def test_percentiles_are_the_upper_bound_of_the_bucket_holding_them():
    counts = [0] * (len(LATENCY_BUCKETS_MS) + 1)
    for value in [120] * 50 + [480] * 45 + [9000] * 5:  # 100 values
        counts[bucket(value)] += 1

    assert (percentile(counts, 0.5), percentile(counts, 0.95)) == (150, 500)
    assert percentile([0] * len(counts), 0.5) is None
    assert percentile([0] * len(LATENCY_BUCKETS_MS) + [3], 0.5) == LATENCY_BUCKETS_MS[-1]
