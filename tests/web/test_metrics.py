"""GET /metrics: Prometheus counts that match a known workload, across gunicorn's workers."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlencode

import pytest
import sqlalchemy as sa

from tests.fake_llm import Behavior
from tests.procfile import WebProcess, create_user, deployment_env, release, wait_until
from tests.prometheus import samples, value

USAGE = {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12}
TEXT_ROUTE = "/text/generate/stream"
MODEL = "metrics-model"  # every conversation's, under gunicorn (DEFAULT_MODEL)


class TestInProcess:
    def test_public_without_a_token(self, anonymous):
        response = anonymous.get("/metrics")

        assert response.status_code == 200
        assert response.content_type.startswith("text/plain")
        assert "# TYPE convstore_exchanges_total counter" in response.get_data(as_text=True)

    def test_a_token_protects_it_when_set(self, anonymous, client, configure):
        configure(METRICS_TOKEN="scrape-secret")

        assert anonymous.get("/metrics").status_code == 401
        assert client.get("/metrics").status_code == 401  # an API key is not the token
        wrong = anonymous.get("/metrics", headers={"Authorization": "Bearer nope"})
        right = anonymous.get("/metrics", headers={"Authorization": "Bearer scrape-secret"})

        assert wrong.status_code == 401
        assert wrong.json["message"].startswith("Send the metrics token")
        assert right.status_code == 200

    def test_an_exchange_is_counted_once_with_its_tokens(self, client, anonymous, fake_llm):
        conversation_id = client.post(
            "/conversations", json={"title": "t", "model_type": "counted-model"}
        ).json["id"]
        fake_llm.behavior = Behavior(n_tokens=3, usage=USAGE)
        before = samples(anonymous.get("/metrics").get_data(as_text=True))

        client.post(f"/conversations/{conversation_id}/messages", json={"prompt": "p"})

        after = samples(anonymous.get("/metrics").get_data(as_text=True))
        exchanges = ("convstore_exchanges_total", {"endpoint": "messages", "outcome": "complete"})
        prompt = ("convstore_tokens_total", {"model": "counted-model", "kind": "prompt"})
        for (name, labels), delta in ((exchanges, 1), (prompt, 7)):
            assert value(after, name, **labels) - value(before, name, **labels) == delta


@pytest.fixture
def served(database_factory, llm_server, tmp_path):
    """The service under gunicorn, two workers, on PostgreSQL; no periodic reaping (its
    brief checkouts would make the pool gauge a race)."""
    url = database_factory("postgresql")
    env = deployment_env(
        url, llm_server.base_url, REAP_INTERVAL_SECONDS="3600", DEFAULT_MODEL=MODEL
    )
    release(env)
    key = create_user(env, "metrics")
    with WebProcess(env, tmp_path / "gunicorn.log") as web:
        web.headers = {"Authorization": f"Bearer {key}"}
        yield web
    sa.create_engine(url).dispose()


def stream(web, conversation_id: int) -> int:
    connection = web.connection(timeout=60)
    query = urlencode({"prompt": "p", "conversation_id": conversation_id})
    connection.request("GET", f"{TEXT_ROUTE}?{query}", headers=web.headers)
    response = connection.getresponse()
    response.read()
    connection.close()
    return response.status


def test_scrapes_count_a_known_workload_across_two_workers(served, fake_llm):
    web = served
    conversations = [web.create_conversation() for _ in range(2)]  # POST 201 x2
    for _ in range(3):
        assert web.request("GET", "/conversations")[0] == 200
    for _ in range(2):
        assert web.request("GET", "/conversations/999999")[0] == 404
    fake_llm.set_behavior(Behavior(n_tokens=5, delay=0.02, usage=USAGE))
    # Concurrent, so that both workers take some.
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(lambda n: stream(web, conversations[n % 2]), range(8)))
    fake_llm.set_behavior(Behavior(error_status=500))
    statuses += [stream(web, conversations[0]) for _ in range(2)]
    fake_llm.set_behavior(Behavior(error_status=429))
    statuses.append(stream(web, conversations[1]))
    assert statuses == [200] * 8 + [502, 502, 429]

    # A stream's duration is observed when its response closes, just after the client read
    # its last byte: wait until the last one closed (the counts asserted below are exact).
    duration = "convstore_http_request_duration_seconds_count"
    wait_until(
        lambda: (
            value(
                samples(web.get("/metrics")[1].decode()), duration, route=TEXT_ROUTE, method="GET"
            )
            >= 11
        )
    )

    # Several scrapes: whichever worker answers, it reports every worker's counts.
    scrapes = []
    for _ in range(4):
        status, body = web.get("/metrics")
        assert status == 200
        scrapes.append(samples(body.decode()))

    for scraped in scrapes:
        http = "convstore_http_requests_total"
        assert value(scraped, http, route="/conversations", method="POST", status="201") == 2
        assert value(scraped, http, route="/conversations", method="GET", status="200") == 3
        by_id = "/conversations/<id:conversation_id>"
        assert value(scraped, http, route=by_id, method="GET", status="404") == 2
        assert value(scraped, http, route=TEXT_ROUTE, method="GET", status="200") == 8
        assert value(scraped, http, route=TEXT_ROUTE, method="GET", status="502") == 2
        assert value(scraped, http, route=TEXT_ROUTE, method="GET", status="429") == 1
        assert value(scraped, duration, route=TEXT_ROUTE, method="GET") == 11
        exchanges = "convstore_exchanges_total"
        assert value(scraped, exchanges, endpoint="text", outcome="complete") == 8
        assert value(scraped, exchanges, endpoint="text", outcome="failed") == 3
        tokens = "convstore_tokens_total"
        assert value(scraped, tokens, model=MODEL, kind="prompt") == 8 * 7
        assert value(scraped, tokens, model=MODEL, kind="response") == 8 * 5
        assert value(scraped, "convstore_ttft_seconds_count", model=MODEL) == 8
        errors = "convstore_upstream_errors_total"
        assert value(scraped, errors, kind="status_500") == 2
        assert value(scraped, errors, kind="rate_limited") == 1
        assert value(scraped, "convstore_streams_in_flight") == 0
        assert value(scraped, "convstore_db_connections_checked_out") == 0
        assert value(scraped, "convstore_save_retries_total") == 0
        assert value(scraped, "convstore_exchanges_lost_total") == 0
