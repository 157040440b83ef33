"""Operating the service: request logs, CORS, a reverse proxy in front, the self-hosted docs."""

from __future__ import annotations

import json
import logging
import re
from urllib.parse import urlencode

import flask_migrate
import pytest
from flask import request, url_for

from app.services import users as users_service
from app.web.cors import EXPOSED_HEADERS
from app.web.logs import REQUEST_LOGGER, JsonFormatter, TextFormatter
from tests.conftest import bearer, disposing, make_app
from tests.fake_llm import Behavior
from tests.procfile import WebProcess, create_user, deployment_env, release

ALLOWED_ORIGIN = "https://chat.example.com"


@pytest.fixture(scope="module")
def ops_app(tmp_path_factory):
    """An app with CORS for one origin and one trusted proxy, on its own SQLite database."""
    url = f"sqlite:///{tmp_path_factory.mktemp('ops') / 'ops.db'}"
    with disposing(make_app(url, CORS_ORIGINS=(ALLOWED_ORIGIN,), TRUSTED_PROXIES=1)) as app:
        with app.app_context():
            flask_migrate.upgrade()
            key = users_service.create_user("ops").secret
        app.config["TEST_KEY"] = key
        yield app


@pytest.fixture
def ops_client(ops_app):
    return ops_app.test_client()


def request_records(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == REQUEST_LOGGER]


class TestRequestLog:
    def test_one_line_per_request_with_route_template_and_no_query(self, client, alice, caplog):
        conversation = client.post("/conversations", json={"title": "t"}).json["id"]
        caplog.clear()

        with caplog.at_level(logging.INFO, logger=REQUEST_LOGGER):
            # (An undeclared parameter is a 422: the query holds only declared ones.)
            query = f"metadata[note]=my+secret+prompt&after={conversation}"
            with client.get(f"/conversations?{query}") as response:
                request_id = response.headers["X-Request-ID"]

        (record,) = request_records(caplog)
        assert record.getMessage() == "GET /conversations 200"
        assert record.method == "GET"
        assert record.route == "/conversations"
        assert record.status == 200
        assert record.request_id == request_id
        assert record.user_id == alice.user_id
        assert record.client == "127.0.0.1"
        assert isinstance(record.duration_ms, float)
        assert "secret" not in json.dumps(JsonFormatter().format(record))

    def test_unmatched_routes_and_anonymous_requests_are_logged_too(self, anonymous, caplog):
        with caplog.at_level(logging.INFO, logger=REQUEST_LOGGER):
            with anonymous.get("/nowhere?x=1"):
                pass
            with anonymous.get("/conversations"):
                pass

        lines = [(r.getMessage(), r.user_id) for r in request_records(caplog)]
        assert lines == [("GET (no route) 404", None), ("GET /conversations 401", None)]

    def test_application_logs_carry_the_request_id(self, app, alice, caplog):
        seen: list[logging.LogRecord] = []

        class Keep(logging.Handler):
            def emit(self, record):
                seen.append(record)

        handler = Keep()
        from app.web.logs import RequestContextFilter

        handler.addFilter(RequestContextFilter())
        logging.getLogger("test.app").addHandler(handler)
        try:
            with app.test_request_context("/", headers={"X-Request-ID": "trace-me-42"}):
                app.preprocess_request()
                logging.getLogger("test.app").warning("something happened")
        finally:
            logging.getLogger("test.app").removeHandler(handler)

        assert [(r.getMessage(), r.request_id) for r in seen] == [
            ("something happened", "trace-me-42")
        ]


class TestFormats:
    def record(self, **extra) -> logging.LogRecord:
        record = logging.LogRecord("app.request", logging.INFO, "f.py", 1, "GET /x 200", None, None)
        record.created = 1_780_000_000.5
        record.__dict__.update(extra)
        return record

    def test_json_is_one_object_per_line(self):
        line = JsonFormatter().format(
            self.record(request_id="r1", user_id=7, method="GET", status=200, duration_ms=1.5)
        )

        assert "\n" not in line
        parsed = json.loads(line)
        assert parsed == {
            "time": "2026-05-28T20:26:40.500+00:00",
            "level": "INFO",
            "logger": "app.request",
            "pid": parsed["pid"],
            "message": "GET /x 200",
            "request_id": "r1",
            "user_id": 7,
            "method": "GET",
            "status": 200,
            "duration_ms": 1.5,
        }

    def test_text_has_time_level_process_and_request(self):
        line = TextFormatter().format(self.record(request_id="r1", user_id=7, status=200))

        assert re.fullmatch(
            r"2026-05-28T20:26:40\.500\+00:00 INFO \[\d+\] app\.request request=r1 user=7: "
            r"GET /x 200 status=200",
            line,
        )


def concrete(rule: str) -> str:
    return re.sub(r"<[^>]+>", "1", rule)


class TestCors:
    def api_rules(self, app):
        return [
            rule
            for rule in app.url_map.iter_rules()
            if not rule.rule.startswith("/docs") and rule.rule != "/openapi.json"
        ]

    def test_every_api_route_answers_the_preflight_of_an_allowed_origin(self, ops_app):
        client = ops_app.test_client()
        rules = self.api_rules(ops_app)
        streaming = {"/conversations/<id:conversation_id>/messages", "/text/generate/stream"}
        assert streaming <= {rule.rule for rule in rules}

        for rule in rules:
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                response = client.options(
                    concrete(rule.rule),
                    headers={
                        "Origin": ALLOWED_ORIGIN,
                        "Access-Control-Request-Method": method,
                        "Access-Control-Request-Headers": "authorization, content-type",
                    },
                )
                allowed_methods = response.headers["Access-Control-Allow-Methods"].split(", ")
                allowed_headers = response.headers["Access-Control-Allow-Headers"]
                assert (rule.rule, method, response.status_code) == (rule.rule, method, 200)
                assert response.headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN
                assert method in allowed_methods
                assert allowed_headers == "authorization, content-type"

    def test_responses_expose_the_streaming_paging_and_rate_limit_headers(self, ops_app):
        client = ops_app.test_client()
        key = ops_app.config["TEST_KEY"]

        response = client.post(
            "/conversations", json={}, headers={"Origin": ALLOWED_ORIGIN, **bearer(key)}
        )

        assert response.status_code == 201
        assert response.headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN
        exposed = set(response.headers["Access-Control-Expose-Headers"].split(", "))
        assert exposed == set(EXPOSED_HEADERS)
        assert {"Location", "X-Request-ID", "Retry-After", "X-RateLimit-Remaining"} <= exposed

    def test_errors_carry_cors_headers_so_a_browser_can_read_them(self, ops_client):
        response = ops_client.get("/conversations", headers={"Origin": ALLOWED_ORIGIN})

        assert response.status_code == 401
        assert response.headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN

    def test_an_origin_not_listed_gets_no_cors_headers(self, ops_client):
        response = ops_client.options(
            "/conversations",
            headers={
                "Origin": "https://evil.example.com",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization",
            },
        )

        assert [h for h, _ in response.headers if h.startswith("Access-Control")] == []

    def test_no_origin_is_allowed_by_default(self, anonymous):
        response = anonymous.options(
            "/conversations",
            headers={"Origin": ALLOWED_ORIGIN, "Access-Control-Request-Method": "GET"},
        )

        assert "Access-Control-Allow-Origin" not in response.headers


class TestBehindAProxy:
    FORWARDED = {
        "X-Forwarded-For": "203.0.113.7",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "api.example.com",
        "X-Forwarded-Port": "443",
        "X-Forwarded-Prefix": "/convstore",
    }

    @pytest.fixture
    def seen(self, ops_app):
        """What the app saw of each request: scheme, host, client, an external URL."""
        seen: list[tuple[str, ...]] = []

        def record(response):
            link = url_for("health.Liveness", _external=True) if request.url_rule else ""
            seen.append((request.scheme, request.host, request.remote_addr or "", link))
            return response

        ops_app.after_request_funcs.setdefault(None, []).append(record)
        yield seen
        ops_app.after_request_funcs[None].remove(record)

    def test_location_scheme_host_and_client_come_from_the_proxy(self, ops_app, seen):
        client = ops_app.test_client()
        headers = {**bearer(ops_app.config["TEST_KEY"]), **self.FORWARDED}

        response = client.post("/conversations", json={}, headers=headers)

        assert response.status_code == 201
        assert response.headers["Location"] == f"/convstore/conversations/{response.json['id']}"
        assert seen == [
            ("https", "api.example.com", "203.0.113.7", "https://api.example.com/convstore/healthz")
        ]

    def test_the_docs_page_carries_the_prefix(self, ops_app):
        page = ops_app.test_client().get("/docs", headers=self.FORWARDED).get_data(as_text=True)

        assert 'src="/convstore/docs/assets/swagger-ui-bundle.js"' in page
        assert '"url": "/convstore/openapi.json"' in page

    def test_only_the_last_hop_is_trusted(self, ops_app, seen):
        headers = {**self.FORWARDED, "X-Forwarded-For": "6.6.6.6, 203.0.113.7"}

        ops_app.test_client().get("/healthz", headers=headers)

        assert seen[0][2] == "203.0.113.7"

    def test_without_trusted_proxies_forwarded_headers_are_ignored(self, app, anonymous):
        seen: list[tuple[str, str, str]] = []

        def record(response):
            seen.append((request.scheme, request.host, request.remote_addr or ""))
            return response

        app.after_request_funcs.setdefault(None, []).append(record)
        try:
            anonymous.get("/healthz", headers=self.FORWARDED)
        finally:
            app.after_request_funcs[None].remove(record)

        assert seen == [("http", "localhost", "127.0.0.1")]


class TestDocs:
    def test_the_page_loads_nothing_from_elsewhere(self, anonymous):
        response = anonymous.get("/docs")
        page = response.get_data(as_text=True)

        assert response.status_code == 200
        assert response.mimetype == "text/html"
        sources = re.findall(r'(?:src|href)="([^"]+)"', page)
        assert sources == [
            "/docs/assets/favicon-32x32.png",
            "/docs/assets/swagger-ui.css",
            "/docs/assets/index.css",
            "/docs/assets/swagger-ui-bundle.js",
            "/docs/docs.js",
        ]
        assert "http://" not in page
        assert "https://" not in page
        csp = response.headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp
        assert "script-src 'self';" in csp
        assert "connect-src 'self'" in csp

    @pytest.mark.parametrize(
        ("path", "mimetype"),
        [
            ("/docs/assets/swagger-ui-bundle.js", "text/javascript"),
            ("/docs/assets/swagger-ui.css", "text/css"),
            ("/docs/docs.js", "text/javascript"),
        ],
    )
    def test_assets_are_served_by_the_service(self, anonymous, path, mimetype):
        with anonymous.get(path) as response:
            assert response.status_code == 200
            assert response.mimetype == mimetype
            assert len(response.get_data()) > 100

    def test_swagger_ui_is_the_pinned_version_with_its_licence(self, anonymous):
        with anonymous.get("/docs/assets/VERSION") as version:
            assert version.get_data(as_text=True).strip() == "v5.34.0"
        with anonymous.get("/docs/assets/LICENSE") as licence:
            assert "Apache License" in licence.get_data(as_text=True)

    @pytest.mark.parametrize(
        "path", ["/docs/assets/README.md", "/docs/assets/../flask_swagger_ui.py", "/docs/x"]
    )
    def test_anything_else_is_a_json_404(self, anonymous, path):
        response = anonymous.get(path)

        assert response.status_code == 404
        assert response.json["code"] == 404


@pytest.mark.parametrize("access_log", [None, "-"], ids=["default", "gunicorn-access-log-on"])
def test_under_gunicorn_one_json_line_per_request_and_no_prompt_anywhere(
    tmp_path, llm_server, fake_llm, access_log
):
    fake_llm.behavior = Behavior(n_tokens=3)
    env = deployment_env(f"sqlite:///{tmp_path / 'logs.db'}", llm_server.base_url, LOG_LEVEL="INFO")
    del env["GUNICORN_ACCESS_LOG"]  # the default: gunicorn's own access log is off
    if access_log:
        env["GUNICORN_ACCESS_LOG"] = access_log
    release(env)
    key = create_user(env, "logged")
    prompt = "Swordfish is the password to my heart"
    with WebProcess(env, tmp_path / "gunicorn.log") as web:
        web.headers = {**bearer(key), "X-Request-ID": "trace-stream-1"}
        conversation = web.create_conversation()
        query = urlencode({"prompt": prompt, "conversation_id": conversation})
        status, body = web.request("GET", f"/text/generate/stream?{query}")
    output = (tmp_path / "gunicorn.log").read_text()

    assert (status, body) == (200, b"tok0 tok1 tok2 ")
    assert "Swordfish" not in output
    assert "tok1" not in output
    access = [line for line in output.splitlines() if not line.startswith("{")]
    # gunicorn's own access lines, when turned on, show the path without its query.
    assert [line.split('"')[1] for line in access if "/text/" in line] == (
        ["GET /text/generate/stream HTTP/1.1"] if access_log else []
    )
    if not access_log:
        assert access == []  # every line is JSON
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    served = [line for line in lines if line["logger"] == REQUEST_LOGGER]
    assert [line["route"] for line in served if line["route"] != "/readyz"] == [
        "/conversations",
        "/text/generate/stream",
    ]
    (stream,) = [line for line in served if line["route"] == "/text/generate/stream"]
    assert {k: stream[k] for k in ("level", "message", "request_id", "user_id", "method")} == {
        "level": "INFO",
        "message": "GET /text/generate/stream 200",
        "request_id": "trace-stream-1",
        "user_id": 1,
        "method": "GET",
    }
    assert stream["status"] == 200
    assert isinstance(stream["duration_ms"], float)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", stream["time"])
