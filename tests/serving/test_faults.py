"""Faults under real gunicorn: the database restarting mid-stream, the LLM going silent.

The database restart runs against a PostgreSQL server of the test's own
(tests/postgres_instance.py), never the machine's shared one. Shutting down mid-stream
(SIGTERM) is tests/serving/test_gunicorn.py's; what the relay does with an upstream that fails is
tests/api/test_generation.py's, in-process. Here the question is whether a real deployment
comes through: streams relayed, exchanges saved, workers free for the next request.
"""

from __future__ import annotations

import http.client
import json
import os
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlencode

import pytest
import sqlalchemy as sa

from tests.fake_llm import Behavior
from tests.postgres_instance import PostgresInstance, PostgresUnavailable, find_bin_dir
from tests.procfile import WebProcess, create_user, deployment_env, release

STREAMS = 100
TOKENS = 30


def receive(web, conversation_id, prompt):
    """GET a plain-text stream: (status, body, cut_off), where cut_off means the body ended
    without its terminating chunk (the client can tell the answer is incomplete)."""
    connection = web.connection(timeout=60)
    try:
        query = urlencode({"prompt": prompt, "conversation_id": conversation_id})
        connection.request("GET", f"/text/generate/stream?{query}", headers=web.headers)
        response = connection.getresponse()
        try:
            return response.status, response.read(), False
        except http.client.IncompleteRead as cut:
            return response.status, cut.partial, True
    finally:
        connection.close()


def receive_all(web, conversation_id, prompts):
    with ThreadPoolExecutor(max_workers=len(prompts)) as pool:
        return list(pool.map(lambda prompt: receive(web, conversation_id, prompt), prompts))


def exchanges(url, conversation_id):
    """The conversation's saved exchanges, by prompt."""
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                sa.text(
                    "SELECT prompt_content, response_content, is_success, status_code"
                    " FROM messages WHERE conversation_id = :id"
                ),
                {"id": conversation_id},
            ).all()
    finally:
        engine.dispose()
    return {row.prompt_content: row for row in rows}


def text_of(n_tokens):
    return "".join(f"tok{i} " for i in range(n_tokens))


# --------------------------------------------------------------------------- database restart


@pytest.fixture(scope="module")
def own_postgres():
    """A PostgreSQL server only this module uses, so it may restart it; deleted afterwards."""
    try:
        instance = PostgresInstance(find_bin_dir())
    except PostgresUnavailable as missing:
        if os.environ.get("CI"):
            pytest.fail(f"CI requires a PostgreSQL server to restart: {missing}", pytrace=False)
        pytest.skip(f"cannot start a PostgreSQL server of the test's own: {missing}")
    with instance:
        yield instance


def test_a_database_restart_during_100_streams_loses_no_exchange(own_postgres, fake_llm, tmp_path):
    env = deployment_env(own_postgres.url, fake_llm.base_url)
    release(env)
    key = create_user(env, "restart")
    fake_llm.behavior = Behavior(n_tokens=TOKENS, delay=0.1)  # about 3 s per stream
    expected = text_of(TOKENS).encode()
    prompts = [f"stream {n}" for n in range(STREAMS)]
    log_path = tmp_path / "gunicorn.log"

    with WebProcess(env, log_path) as web, ThreadPoolExecutor(max_workers=STREAMS) as pool:
        web.headers = {"Authorization": f"Bearer {key}"}
        conversation_id = web.create_conversation()
        futures = [pool.submit(receive, web, conversation_id, prompt) for prompt in prompts]
        assert fake_llm.wait_for(lambda server: server.active_streams == STREAMS, timeout=30)

        own_postgres.restart()  # every pooled connection of both workers is now dead
        readiness = web.get("/readyz")
        creation = web.request("POST", "/conversations", {"title": "after the restart"})
        results = dict(zip(prompts, (future.result() for future in futures), strict=True))

    assert readiness[0] == 200, readiness
    assert creation[0] == 201, creation
    received = [prompt for prompt, result in results.items() if result == (200, expected, False)]
    saved = exchanges(own_postgres.url, conversation_id)
    lost = {
        prompt: saved[prompt][1:] if prompt in saved else "no row"
        for prompt in received
        if prompt not in saved
        or (saved[prompt].is_success, saved[prompt].status_code, saved[prompt].response_content)
        != (True, 200, expected.decode())
    }
    log_lines = [line for line in log_path.read_text().splitlines() if "persistence" in line]
    assert not lost, (
        f"{len(lost)} of {len(received)} streams the client received whole were not saved "
        f"complete: {lost}\ngunicorn log: {log_lines[-20:]}"
    )
    incomplete = {
        prompt: result[:2] for prompt, result in results.items() if prompt not in received
    }
    assert not incomplete, f"streams not relayed whole through the restart: {incomplete}"


# ------------------------------------------------------------------------- a silent upstream


@pytest.fixture(scope="module")
def served_impatiently(backend, database_factory, llm_server, tmp_path_factory):
    """The service under gunicorn, giving up on an LLM silent for a second (one per backend
    for this module's tests: each works in a conversation of its own)."""
    url = database_factory(backend)
    env = deployment_env(url, llm_server.base_url, OPENAI_READ_TIMEOUT="1")
    release(env)
    key = create_user(env, "impatient")
    log_path = tmp_path_factory.mktemp("gunicorn") / "gunicorn.log"
    with WebProcess(env, log_path) as web:
        web.headers = {"Authorization": f"Bearer {key}"}
        yield web, url


def assert_serves_streams(web, url, fake_llm, conversation_id, count=10):
    """``count`` concurrent ordinary streams are all relayed whole and saved."""
    fake_llm.behavior = Behavior(n_tokens=5)
    prompts = [f"afterwards {n}" for n in range(count)]

    results = receive_all(web, conversation_id, prompts)

    assert results == [(200, text_of(5).encode(), False)] * count
    saved = exchanges(url, conversation_id)
    assert [(saved[p].is_success, saved[p].status_code) for p in prompts] == [(True, 200)] * count


def test_an_upstream_silent_after_its_headers_is_a_504_and_frees_the_workers(
    served_impatiently, fake_llm
):
    web, url = served_impatiently
    fake_llm.behavior = Behavior(hang_after_headers=True)
    conversation_id = web.create_conversation()
    prompts = [f"hung {n}" for n in range(10)]

    results = receive_all(web, conversation_id, prompts)

    # No token was sent yet, so the status can still say what happened: a JSON 504.
    assert [(status, json.loads(body)["code"]) for status, body, _ in results] == [
        (504, 504)
    ] * len(prompts)
    saved = exchanges(url, conversation_id)
    assert {
        prompt: (row.is_success, row.status_code, row.response_content)
        for prompt, row in saved.items()
    } == dict.fromkeys(prompts, (False, 504, ""))
    # The hung upstream connections were closed, not left hanging in the workers.
    assert fake_llm.wait_for(lambda server: server.active_streams == 0, timeout=10)
    assert_serves_streams(web, url, fake_llm, conversation_id)


def test_an_upstream_silent_mid_answer_cuts_the_stream_and_saves_the_part(
    served_impatiently, fake_llm
):
    web, url = served_impatiently
    # The first token at once, then a silence far longer than the read time-out.
    fake_llm.behavior = Behavior(tokens=["Hello, wor", "ld!"], delay=60)
    conversation_id = web.create_conversation()

    status, body, cut_off = receive(web, conversation_id, "go quiet")

    assert (status, body, cut_off) == (200, b"Hello, wor", True)
    row = exchanges(url, conversation_id)["go quiet"]
    assert (row.is_success, row.status_code, row.response_content) == (False, 502, "Hello, wor")
    assert fake_llm.wait_for(lambda server: server.client_disconnects == 1, timeout=10)
    assert_serves_streams(web, url, fake_llm, conversation_id)
