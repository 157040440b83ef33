"""The A/B benchmarks' requests: their environment, data, and one function per target.

Imports nothing of the app, so a worker can load it before the checkout it measures.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bench.common import create_bench_conversation

TARGETS = ("text", "v1", "responses", "responses_unstored", "get", "list")

Send = Callable[[int], Any]


def ab_env(database_url: str, llm_port: int) -> dict[str, str]:
    """The service's settings for an A/B run: the fake LLM on ``llm_port``, limits off, quiet."""
    return {
        "DATABASE_URL": database_url,
        "OPENAI_BASE_URL": f"http://127.0.0.1:{llm_port}/v1",
        "OPENAI_API_KEY": "bench",
        "LOG_LEVEL": "WARNING",
        "RATELIMIT_ENABLED": "false",
    }


def create_target_data(database_url: str, target: str) -> int:
    """The bench user's conversation the requests go to (and, for ``list``, a full page of
    20); returns its id."""
    conversation_id = create_bench_conversation(database_url)
    if target == "list":
        for _ in range(19):
            create_bench_conversation(database_url)
    return conversation_id


def request_functions(client: Any, key: str, conversation_id: int) -> dict[str, Send]:
    """Each target's request ``n``, sent through a Flask test client as the key's user."""
    headers = {"Authorization": f"Bearer {key}"}

    def text(n: int) -> Any:
        query = {"prompt": f"p{n}", "conversation_id": conversation_id}
        return client.get(
            "/text/generate/stream", query_string=query, headers=headers, buffered=False
        )

    def v1(n: int) -> Any:
        body = {
            "model": "bench",
            "stream": True,
            "messages": [{"role": "user", "content": f"p{n}"}],
        }
        return client.post(
            "/v1/chat/completions",
            json=body,
            buffered=False,
            headers={**headers, "X-Conversation-Id": str(conversation_id)},
        )

    def responses(n: int) -> Any:
        """Into the bench conversation, after its last 20 exchanges (truncation: auto)."""
        body = {
            "model": "bench",
            "stream": True,
            "input": f"p{n}",
            "conversation": f"conv_{conversation_id}",
            "truncation": "auto",
        }
        return client.post("/v1/responses", json=body, buffered=False, headers=headers)

    def responses_unstored(n: int) -> Any:
        """No context (store: false), as the /v1 call sends none: the translation alone."""
        body = {"model": "bench", "stream": True, "input": f"p{n}", "store": False}
        return client.post("/v1/responses", json=body, buffered=False, headers=headers)

    def get(n: int) -> Any:
        return client.get(f"/conversations/{conversation_id}", headers=headers)

    def page(n: int) -> Any:
        return client.get("/conversations?take=20", headers=headers)

    return {
        "text": text,
        "v1": v1,
        "responses": responses,
        "responses_unstored": responses_unstored,
        "get": get,
        "list": page,
    }


def drain(response: Any) -> None:
    """Read a response to its end and close it, as a client would (a stream saves on close)."""
    for _ in response.response:
        pass
    response.close()
