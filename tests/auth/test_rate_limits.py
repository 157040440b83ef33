"""Rate limits per user: exact across workers and instances through the real Redis, fail-open
when Redis goes away, per process with the embedded memory:// default."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlencode

import flask_migrate
import pytest
import redis

from app.services import users as users_service
from tests.conftest import disposing, keyed_client, make_app
from tests.procfile import WebProcess, create_user, deployment_env, free_port, release

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The machine's Redis (CI starts it); a missing one fails in CI, skips elsewhere."""
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as error:
        message = f"Redis is unreachable at {REDIS_URL} (set TEST_REDIS_URL): {error}"
        if os.environ.get("CI"):
            pytest.fail(f"CI requires Redis. {message}", pytrace=False)
        pytest.skip(message)
    return REDIS_URL


def limited_env(url, llm_base_url, redis_url, **settings):
    """A deployment with limits on, counting in ``redis_url`` under a prefix of its own."""
    return deployment_env(
        url,
        llm_base_url,
        RATELIMIT_ENABLED="true",
        RATELIMIT_STORAGE_URL=redis_url,
        RATELIMIT_KEY_PREFIX=f"test-{uuid.uuid4().hex}",
        **settings,
    )


def generate(web, conversation_id) -> tuple[int, dict[str, str], bytes]:
    connection = web.connection(timeout=60)
    query = urlencode({"prompt": "hi", "conversation_id": conversation_id})
    connection.request("GET", f"/text/generate/stream?{query}", headers=web.headers)
    response = connection.getresponse()
    body = response.read()
    connection.close()
    return response.status, dict(response.getheaders()), body


@pytest.fixture(scope="module")
def limited_deployment(backend, database_factory, llm_server, redis_url, tmp_path_factory):
    """One deployment per backend with 5 generation requests a minute; each test acts as a
    user of its own, so their counts never meet."""
    url = database_factory(backend)
    env = limited_env(url, llm_server.base_url, redis_url, RATE_LIMIT_GENERATION="5/minute")
    release(env)
    with WebProcess(env, tmp_path_factory.mktemp("limits") / "gunicorn.log") as web:
        yield web, env


@pytest.fixture
def served_with_limits(limited_deployment):
    web, env = limited_deployment
    key = create_user(env, f"user-{uuid.uuid4().hex[:12]}")
    web.headers = {"Authorization": f"Bearer {key}"}
    return web, env, key


def test_exactly_the_limit_passes_across_both_workers_then_429(served_with_limits, fake_llm):
    web, _, _ = served_with_limits
    conversation_id = web.create_conversation()

    # Ten at once: with a count per worker, up to ten would pass on two workers.
    with ThreadPoolExecutor(max_workers=10) as pool:
        results = list(pool.map(lambda _: generate(web, conversation_id), range(10)))

    statuses = sorted(status for status, _, _ in results)
    assert statuses == [200] * 5 + [429] * 5
    refused = next(headers for status, headers, _ in results if status == 429)
    assert refused["X-RateLimit-Limit"] == "5"
    assert refused["X-RateLimit-Remaining"] == "0"
    assert 0 < int(refused["Retry-After"]) <= 60
    assert int(refused["X-RateLimit-Reset"]) > time.time()
    assert len(fake_llm.requests) == 5


def test_a_refusal_is_the_json_error_shape(served_with_limits, fake_llm):
    web, _, _ = served_with_limits
    conversation_id = web.create_conversation()
    for _ in range(5):
        assert generate(web, conversation_id)[0] == 200

    status, headers, body = generate(web, conversation_id)

    assert status == 429
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body) == {
        "code": 429,
        "status": "Too Many Requests",
        "message": "Too many generation requests: at most 5/minute; retry after the reset.",
    }


def test_a_second_instance_on_the_same_redis_shares_the_count(
    served_with_limits, fake_llm, tmp_path
):
    web, env, key = served_with_limits
    conversation_id = web.create_conversation()
    for _ in range(3):
        assert generate(web, conversation_id)[0] == 200

    with WebProcess(env, tmp_path / "second.log") as second:
        second.headers = {"Authorization": f"Bearer {key}"}
        statuses = [generate(second, conversation_id)[0] for _ in range(3)]

    assert statuses == [200, 200, 429]


def test_other_requests_have_their_own_budget_and_headers(served_with_limits, fake_llm):
    web, _, _ = served_with_limits
    conversation_id = web.create_conversation()
    for _ in range(5):
        generate(web, conversation_id)

    status, _ = web.request("GET", f"/conversations/{conversation_id}")
    connection = web.connection()
    connection.request("GET", "/conversations", headers=web.headers)
    listed = connection.getresponse()
    listed.read()
    connection.close()

    assert status == 200
    assert listed.status == 200
    assert listed.getheader("X-RateLimit-Limit") == "600"


def test_redis_stopping_mid_run_fails_open(
    backend, database_factory, llm_server, fake_llm, tmp_path
):
    port = free_port()
    private = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        redis_url = f"redis://127.0.0.1:{port}/0"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                redis.Redis.from_url(redis_url).ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        url = database_factory(backend)
        # One worker: its one warning per interval is then the log's only one.
        env = limited_env(
            url,
            llm_server.base_url,
            redis_url,
            RATE_LIMIT_GENERATION="100/minute",
            WEB_CONCURRENCY="1",
        )
        release(env)
        key = create_user(env, "open")
        with WebProcess(env, tmp_path / "gunicorn.log") as web:
            web.headers = {"Authorization": f"Bearer {key}"}
            conversation_id = web.create_conversation()
            before = generate(web, conversation_id)

            private.kill()
            private.wait()
            after = [generate(web, conversation_id) for _ in range(3)]
            listed, _ = web.request("GET", "/conversations")
        log = (tmp_path / "gunicorn.log").read_text()
    finally:
        private.kill()
        private.wait()

    assert before[0] == 200
    assert before[1]["X-RateLimit-Limit"] == "100"
    assert [status for status, _, _ in after] == [200, 200, 200]
    assert all(body == b"tok0 tok1 tok2 tok3 tok4 " for _, _, body in after)
    assert listed == 200
    # Warned, without a traceback per request: once per worker per interval.
    assert log.count("rate-limit storage unreachable") == 1
    assert "Traceback" not in log


@pytest.fixture
def limited_app(backend, database_factory, llm_server):
    """An app with limits on (memory://, one per-process count), 2 requests a minute."""
    app = make_app(
        database_factory(backend),
        OPENAI_BASE_URL=llm_server.base_url,
        RATELIMIT_ENABLED=True,
        RATE_LIMIT_DEFAULT="2/minute",
    )
    with disposing(app):
        with app.app_context():
            flask_migrate.upgrade()
        yield app


def account(app, name):
    with app.app_context():
        return keyed_client(app, users_service.create_user(name).secret)


def test_the_embedded_default_counts_in_the_process(limited_app):
    client = account(limited_app, "alice")

    statuses = [client.get("/conversations").status_code for _ in range(3)]

    assert statuses == [200, 200, 429]


def test_limits_follow_the_key_not_the_address(limited_app):
    first, second = account(limited_app, "one"), account(limited_app, "two")

    statuses = [
        first.get("/conversations").status_code,
        first.get("/conversations").status_code,
        second.get("/conversations").status_code,
        first.get("/conversations").status_code,
    ]

    assert statuses == [200, 200, 200, 429]


def test_probes_are_never_limited(limited_app):
    probe = limited_app.test_client()

    statuses = [probe.get("/healthz").status_code for _ in range(4)]

    assert statuses == [200] * 4


class TestOwnLimits:
    def test_a_users_own_rpm_replaces_the_service_wide_one(self, limited_app, fake_llm):
        client = account(limited_app, "alice")
        runner = limited_app.test_cli_runner()
        assert runner.invoke(args=["users", "limits", "alice", "--rpm", "2"]).exit_code == 0
        conversation_id = client.post("/conversations", json={"title": "t"}).json["id"]
        query = {"prompt": "hi", "conversation_id": conversation_id}

        statuses = [
            client.get("/text/generate/stream", query_string=query).status_code for _ in range(3)
        ]

        assert statuses == [200, 200, 429]

    def test_the_cli_sets_shows_and_clears_them(self, limited_app):
        account(limited_app, "bob")
        runner = limited_app.test_cli_runner()

        set_ = runner.invoke(
            args=["users", "limits", "bob", "--rpm", "5", "--tokens-per-day", "9000"]
        )
        listed = runner.invoke(args=["users", "list"]).output
        cleared = runner.invoke(args=["users", "limits", "bob", "--clear"])
        listed_after = runner.invoke(args=["users", "list"]).output

        assert set_.exit_code == 0
        assert set_.output.startswith("bob: generation 5/minute, 9000 tokens/day;")
        assert "bob\tuser\t" in listed
        assert listed.rstrip().endswith("generation 5/minute, 9000 tokens/day")
        assert cleared.output.startswith(
            "bob: generation 60/minute (default), no token budget (default);"
        )
        assert listed_after.rstrip().endswith(
            "generation 60/minute (default), no token budget (default)"
        )

    def test_the_cli_wants_something_to_set(self, limited_app):
        account(limited_app, "carol")

        result = limited_app.test_cli_runner().invoke(args=["users", "limits", "carol"])

        assert result.exit_code == 2
        assert "give --rpm, --tokens-per-day, --retention-days or --clear" in result.output

    def test_an_unknown_user_is_one_line(self, limited_app):
        result = limited_app.test_cli_runner().invoke(
            args=["users", "limits", "nobody", "--rpm", "1"]
        )

        assert result.exit_code == 1
        assert "nobody" in result.output


def test_the_gateway_is_limited_as_generation_in_openai_shape(limited_app, fake_llm):
    client = account(limited_app, "dora")
    runner = limited_app.test_cli_runner()
    assert runner.invoke(args=["users", "limits", "dora", "--rpm", "1"]).exit_code == 0
    body = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]}

    first = client.post("/v1/chat/completions", json=body)
    refused = client.post("/v1/chat/completions", json=body)

    assert first.status_code == 200
    assert refused.status_code == 429
    assert set(refused.json) == {"error"}
    assert refused.json["error"]["message"].startswith("Too many generation requests: at most 1/")
    assert refused.headers["X-RateLimit-Limit"] == "1"
    assert int(refused.headers["Retry-After"]) > 0
    assert len(fake_llm.requests) == 1


def test_regenerating_is_limited_as_generation(limited_app, fake_llm):
    client = account(limited_app, "alice")
    runner = limited_app.test_cli_runner()
    # Generation 3 a minute; everything else 2 (the conversation's POST takes one).
    assert runner.invoke(args=["users", "limits", "alice", "--rpm", "3"]).exit_code == 0
    conversation_id = client.post("/conversations", json={"title": "t"}).json["id"]
    url = f"/conversations/{conversation_id}/messages"
    first = client.post(url, json={"prompt": "hi"}).json

    statuses = [
        client.post(f"{url}/{first['id']}/regenerate", json={}).status_code for _ in range(3)
    ]

    assert statuses == [201, 201, 429]


def test_responses_are_limited_as_generation_in_openai_shape(limited_app, fake_llm):
    client = account(limited_app, "erin")
    runner = limited_app.test_cli_runner()
    # Generation 2 a minute; reads of the stored responses count against the other limit.
    assert runner.invoke(args=["users", "limits", "erin", "--rpm", "2"]).exit_code == 0
    body = {"model": "fake-model", "input": "hi", "store": False}

    statuses = [client.post("/v1/responses", json=body).status_code for _ in range(3)]

    assert statuses == [200, 200, 429]
    # Not a generation request: still served (the first response's own conversation).
    assert client.get("/v1/conversations/conv_1").status_code == 200
    assert len(fake_llm.requests) == 2


def test_only_a_storage_failure_is_logged_as_one(limited_app, caplog):
    """Issue 20 (10): every flask-limiter record, a plain 429's included, was rewritten into
    "storage unreachable" and used up the interval's one warning."""
    (reporter,) = [f for f in logging.getLogger("flask-limiter").filters if hasattr(f, "seconds")]
    reporter._next = 0.0  # the interval's slot free, whatever ran before in this process
    client = account(limited_app, "alice")
    dead_storage = make_app(
        limited_app.config["SQLALCHEMY_DATABASE_URI"],
        RATELIMIT_ENABLED=True,
        RATELIMIT_STORAGE_URL="redis://127.0.0.1:9/0",  # nothing listens there
    )

    with caplog.at_level(logging.INFO, logger="flask-limiter"):
        statuses = [client.get("/conversations").status_code for _ in range(3)]
        refused = [r.getMessage() for r in caplog.records]
        caplog.clear()
        with disposing(dead_storage):
            served = keyed_client(dead_storage, client.environ_base["HTTP_AUTHORIZATION"][7:])
            unlimited = served.get("/conversations").status_code
        failed = [(r.levelname, r.getMessage()) for r in caplog.records]

    assert statuses == [200, 200, 429]
    assert not any("unreachable" in line for line in refused)
    assert unlimited == 200
    assert len(failed) == 1
    assert failed[0][0] == "WARNING"
    assert failed[0][1].startswith("rate-limit storage unreachable; serving requests unlimited")
