"""gunicorn settings: ``gunicorn -c gunicorn.conf.py wsgi:app``. Every value can be overridden
by the environment variable named next to it."""

import gc
import importlib.util
import multiprocessing
import os
import sys
from pathlib import Path
from typing import Any

from dotenv import load_dotenv
from gunicorn import glogging

# The same .env wsgi.py reads, so that GUNICORN_* and LOG_FORMAT may live there too; real
# environment variables still win.
load_dotenv()

# Exit status for a setting the service cannot start with (gunicorn's "app failed to load").
SETTINGS_ERROR_EXIT = 4


def _module(relative_path: str, name: str) -> Any:
    """One of the app's modules, by path, not by import: importing the app package here would
    import the app in the master, before gevent patches the standard library in each worker."""
    spec = importlib.util.spec_from_file_location(name, Path(__file__).parent / relative_path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def _int(name: str, default: int, minimum: int = 0, maximum: int | None = None) -> int:
    """An integer setting; a bad one stops gunicorn with one line, not a traceback."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or value < minimum or (maximum is not None and value > maximum):
        expected = f"an integer >= {minimum}" + (f" and <= {maximum}" if maximum else "")
        print(f"convstore: invalid setting {name}={raw!r}: expected {expected}", file=sys.stderr)
        sys.exit(SETTINGS_ERROR_EXIT)
    return value


# PaaS hosts hand out $PORT and expect every interface; locally stay on loopback.
bind = os.environ.get("GUNICORN_BIND") or (
    f"0.0.0.0:{_int('PORT', 8000, 1, 65535)}" if os.environ.get("PORT") else "127.0.0.1:8000"
)

# gevent: one process per core, each holding many concurrent requests (long LLM streams
# included) on cooperative greenlets. psycopg 3 and httpx yield to the loop when gevent has
# patched the standard library, so a waiting stream costs a greenlet, not a thread. The
# sync worker serves one stream per process, and gthread queues, out of sight, what exceeds
# its threads; gevent holds every concurrent stream up to worker_connections. The default
# is gunicorn's gevent worker made fair (app/web/worker.py): connections take turns and new
# ones spread evenly over the workers; GUNICORN_WORKER_CLASS=gevent is gunicorn's.
worker_class = (
    os.environ.get("GUNICORN_WORKER_CLASS")
    or _module("app/web/worker.py", "convstore_worker").FairGeventWorker
)
workers = _int("WEB_CONCURRENCY", multiprocessing.cpu_count(), minimum=1)
worker_connections = _int("GUNICORN_WORKER_CONNECTIONS", 1000, minimum=1)
# Only for the gthread worker class (kept to compare worker classes).
threads = _int("GUNICORN_THREADS", 1, minimum=1)

# timeout is the heartbeat deadline of a worker's arbiter loop; gevent workers keep
# notifying while greenlets stream, so it does not cut long generations.
timeout = _int("GUNICORN_TIMEOUT", 30, minimum=1)
# On SIGTERM, in-flight requests get this long to finish (and their exchanges to be saved).
graceful_timeout = _int("GUNICORN_GRACEFUL_TIMEOUT", 120)
keepalive = _int("GUNICORN_KEEPALIVE", 5)

# Off by default: the app writes one line per request itself (app/web/logs.py), with the
# request id and user, the route template and the whole stream's duration, and never the
# query string, where GET /text/generate/stream carries prompts. GUNICORN_ACCESS_LOG=-
# turns gunicorn's on (stdout) in the format below: the path without its query string.
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None
access_log_format = '%(h)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(M)sms %({x-request-id}o)s'
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()

# Under gunicorn the logs default to JSON lines (one object per line, for log shippers).
# Set here, before the workers start, so the app in each worker reads it like any setting.
os.environ.setdefault("LOG_FORMAT", "json")


def _json_logconfig() -> dict[str, Any] | None:
    """gunicorn's own lines (start-up, workers) in the app's JSON format, when it is on."""
    if os.environ["LOG_FORMAT"].strip().lower() != "json":
        return None
    module = _module("app/web/logs.py", "convstore_log_format")
    return {
        "version": 1,
        "disable_existing_loggers": False,
        # Replaces gunicorn's defaults whole (its root handler would double the app's lines).
        "root": {"level": "WARNING", "handlers": []},
        "formatters": {"json": {"()": module.JsonFormatter}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {
            "gunicorn.error": {
                "level": loglevel.upper(),
                "handlers": ["stderr"],
                "propagate": False,
                "qualname": "gunicorn.error",
            }
        },
    }


logconfig_dict = _json_logconfig() or {}


class _Logger(glogging.Logger):
    """gunicorn's logger, minus the access line nobody reads.

    gunicorn counts its access log as on whenever a logging config is given, as the JSON
    one above is: it would then format every request's line for a logger without a handler.
    """

    def access(self, resp: Any, req: Any, environ: Any, request_time: Any) -> None:
        if self.cfg.accesslog:
            super().access(resp, req, environ, request_time)


logger_class = _Logger

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
    from pathlib import Path

    command = [sys.executable, "-m", "flask", "--app", "wsgi", "messages", "reap"]
    try:
        done = subprocess.run(
            command, cwd=Path(__file__).parent, capture_output=True, text=True, timeout=60
        )
    except subprocess.TimeoutExpired:
        server.log.warning("reaping interrupted exchanges timed out")  # type: ignore[attr-defined]
        return
    if done.returncode == SETTINGS_ERROR_EXIT:
        # A bad setting: say it once, here, rather than once per worker failing to boot.
        sys.stderr.write(done.stderr)
        sys.exit(SETTINGS_ERROR_EXIT)
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
    start the ticker that checkpoints live exchanges and reaps those of dead workers (a
    worker booted to replace a killed one reaps its rows even if no request comes) and the
    one that purges expired conversations."""
    from gunicorn import util

    util.write_error = _write_json_error
    app = worker.wsgi  # type: ignore[attr-defined]
    extensions = getattr(app, "extensions", {})
    for ticker in ("live_exchanges", "purge_ticker"):
        if ticker in extensions:
            extensions[ticker].start()
    # The app's modules, its engine and clients are loaded and live as long as the worker:
    # frozen out of the collector's reach, so that full collections skip them.
    gc.freeze()
