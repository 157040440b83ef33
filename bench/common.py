"""What the benchmarks share: throwaway databases and process measurements."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


LIMIT_MODES = ("off", "memory", "redis")


def limits_env(mode: str) -> dict[str, str]:
    """The service's rate-limit settings for a benchmark: ``off``, or counted (in memory or
    in the local Redis) under limits no benchmark reaches, so that what is measured is the
    limiter's cost per request, not its refusals."""
    if mode == "off":
        return {"RATELIMIT_ENABLED": "false"}
    storage = "memory://" if mode == "memory" else "redis://127.0.0.1:6379/0"
    return {
        "RATELIMIT_ENABLED": "true",
        "RATELIMIT_STORAGE_URL": storage,
        "RATELIMIT_KEY_PREFIX": f"bench-{os.getpid()}-{time.time_ns()}",
        "RATE_LIMIT_DEFAULT": "10000000/minute",
        "RATE_LIMIT_GENERATION": "10000000/minute",
    }


def start_fake_llm(port: int, tokens: int, delay: float) -> subprocess.Popen[bytes]:
    """The suite's fake OpenAI-compatible server on ``port``: ``tokens`` chunks, ``delay``
    seconds apart, per answer."""
    command = ["-m", "tests.fake_llm", "--port", str(port), "--tokens", str(tokens)]
    return subprocess.Popen(
        [sys.executable, *command, "--delay", str(delay)],
        cwd=Path(__file__).resolve().parent.parent,
        stdout=subprocess.DEVNULL,
    )


def create_bench_conversation(url: str) -> int:
    """A titled conversation (so no title call is made) of the user named bench."""
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        conversation_id = connection.execute(
            sa.text(
                "INSERT INTO conversations (title, model_type, owner_id, created_at, updated_at) "
                "VALUES ('bench', 'bench', (SELECT id FROM users WHERE name = 'bench'), :t, :t) "
                "RETURNING id"
            ),
            {"t": "2026-01-01 00:00:00+00:00"},
        ).scalar_one()
    engine.dispose()
    return int(conversation_id)


def create_database(kind: str = "postgresql") -> str:
    """An empty database: a SQLite file, or a new database on TEST_DATABASE_URL's server."""
    if kind == "sqlite":
        return f"sqlite:///{tempfile.mkdtemp(prefix='convstore-bench-')}/bench.db"
    admin = sa.create_engine(
        os.environ.get("TEST_DATABASE_URL", DEFAULT_PG_URL), isolation_level="AUTOCOMMIT"
    )
    name = f"convstore_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = admin.url.set(database=name).render_as_string(hide_password=False)
    admin.dispose()
    return url


def drop_database(url: str) -> None:
    """Drop a database made by ``create_database`` (SQLite files are left in /tmp)."""
    if url.startswith("sqlite"):
        return
    target = sa.make_url(url)
    admin = sa.create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{target.database}" WITH (FORCE)')
    admin.dispose()


def family(root_pid: int) -> list[int]:
    """A process and its children (gunicorn's master and workers)."""
    pids = [root_pid]
    children = Path(f"/proc/{root_pid}/task/{root_pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    return pids


def cpu_seconds(root_pid: int) -> float:
    """User + system CPU time of a process and its children so far."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in family(root_pid):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / ticks


def rss_mb(root_pid: int) -> float:
    """Resident memory of a process and its children, in MiB."""
    total = 0
    for pid in family(root_pid):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except FileNotFoundError:
            continue
    return total / 1024


@dataclass
class WrkResult:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    socket_errors: int
    # Requests that took over 1 s: those wrk recorded (its done() hook, WRK_DONE) plus its
    # time-outs (2 s: never recorded in its latency distribution).
    over_1s: int = 0
    timeouts: int = 0


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(value: str) -> float:
    number = re.fullmatch(r"([\d.]+)(us|ms|s)", value)
    if number is None:
        raise ValueError(f"not a wrk duration: {value!r}")
    return float(number[1]) * _UNITS[number[2]]


# wrk's done() hook: the latency distribution's count above 1 s (values in microseconds;
# latency(i) is the i-th distinct value recorded and how many requests took it).
WRK_DONE = """
done = function(summary, latency, requests)
  local slow = 0
  for i = 1, #latency do
    local value, count = latency(i)
    if value > 1000000 then slow = slow + count end
  end
  io.write(string.format("BENCH_OVER_1S %d\\n", slow))
end
"""


def wrk_script(method: str, path: str, headers: dict[str, str], body: str | None = None) -> str:
    """A wrk Lua script: ``path`` may hold ``{id}``, replaced by a random id in 1..ids; it
    prints the count of requests over 1 s when done."""
    lines = [f'wrk.headers["{name}"] = "{value}"' for name, value in headers.items()]
    if body is not None:
        lines.append(f"wrk.body = {json.dumps(body)}")
        lines.append('wrk.headers["Content-Type"] = "application/json"')
    template = json.dumps(path).replace("{id}", '" .. math.random(1, ids) .. "')
    lines += [
        "ids = tonumber(os.getenv('BENCH_IDS') or '1')",
        "request = function()",
        f"  return wrk.format({json.dumps(method)}, {template})",
        "end",
    ]
    return "\n".join(lines) + "\n" + WRK_DONE


def run_wrk(
    base_url: str, script: str, *, connections: int, seconds: float, ids: int = 1, threads: int = 2
) -> WrkResult:
    """Run wrk with ``script`` against ``base_url`` and parse its report."""
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: apt-get install wrk")
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as file:
        file.write(script)
        file.flush()
        done = subprocess.run(
            [
                "wrk",
                f"-t{threads}",
                f"-c{connections}",
                f"-d{max(1, round(seconds))}s",
                "--latency",
                "-s",
                file.name,
                base_url,
            ],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "BENCH_IDS": str(ids)},
        )
    out = done.stdout
    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)\s*$", out, re.MULTILINE))
    requests = re.search(r"(\d+) requests in", out)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    over_1s = re.search(r"^BENCH_OVER_1S (\d+)$", out, re.MULTILINE)
    if not (latency and requests and rps):
        raise RuntimeError(f"cannot read wrk's report:\n{out}\n{done.stderr}")
    timeouts = int(socket[4]) if socket else 0
    return WrkResult(
        requests_per_second=float(rps[1]),
        p50_ms=_ms(latency["50"]),
        p99_ms=_ms(latency["99"]),
        requests=int(requests[1]),
        non_2xx=int(non_2xx[1]) if non_2xx else 0,
        socket_errors=sum(int(n) for n in socket.groups()) if socket else 0,
        over_1s=(int(over_1s[1]) if over_1s else 0) + timeouts,
        timeouts=timeouts,
    )
