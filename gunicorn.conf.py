"""gunicorn settings: ``gunicorn -c gunicorn.conf.py wsgi:app``. Every value can be overridden
by the environment variable named next to it."""

import multiprocessing
import os

# PaaS hosts hand out $PORT and expect every interface; locally stay on loopback.
bind = os.environ.get("GUNICORN_BIND") or (
    f"0.0.0.0:{os.environ['PORT']}" if os.environ.get("PORT") else "127.0.0.1:8000"
)

# gevent: one process per core, each holding many concurrent requests (long LLM streams
# included) on cooperative greenlets. psycopg 3 and httpx yield to the loop when gevent has
# patched the standard library, so a waiting stream costs a greenlet, not a thread.
# Measured on 2 cores (BENCHMARKS.md, 1 s streams): sync serves one stream per process, so
# 50 simultaneous streams took 25 s to drain; gthread with 100 threads a worker queues what
# exceeds its threads and doubled gevent's time to first token (200 streams: 338 ms against
# 49 ms p50); gevent held 1,000 concurrent streams with no error and every exchange saved.
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "gevent")
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count()))
worker_connections = int(os.environ.get("GUNICORN_WORKER_CONNECTIONS", "1000"))
# Only for the gthread worker class (kept for comparisons: see BENCHMARKS.md).
threads = int(os.environ.get("GUNICORN_THREADS", "1"))

# timeout is the heartbeat deadline of a worker's arbiter loop; gevent workers keep
# notifying while greenlets stream, so it does not cut long generations.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
# On SIGTERM, in-flight requests get this long to finish (and their exchanges to be saved).
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "120"))
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "5"))

# An empty GUNICORN_ACCESS_LOG turns the access log off.
accesslog = os.environ.get("GUNICORN_ACCESS_LOG", "-") or None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()

# gunicorn >= 25's control socket lives at one path per user: two instances on one host
# (blue/green, tests) would fight over it, and nothing here uses it.
control_socket_disable = True


def on_starting(server: object) -> None:
    """Prepare prometheus-client's multiprocess directory before any worker exists.

    Each worker writes its metrics to files there (the mode is chosen when a worker first
    imports prometheus_client, so the variable must be set now, in the master, and be
    inherited). Files of an earlier run would add to this run's counters: empty it. Without
    PROMETHEUS_MULTIPROC_DIR, a fresh temporary directory, removed on exit.
    """
    import tempfile
    from pathlib import Path

    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if path:
        directory = Path(path)
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.db"):
            stale.unlink()
    else:
        path = tempfile.mkdtemp(prefix="convstore-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
        _temporary_dirs.append(path)
        server.log.info("metrics directory: %s", path)  # type: ignore[attr-defined]


_temporary_dirs: list[str] = []


def child_exit(server: object, worker: object) -> None:
    """A worker exited: its live gauges (streams in flight, pool checkouts) stop counting."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[attr-defined]


def on_exit(server: object) -> None:
    """Remove the metrics directory this run created for itself."""
    import shutil

    for path in _temporary_dirs:
        shutil.rmtree(path, ignore_errors=True)


def when_ready(server: object) -> None:
    """Before workers start: close the exchanges a killed worker left in progress.

    A worker SIGKILLed mid-stream (past graceful_timeout) never runs its close hook; the
    workers' tickers reap such rows while the service runs, and this does it at once. Runs
    `flask messages reap` in a child process so the master never imports the app (gevent
    must patch the standard library in each worker before the app's imports).
    """
    import subprocess
    import sys
    from pathlib import Path

    command = [sys.executable, "-m", "flask", "--app", "wsgi", "messages", "reap"]
    try:
        done = subprocess.run(
            command, cwd=Path(__file__).parent, capture_output=True, text=True, timeout=60
        )
    except subprocess.TimeoutExpired:
        server.log.warning("reaping interrupted exchanges timed out")  # type: ignore[attr-defined]
        return
    if done.returncode == 0:
        server.log.info(done.stdout.strip())  # type: ignore[attr-defined]
    else:
        server.log.warning("reaping interrupted exchanges failed: %s", done.stderr[-2000:])  # type: ignore[attr-defined]


def _write_json_error(sock: object, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn's own error answer (a request line or header it cannot parse), as the JSON
    error shape every other error has, instead of its HTML page."""
    import json
    from http import HTTPStatus

    from gunicorn import util

    try:
        phrase = HTTPStatus(status_int).phrase
    except ValueError:
        phrase = reason
    body = json.dumps({"code": status_int, "status": phrase, "message": mesg}).encode()
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    util.write_nonblock(sock, head.encode("latin1") + body)


def post_worker_init(worker: object) -> None:
    """In each worker: answer gunicorn's own parse errors in JSON (see _write_json_error), and
    start the ticker that checkpoints live exchanges and reaps those of dead workers: a
    worker booted to replace a killed one reaps its rows even if no request comes."""
    from gunicorn import util

    util.write_error = _write_json_error
    app = worker.wsgi  # type: ignore[attr-defined]
    live = getattr(app, "extensions", {}).get("live_exchanges")
    if live is not None:
        live.start()
