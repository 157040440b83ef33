"""In a real browser (Debian's headless Chromium) against the service under gunicorn.

Every request the browser makes to anywhere but the origins a test allows is aborted and
recorded, so a page that needs the internet fails here as it would on a machine without it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import sqlalchemy as sa

from tests.fake_llm import Behavior
from tests.procfile import WebProcess, create_user, deployment_env, release

WAIT_MS = 30_000  # an upper bound for the browser to get somewhere, never an expectation


class Offline:
    """Abort every request outside ``allowed`` origins, and remember it."""

    def __init__(self, *allowed: str) -> None:
        self.allowed = allowed
        self.blocked: list[str] = []

    def __call__(self, route) -> None:
        url = route.request.url
        if url.startswith(tuple(f"{origin}/" for origin in self.allowed)):
            route.continue_()
        else:
            self.blocked.append(url)
            route.abort("internetdisconnected")


def serve(tmp_path, llm_server, **settings: str) -> tuple[WebProcess, str, str]:
    """Start the service on a fresh SQLite database; returns it, its origin and a key."""
    url = f"sqlite:///{tmp_path / 'browser.db'}"
    env = deployment_env(url, llm_server.base_url, **settings)
    release(env)
    key = create_user(env, "browser")
    web = WebProcess(env, tmp_path / "gunicorn.log").start()
    web.headers = {"Authorization": f"Bearer {key}"}
    return web, f"http://127.0.0.1:{web.port}", key


def test_docs_work_offline_authorize_and_try_it_out(browser, tmp_path, llm_server):
    web, origin, key = serve(tmp_path, llm_server)
    try:
        context = browser.new_context()
        offline = Offline(origin)
        context.route("**/*", offline)
        page = context.new_page()
        problems: list[str] = []
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda error: problems.append(str(error)))

        page.goto(f"{origin}/docs")
        create = page.locator(".opblock-post:has([data-path='/conversations'])")
        create.wait_for(timeout=WAIT_MS)
        paths = page.locator(".opblock-summary-path").all_inner_texts()

        page.click("button.authorize")
        page.locator(".modal-ux input").first.fill(key)
        page.click(".modal-ux .auth-btn-wrapper button.authorize")
        page.click(".modal-ux .auth-btn-wrapper button.btn-done")

        create.locator(".opblock-summary").click()
        create.locator("button.try-out__btn").click()
        create.locator("textarea.body-param__text").fill('{"title": "from the docs"}')
        create.locator("button.execute").click()
        status = create.locator(".live-responses-table tbody .response-col_status").first
        status.wait_for(timeout=WAIT_MS)
        status_text = status.inner_text()
        context.close()

        listed = web.request("GET", "/conversations")
    finally:
        web.stop()

    assert "/conversations" in [path.replace("\u200b", "") for path in paths]
    assert status_text.strip() == "201"
    assert [c["title"] for c in json.loads(listed[1])] == ["from the docs"]
    assert offline.blocked == []
    assert problems == []


# The page a web client on another origin would serve: it streams an answer with fetch and
# shows each delta as it arrives.
CLIENT_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>client</title></head>
<body><div id="out"></div><div id="request-id"></div><div id="status"></div>
<script>
async function run() {
  const params = new URLSearchParams(location.search);
  const out = document.getElementById("out");
  try {
    const response = await fetch(params.get("api") + "/conversations/" +
        params.get("conversation") + "/messages", {
      method: "POST",
      headers: {"Authorization": "Bearer " + params.get("key"),
                "Content-Type": "application/json"},
      body: JSON.stringify({prompt: "hello from a browser", stream: true}),
    });
    document.getElementById("request-id").textContent = response.headers.get("X-Request-ID");
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "", deltas = 0, last = "";
    for (;;) {
      const {value, done} = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, {stream: true});
      let end;
      while ((end = buffer.indexOf("\\n\\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const event = /^event: (.*)$/m.exec(block);
        const data = /^data: (.*)$/m.exec(block);
        if (!event || !data) continue;
        last = event[1];
        if (last === "delta") {
          const piece = document.createElement("span");
          piece.className = "delta";
          piece.textContent = JSON.parse(data[1]).text;
          out.appendChild(piece);
        }
      }
    }
    document.getElementById("status").textContent = last;
  } catch (error) {
    document.getElementById("status").textContent = "blocked: " + error.name;
  }
}
run();
</script></body></html>
"""


class _PageHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = CLIENT_PAGE.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def web_client_origins() -> Iterator[tuple[str, str]]:
    """Two origins serving the client page: one the service will allow, one it will not."""
    servers = [ThreadingHTTPServer(("127.0.0.1", 0), _PageHandler) for _ in range(2)]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    yield tuple(f"http://127.0.0.1:{s.server_address[1]}" for s in servers)  # type: ignore[misc]
    for server in servers:
        server.shutdown()
        server.server_close()


def run_client(browser, page_origin: str, api: str, key: str, conversation: int):
    # Watched, not routed: with request interception on, Playwright answers CORS preflights
    # itself, and the service's own answer is what is under test.
    context = browser.new_context()
    page = context.new_page()
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(f"{page_origin}/?api={api}&key={key}&conversation={conversation}")
    page.wait_for_function("document.getElementById('status').textContent !== ''", timeout=WAIT_MS)
    result = {
        "status": page.inner_text("#status"),
        "deltas": page.locator("#out .delta").evaluate_all("els => els.map(e => e.textContent)"),
        "request_id": page.inner_text("#request-id"),
    }
    context.close()
    elsewhere = [url for url in requests if not url.startswith((f"{page_origin}/", f"{api}/"))]
    return result, elsewhere


def test_a_page_on_an_allowed_origin_streams_and_another_is_blocked(
    browser, tmp_path, llm_server, fake_llm, web_client_origins
):
    allowed, other = web_client_origins
    fake_llm.behavior = Behavior(n_tokens=5, delay=0.05)
    web, api, key = serve(tmp_path, llm_server, CORS_ORIGINS=allowed)
    try:
        conversation = web.create_conversation()
        streamed, elsewhere_streamed = run_client(browser, allowed, api, key, conversation)
        refused, elsewhere_refused = run_client(browser, other, api, key, conversation)
    finally:
        web.stop()
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'browser.db'}")
    with engine.connect() as connection:
        prompts = connection.execute(sa.text("SELECT prompt_content FROM messages")).all()
    engine.dispose()

    assert streamed["status"] == "done"
    assert streamed["deltas"] == [f"tok{i} " for i in range(5)]
    assert streamed["request_id"] != ""  # an exposed header the script may read
    assert refused == {"status": "blocked: TypeError", "deltas": [], "request_id": ""}
    # The preflight was refused, so the browser never sent the prompt.
    assert [row.prompt_content for row in prompts] == ["hello from a browser"]
    assert elsewhere_streamed == elsewhere_refused == []
