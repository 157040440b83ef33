"""End to end: the Procfile's release and web commands, real gunicorn, real streams."""

from __future__ import annotations

import json
import socket
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlencode

import pytest
import sqlalchemy as sa

from tests.fake_llm import Behavior
from tests.procfile import WebProcess, create_user, deployment_env, release, wait_until
from tests.prometheus import samples, value

STREAMS = 200
CONVERSATIONS = 10
WORKERS = 2  # deployment_env's WEB_CONCURRENCY
DB_POOL_SIZE = 10  # the default


@pytest.fixture
def served(backend, database_factory, llm_server, tmp_path):
    """The service under gunicorn on a fresh database migrated by the release step."""
    url = database_factory(backend)
    env = deployment_env(url, llm_server.base_url)
    release(env)
    key = create_user(env, "e2e")
    engine = sa.create_engine(url)
    with WebProcess(env, tmp_path / "gunicorn.log") as web:
        web.headers = {"Authorization": f"Bearer {key}"}
        yield web, engine
    engine.dispose()


@pytest.fixture(scope="module")
def served_once(backend, database_factory, llm_server, tmp_path_factory):
    """One deployment per backend for the tests that never look at the database (its
    user's conversations are read over HTTP)."""
    env = deployment_env(database_factory(backend), llm_server.base_url)
    release(env)
    key = create_user(env, "once")
    with WebProcess(env, tmp_path_factory.mktemp("gunicorn") / "gunicorn.log") as web:
        web.headers = {"Authorization": f"Bearer {key}"}
        yield web


def stream(web, conversation_id, prompt) -> tuple[int, bytes]:
    connection = web.connection(timeout=120)
    query = urlencode({"prompt": prompt, "conversation_id": conversation_id})
    connection.request("GET", f"/text/generate/stream?{query}", headers=web.headers)
    response = connection.getresponse()
    body = response.read()
    connection.close()
    return response.status, body


def test_200_concurrent_streams_are_all_relayed_and_saved(served, fake_llm, backend):
    web, engine = served
    fake_llm.behavior = Behavior(n_tokens=20, delay=0.05)
    expected = "".join(f"tok{i} " for i in range(20)).encode()
    conversations = [web.create_conversation() for _ in range(CONVERSATIONS)]

    with ThreadPoolExecutor(max_workers=STREAMS) as pool:
        results = list(
            pool.map(
                lambda n: stream(web, conversations[n % CONVERSATIONS], f"prompt {n}"),
                range(STREAMS),
            )
        )

    assert [status for status, _ in results] == [200] * STREAMS
    assert all(body == expected for _, body in results)
    with engine.connect() as connection:
        saved = connection.execute(
            sa.text(
                "SELECT prompt_content, response_content, is_success, status_code FROM messages"
            )
        ).all()
    assert len(saved) == STREAMS
    assert {row.prompt_content for row in saved} == {f"prompt {n}" for n in range(STREAMS)}
    assert all(row.response_content == expected.decode() for row in saved)
    assert all((row.is_success, row.status_code) == (True, 200) for row in saved)
    if backend == "postgresql":
        # A fixed pool per worker: 200 streams open no connection beyond its DB_POOL_SIZE
        # (the one more is the start-up's `flask messages reap`, gunicorn.conf.py).
        status, body = web.get("/metrics")
        opened = value(samples(body.decode()), "convstore_db_connections_opened_total")
        assert status == 200
        assert opened <= WORKERS * DB_POOL_SIZE + 1


def test_a_client_hanging_up_is_saved_as_499_and_the_upstream_closed(served, fake_llm):
    web, engine = served
    fake_llm.behavior = Behavior(n_tokens=200, delay=0.02)
    conversation_id = web.create_conversation()

    with socket.create_connection(("127.0.0.1", web.port)) as sock:
        query = urlencode({"prompt": "hang up", "conversation_id": conversation_id})
        authorization = web.headers["Authorization"]
        sock.sendall(
            f"GET /text/generate/stream?{query} HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: {authorization}\r\n\r\n".encode()
        )
        received = b""
        while received.count(b"tok") < 5:
            received += sock.recv(65536)

    def row():
        with engine.connect() as connection:
            return connection.execute(
                sa.text("SELECT response_content, is_success, status_code FROM messages")
            ).one()

    assert wait_until(lambda: row().status_code is not None)
    text, is_success, status_code = row()
    assert (is_success, status_code) == (False, 499)
    assert text.startswith("tok0 tok1 tok2 tok3 tok4 ")
    assert len(text) < len("".join(f"tok{i} " for i in range(200)))
    assert fake_llm.wait_for(lambda server: server.client_disconnects == 1, timeout=10)


def test_start_up_reaps_exchanges_a_killed_worker_left_in_progress(
    backend, database_factory, llm_server, tmp_path
):
    url = database_factory(backend)
    env = {"DATABASE_URL": url, "OPENAI_BASE_URL": llm_server.base_url, "LOG_LEVEL": "INFO"}
    release(env)
    create_user(env, "owner")
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO conversations (title, model_type, owner_id, created_at, updated_at)"
                " VALUES ('t', 'm', 1, :t, :t)"
            ),
            {"t": "2000-01-01 00:00:00+00:00"},
        )
        connection.execute(
            sa.text(
                "INSERT INTO messages (conversation_id, prompt_content, response_content,"
                " created_at, updated_at) VALUES (1, 'killed mid-stream', '', :t, :t)"
            ),
            {"t": "2000-01-01 00:00:00+00:00"},
        )

    with WebProcess(env, tmp_path / "gunicorn.log"), engine.connect() as connection:
        row = connection.execute(sa.text("SELECT is_success, status_code FROM messages")).one()
    engine.dispose()

    assert (row.is_success, row.status_code) == (False, 500)
    assert "marked 1 interrupted exchange(s)" in (tmp_path / "gunicorn.log").read_text()


def test_sigterm_lets_in_flight_streams_finish_and_be_saved(served, fake_llm):
    web, engine = served
    fake_llm.behavior = Behavior(n_tokens=30, delay=0.05)  # about 1.5 s per stream
    expected = "".join(f"tok{i} " for i in range(30)).encode()
    conversation_id = web.create_conversation()

    with ThreadPoolExecutor(max_workers=20) as pool:
        futures = [pool.submit(stream, web, conversation_id, f"p{n}") for n in range(20)]
        assert fake_llm.wait_for(lambda server: server.active_streams == 20, timeout=10)
        exit_code = web.stop()
        results = [future.result() for future in futures]

    assert exit_code == 0
    assert results == [(200, expected)] * 20
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", web.port), timeout=2)
    with engine.connect() as connection:
        statuses = connection.execute(sa.text("SELECT status_code FROM messages")).scalars().all()
    assert statuses == [200] * 20


@pytest.mark.parametrize(
    ("request_head", "status"),
    [
        (b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n", 431),
        (b"NOT A REQUEST LINE\r\n\r\n", 400),
    ],
    ids=["request-line-too-long", "header-too-large", "malformed"],
)
def test_requests_gunicorn_cannot_parse_get_json_errors_too(served_once, request_head, status):
    web = served_once

    with socket.create_connection(("127.0.0.1", web.port), timeout=10) as sock:
        sock.sendall(request_head)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk

    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0].startswith(f"HTTP/1.1 {status} ".encode())
    assert b"Content-Type: application/json" in head
    assert json.loads(body)["code"] == status


def sse_stream(web, conversation_id, prompt) -> tuple[int, bytes]:
    connection = web.connection(timeout=120)
    connection.request(
        "POST",
        f"/conversations/{conversation_id}/messages",
        body=json.dumps({"prompt": prompt, "stream": True}),
        headers={**web.headers, "Content-Type": "application/json"},
    )
    response = connection.getresponse()
    body = response.read()
    connection.close()
    return response.status, body


def test_50_concurrent_sse_streams_under_gevent_relay_reasoning_keepalives_and_done(
    backend, database_factory, llm_server, fake_llm, tmp_path
):
    url = database_factory(backend)
    env = deployment_env(url, llm_server.base_url, SSE_KEEPALIVE_SECONDS="0.2")
    release(env)
    key = create_user(env, "sse")
    engine = sa.create_engine(url)
    # Half a second of silence before the reasoning, then thoughts and an answer.
    fake_llm.behavior = Behavior(
        filler=1, delay=0.5, reasoning=["Hmm", "..."], tokens=["An", " answer"]
    )
    with WebProcess(env, tmp_path / "gunicorn.log") as web:
        web.headers = {"Authorization": f"Bearer {key}"}
        conversations = [web.create_conversation() for _ in range(5)]
        with ThreadPoolExecutor(max_workers=50) as pool:
            results = list(
                pool.map(lambda n: sse_stream(web, conversations[n % 5], f"p{n}"), range(50))
            )
    with engine.connect() as connection:
        saved = connection.execute(
            sa.text("SELECT reasoning_content, response_content, outcome FROM messages")
        ).all()
    engine.dispose()

    for status, body in results:
        assert status == 200
        blocks = [block for block in body.decode().split("\n\n") if block]
        kinds = [block.split("\n")[0] for block in blocks]
        assert ": keep-alive" in kinds
        assert [k for k in kinds if k != ": keep-alive"] == [
            "event: reasoning",
            "event: reasoning",
            "event: delta",
            "event: delta",
            "event: done",
        ]
        done = json.loads(blocks[-1].split("data: ", 1)[1])["message"]
        assert (done["reasoning_content"], done["response_content"]) == ("Hmm...", "An answer")
    assert sorted(saved) == [("Hmm...", "An answer", "complete")] * 50


def test_regenerate_streamed_and_not_makes_current_siblings(served_once, fake_llm):
    web = served_once
    conversation_id = web.create_conversation("regenerate")
    url = f"/conversations/{conversation_id}/messages"
    status, body = web.request("POST", url, {"prompt": "one"})
    first = json.loads(body)
    status, body = web.request("POST", url, {"prompt": "two"})
    second = json.loads(body)

    status, body = web.request("POST", f"{url}/{second['id']}/regenerate", {})
    again = json.loads(body)
    streamed_status, streamed = web.request(
        "POST", f"{url}/{second['id']}/regenerate", {"stream": True}
    )

    assert status == 201
    assert (again["prompt_content"], again["parent_id"], again["siblings"]) == (
        "two",
        first["id"],
        1,
    )
    assert streamed_status == 200
    blocks = [block for block in streamed.decode().split("\n\n") if block]
    assert blocks[-1].startswith("event: done")
    done = json.loads(blocks[-1].split("data: ", 1)[1])["message"]
    assert (done["prompt_content"], done["parent_id"], done["siblings"]) == (
        "two",
        first["id"],
        2,
    )
    _, body = web.request("GET", f"/conversations/{conversation_id}")
    assert json.loads(body)["current_message_id"] == done["id"]
    _, body = web.request("GET", f"{url}?branch=all")
    assert [(m["id"], m["parent_id"]) for m in json.loads(body)] == [
        (first["id"], None),
        (second["id"], first["id"]),
        (again["id"], first["id"]),
        (done["id"], first["id"]),
    ]
