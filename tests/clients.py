"""What the real-client tests share (tests/gateway/test_clients.py for /v1/chat/completions,
tests/responses/test_responses_clients.py for /v1/responses): the service under gunicorn
with a user's key and reads of what it saved, the chats' prompts and the fake model's
answers, the tool the clients run, and node for the npm clients (tests/js)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.fake_llm import Behavior
from tests.procfile import WebProcess, create_user, deployment_env, release, wait_until

MODEL = "fake-model"
ANSWER = ["Héllo ", "wörld ", "🌍"]
# As no client resends it: spaced oddly, ASCII-escaped. Every client that parses and
# re-serializes the arguments sends other bytes back.
ARGUMENTS = '{ "q" :"d\\u00e9j\\u00e0 vu" }'
TOOL_LOOP = Behavior(
    tokens=["Déjà ", "vu ", "means ", "seen"],
    tool_calls=[{"id": "call_lookup_1", "name": "lookup", "arguments": ARGUMENTS}],
    tool_loop=True,
)
JS = Path(__file__).resolve().parent / "js"

Received = dict[str, list[dict[str, Any]]]


def lookup(q: str) -> str:
    """Look something up."""
    return f"result for {q}"


class Deployment:
    """The service under gunicorn, a user's key, and reads of what it saved."""

    def __init__(self, web: WebProcess, engine: sa.Engine, key: str) -> None:
        self.web, self.engine, self.key = web, engine, key
        self.base_url = f"http://127.0.0.1:{web.port}/v1"

    def last_conversation(self) -> int:
        with self.engine.connect() as connection:
            return connection.scalar(sa.text("SELECT coalesce(max(id), 0) FROM conversations"))

    def conversations_after(self, last: int) -> list[int]:
        with self.engine.connect() as connection:
            return list(
                connection.scalars(
                    sa.text("SELECT id FROM conversations WHERE id > :last ORDER BY id"),
                    {"last": last},
                )
            )

    def exchanges(self, conversation_id: int, count: int) -> list[sa.Row]:
        """The conversation's exchanges once ``count`` of them have ended (a stream's save
        may land just after the client read its last event)."""
        query = sa.text(
            "SELECT * FROM messages WHERE conversation_id = :c AND is_success IS NOT NULL"
            " ORDER BY id"
        )

        def ended() -> list[sa.Row]:
            with self.engine.connect() as connection:
                return connection.execute(query, {"c": conversation_id}).all()

        assert wait_until(lambda: len(ended()) >= count), ended()
        return ended()


def deploy(
    backend: str, database_factory: Any, llm_server: Any, log_dir: Path
) -> Iterator[Deployment]:
    """One gunicorn (per backend) on a database migrated by the release, requests made
    through ``web`` carrying the user's key; for a module-scoped fixture."""
    url = database_factory(backend)
    env = deployment_env(url, llm_server.base_url)
    release(env)
    key = create_user(env, "alice")
    engine = sa.create_engine(url)
    with WebProcess(env, log_dir / "gunicorn.log") as web:
        web.headers = {"Authorization": f"Bearer {key}"}
        yield Deployment(web, engine, key)
    engine.dispose()


def node() -> str:
    """Node and tests/js's packages; in CI their absence fails the suite instead of skipping."""
    path = shutil.which("node")
    if path is None or not (JS / "node_modules").is_dir():
        message = "Node 20 and `npm ci --prefix tests/js` are needed for the npm clients' tests"
        if os.environ.get("CI"):
            pytest.fail(f"CI requires Node. {message}", pytrace=False)
        pytest.skip(message)
    return path


def run_node(script: str, args: list[str], base_url: str, key: str) -> Received:
    """Run one of tests/js's drivers against ``base_url``; what it printed, as JSON."""
    done = subprocess.run(
        [node(), script, *args],
        cwd=JS,
        env={**os.environ, "BASE_URL": base_url, "API_KEY": key, "MODEL": MODEL},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def answer(content: Any, calls: list[tuple[str, str, Any]]) -> dict[str, Any]:
    """One answer as a client received it: its text and its tool calls (arguments parsed)."""
    return {
        "content": content or "",
        "tool_calls": [{"id": i, "name": n, "arguments": a} for i, n, a in calls],
    }


def as_json(value: Any) -> Any:
    """A JSON column's value (SQLite returns its text)."""
    return json.loads(value) if isinstance(value, str) else value


def chat_requests(fake_llm: Any) -> list[dict[str, Any]]:
    """The upstream's chat requests, titles left out (they come after their exchange)."""
    return [
        r.body
        for r in fake_llm.requests
        if r.path.endswith("/chat/completions") and r.body.get("max_tokens") != 24
    ]


def saved_answer(row: sa.Row) -> dict[str, Any]:
    """An exchange's answer as saved, in ``answer``'s form."""
    calls = as_json(row.tool_calls) or []
    return answer(
        row.response_content,
        [(c["id"], c["function"]["name"], json.loads(c["function"]["arguments"])) for c in calls],
    )
