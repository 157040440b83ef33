"""Streaming benchmark: N concurrent streams through the service vs straight to the LLM,
and vs the bare relay (bench/bare_relay.py), the yardstick of the service's CPU per stream.

Starts the fake OpenAI-compatible server (its own process), migrates a fresh database,
serves the app with the Procfile's web command (gunicorn) and, beside it under the same
gunicorn config, the bare relay; then for each N opens N concurrent streams with an asyncio
client: once straight to the fake server, then for each target through the service and
right after through the bare relay. Targets: ``service`` (text, GET /text/generate/stream),
``sse`` (POST /conversations/<id>/messages with ``stream: true``) and ``v1`` (the
OpenAI-compatible POST /v1/chat/completions, the events relayed raw) and ``responses``
(POST /v1/responses into the same conversation, OpenAI's semantic events). Reports time to first
token and total time (p50/p99), errors, rows saved, the service's CPU per stream and peak
memory, then the service's CPU per stream as a ratio to the bare relay's and, given the
three statements' CPU (``--statements-ms``, from bench/statements.py), whether it is within
issue 25's budget: 2x the bare relay plus the statements. Markdown.

    .venv/bin/python -m bench.streaming                      # PostgreSQL (TEST_DATABASE_URL)
    .venv/bin/python -m bench.statements       # the three statements' CPU: --statements-ms
    .venv/bin/python -m bench.streaming --levels 1,200 --statements-ms 3.7   # issue 25, 3
    .venv/bin/python -m bench.streaming --database sqlite --levels 1,50,200 --no-yardstick
    .venv/bin/python -m bench.streaming --levels 1 --modes steady --rounds 1 --min-streams 1 \
        --tokens 3 --delay 0.01                              # a smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    LIMIT_MODES,
    cpu_seconds,
    create_bench_conversation,
    create_database,
    drop_database,
    limits_env,
    rss_mb,
    start_fake_llm,
)
from tests.procfile import WebProcess, create_user, free_port, release  # noqa: E402


@dataclass
class Sample:
    ttft: float | None = None  # seconds to the first body bytes carrying text
    total: float | None = None
    error: str | None = None
    body: bytes = b""


@dataclass
class Run:
    mode: str
    target: str
    n: int
    wall: float
    samples: list[Sample] = field(default_factory=list)
    saved: int | None = None
    peak_rss_mb: float | None = None
    cpu_ms_per_stream: float | None = None

    @property
    def errors(self) -> int:
        return sum(1 for s in self.samples if s.error)

    def pct(self, name: str, q: float) -> float:
        values = sorted(getattr(s, name) for s in self.samples if getattr(s, name) is not None)
        if not values:
            return float("nan")
        index = min(len(values) - 1, round(q * (len(values) - 1)))
        return values[index] * 1000


def _carries_text(data: bytes) -> bool:
    # A Responses stream opens with response.created and response.in_progress, sent before
    # the upstream's first token: its first text is an output_text delta.
    if data.startswith(b"event: response."):
        return b"output_text.delta" in data
    return bool(data.strip())


async def _read_chunked(reader: asyncio.StreamReader, sample: Sample, started: float) -> None:
    """Read a chunked body, timing the first chunk that carries text."""
    while True:
        size_line = await reader.readline()
        size = int(size_line.strip().split(b";")[0], 16)
        if size == 0:
            await reader.readline()
            return
        data = await reader.readexactly(size + 2)
        if sample.ttft is None and _carries_text(data):
            sample.ttft = time.perf_counter() - started
        sample.body += data[:-2]


async def one_stream(host: str, port: int, request: bytes) -> Sample:
    sample = Sample()
    started = time.perf_counter()
    try:
        reader, writer = await asyncio.open_connection(host, port, limit=2**20)
        writer.write(request)
        await writer.drain()
        status = await reader.readline()
        headers = {}
        while (line := await reader.readline()) not in (b"\r\n", b""):
            key, _, value = line.decode().partition(":")
            headers[key.strip().lower()] = value.strip()
        if b" 200 " not in status:
            sample.error = status.decode().strip()
        elif headers.get("transfer-encoding") == "chunked":
            await _read_chunked(reader, sample, started)
        else:
            sample.body = await reader.read()
            sample.ttft = time.perf_counter() - started
        sample.total = time.perf_counter() - started
        writer.close()
    except (OSError, asyncio.IncompleteReadError, ValueError) as error:
        sample.error = repr(error)
    return sample


async def burst(host: str, port: int, requests: list[list[bytes]], spread: float) -> list[Sample]:
    """Every client opens its first stream at the same instant."""
    return await asyncio.gather(*(one_stream(host, port, r[0]) for r in requests))


async def steady(host: str, port: int, requests: list[list[bytes]], spread: float) -> list[Sample]:
    """Client i starts at i/N of ``spread`` and streams its requests back to back, so N
    streams stay open at once while new ones arrive at an even rate."""

    async def client(i: int, mine: list[bytes]) -> list[Sample]:
        await asyncio.sleep(spread * i / len(requests))
        return [await one_stream(host, port, r) for r in mine]

    results = await asyncio.gather(*(client(i, r) for i, r in enumerate(requests)))
    return [sample for samples in results for sample in samples]


MODES = {"burst": (burst, 1), "steady": (steady, 3)}


def service_request(port: int, key: str, conversation_id: int, prompt: str) -> bytes:
    query = urlencode({"prompt": prompt, "conversation_id": conversation_id})
    return (
        f"GET /text/generate/stream?{query} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {key}\r\nConnection: close\r\n\r\n"
    ).encode()


def v1_request(port: int, key: str, conversation_id: int, prompt: str) -> bytes:
    """A streamed /v1 call into the bench conversation (named, so no title call is made)."""
    body = json.dumps(
        {"model": "bench", "stream": True, "messages": [{"role": "user", "content": prompt}]}
    ).encode()
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {key}\r\nX-Conversation-Id: {conversation_id}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    return head + body


def sse_request(port: int, key: str, conversation_id: int, prompt: str) -> bytes:
    """A streamed exchange in the bench conversation, answered as Server-Sent Events."""
    body = json.dumps({"prompt": prompt, "stream": True}).encode()
    head = (
        f"POST /conversations/{conversation_id}/messages HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    return head + body


def responses_request(port: int, key: str, conversation_id: int, prompt: str) -> bytes:
    """A streamed /v1/responses call appended to the bench conversation, after its last 20
    exchanges (truncation: auto, the history the text and SSE targets send)."""
    body = json.dumps(
        {
            "model": "bench",
            "stream": True,
            "input": prompt,
            "conversation": f"conv_{conversation_id}",
            "truncation": "auto",
        }
    ).encode()
    head = (
        f"POST /v1/responses HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    return head + body


TARGETS = {
    "service": service_request,
    "sse": sse_request,
    "v1": v1_request,
    "responses": responses_request,
}


def upstream_request(port: int, prompt: str) -> bytes:
    body = json.dumps(
        {
            "model": "bench",
            "stream": True,
            "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": prompt}],
        }
    ).encode()
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    return head + body


class PeakMemory:
    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, 0.0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mb(self.pid))
            time.sleep(0.1)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", default="1,50,200,1000")
    parser.add_argument("--database", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("--tokens", type=int, default=20)
    parser.add_argument("--delay", type=float, default=0.05, help="seconds between tokens")
    parser.add_argument("--workers", default=str(os.cpu_count() or 2))
    parser.add_argument(
        "--worker-class",
        default="",
        help="gunicorn's worker class (default: gunicorn.conf.py's, the fair gevent worker)",
    )
    parser.add_argument("--threads", default="1", help="gunicorn threads per worker (gthread)")
    parser.add_argument("--modes", default="steady,burst")
    parser.add_argument(
        "--rounds", type=int, default=0, help="streams per client in steady mode (default 3)"
    )
    parser.add_argument(
        "--min-streams",
        type=int,
        default=30,
        help="steady mode: more rounds at small N, so that CPU per stream spans enough ticks",
    )
    parser.add_argument(
        "--targets",
        default="service,sse,v1,responses",
        help="service (text), sse, v1, responses: any of them",
    )
    parser.add_argument(
        "--yardstick",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also stream each target through the bare relay (bench/bare_relay.py)",
    )
    parser.add_argument(
        "--statements-ms",
        type=float,
        default=None,
        help="CPU ms of the three statements per stream (bench/statements.py): the budget",
    )
    parser.add_argument(
        "--limits",
        choices=LIMIT_MODES,
        default="off",
        help="rate limiting off, or counted in memory or in the local Redis (its cost)",
    )
    args = parser.parse_args(argv)
    levels = [int(n) for n in args.levels.split(",")]

    llm_port = free_port()
    llm = start_fake_llm(llm_port, args.tokens, args.delay)
    url = create_database(args.database)
    env = {
        "DATABASE_URL": url,
        "OPENAI_BASE_URL": f"http://127.0.0.1:{llm_port}/v1",
        "OPENAI_API_KEY": "bench",
        "WEB_CONCURRENCY": args.workers,
        "GUNICORN_WORKER_CLASS": args.worker_class,
        "GUNICORN_THREADS": args.threads,
        "GUNICORN_ACCESS_LOG": "",
        "LOG_LEVEL": "WARNING",
        **limits_env(args.limits),
    }
    release(env)
    key = create_user(env, "bench")
    engine = sa.create_engine(url)
    conversation_id = create_bench_conversation(url)

    runs: list[Run] = []
    stream_seconds = args.tokens * args.delay
    log = Path(tempfile.mkdtemp(prefix="convstore-bench-")) / "gunicorn.log"
    bare_log = log.with_name("bare-relay.log")
    with ExitStack() as stack:
        web = stack.enter_context(WebProcess(env, log))
        assert web.process is not None
        bare = None
        if args.yardstick:
            bare = stack.enter_context(WebProcess(env, bare_log, app="bench.bare_relay:app"))
        # Warm every worker up (imports, first connections) before measuring.
        for server in (web, bare) if bare else (web,):
            warm = [
                [make(server.port, key, conversation_id, "warm-up")]
                for make in TARGETS.values()
                for _ in range(10)
            ]
            asyncio.run(burst("127.0.0.1", server.port, warm, 0))
        for mode in args.modes.split(","):
            run_clients = MODES[mode][0]
            for n in levels:
                rounds = rounds_for(mode, n, args)
                tag = uuid.uuid4().hex[:8]
                requests = [
                    [upstream_request(llm_port, f"{tag}-{i}-{r}") for r in range(rounds)]
                    for i in range(n)
                ]
                started = time.perf_counter()
                samples = asyncio.run(run_clients("127.0.0.1", llm_port, requests, stream_seconds))
                runs.append(Run(mode, "direct", n, time.perf_counter() - started, samples))

                for target in args.targets.split(","):
                    tag = uuid.uuid4().hex[:8]
                    make = TARGETS[target]
                    requests = [
                        [
                            make(web.port, key, conversation_id, f"{tag}-{i}-{r}")
                            for r in range(rounds)
                        ]
                        for i in range(n)
                    ]
                    cpu_before = cpu_seconds(web.process.pid)
                    with PeakMemory(web.process.pid) as memory:
                        started = time.perf_counter()
                        samples = asyncio.run(
                            run_clients("127.0.0.1", web.port, requests, stream_seconds)
                        )
                        wall = time.perf_counter() - started
                    run = Run(mode, target, n, wall, samples, peak_rss_mb=memory.peak)
                    run.saved = count_saved(engine, tag, len(samples) - run.errors)
                    # After the saves: the close hooks' work is part of each stream's cost.
                    cpu = cpu_seconds(web.process.pid) - cpu_before
                    run.cpu_ms_per_stream = cpu * 1000 / len(samples)
                    runs.append(run)
                    print(
                        f"{mode} N={n}: {target} errors={run.errors} "
                        f"saved={run.saved}/{len(samples)}",
                        file=sys.stderr,
                    )
                    if bare is not None:
                        # Right after the service, on the same requests: the same drift.
                        runs.append(measure(bare, mode, f"bare {target}", n, make, key, args))
    llm.terminate()
    engine.dispose()
    drop_database(url)
    report(runs, args)


def rounds_for(mode: str, n: int, args: argparse.Namespace) -> int:
    """Streams per client: one in a burst; in steady mode ``--rounds`` (3), raised at small N
    to ``--min-streams`` in all (CPU is counted in 10 ms ticks)."""
    if mode != "steady":
        return MODES[mode][1]
    rounds = args.rounds or MODES[mode][1]
    return max(rounds, -(-args.min_streams // n))


def measure(
    server: WebProcess,
    mode: str,
    target: str,
    n: int,
    make: Callable[[int, str, int, str], bytes],
    key: str,
    args: argparse.Namespace,
) -> Run:
    """N clients through ``server`` (the bare relay): times, errors, CPU per stream, memory."""
    assert server.process is not None
    run_clients, rounds = MODES[mode][0], rounds_for(mode, n, args)
    tag = uuid.uuid4().hex[:8]
    requests = [
        [make(server.port, key, 1, f"{tag}-{i}-{r}") for r in range(rounds)] for i in range(n)
    ]
    cpu_before = cpu_seconds(server.process.pid)
    with PeakMemory(server.process.pid) as memory:
        started = time.perf_counter()
        samples = asyncio.run(
            run_clients("127.0.0.1", server.port, requests, args.tokens * args.delay)
        )
        wall = time.perf_counter() - started
    run = Run(mode, target, n, wall, samples, peak_rss_mb=memory.peak)
    run.cpu_ms_per_stream = (cpu_seconds(server.process.pid) - cpu_before) * 1000 / len(samples)
    return run


def count_saved(engine: sa.Engine, tag: str, expected: int) -> int:
    """Complete exchanges saved for this run, waiting briefly for the last close hooks."""
    deadline = time.monotonic() + 30
    while True:
        with engine.connect() as connection:
            saved = connection.execute(
                sa.text(
                    "SELECT count(*) FROM messages WHERE prompt_content LIKE :p "
                    "AND is_success AND status_code = 200"
                ),
                {"p": f"{tag}-%"},
            ).scalar_one()
        if saved >= expected or time.monotonic() > deadline:
            return saved
        time.sleep(0.2)


def report(runs: list[Run], args: argparse.Namespace) -> None:
    print(
        f"Streaming benchmark, {time.strftime('%Y-%m-%d')}, {platform.node()}: "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, database "
        f"{args.database}, {args.workers} gunicorn {args.worker_class or 'fair gevent'} workers "
        f"(threads: {args.threads}), {args.tokens} tokens "
        f"{args.delay * 1000:.0f} ms apart per stream.\n"
    )
    print(
        "| mode | N | target | streams | TTFT p50 ms | TTFT p99 ms | total p50 ms "
        "| total p99 ms | wall s | errors | saved | peak RSS MiB | service CPU ms/stream |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for run in runs:
        saved = "" if run.saved is None else f"{run.saved}/{len(run.samples)}"
        rss = "" if run.peak_rss_mb is None else f"{run.peak_rss_mb:.0f}"
        cpu = "" if run.cpu_ms_per_stream is None else f"{run.cpu_ms_per_stream:.1f}"
        print(
            f"| {run.mode} | {run.n} | {run.target} | {len(run.samples)} "
            f"| {run.pct('ttft', 0.5):.1f} | {run.pct('ttft', 0.99):.1f} "
            f"| {run.pct('total', 0.5):.0f} | {run.pct('total', 0.99):.0f} | {run.wall:.2f} "
            f"| {run.errors} | {saved} | {rss} | {cpu} |"
        )
    print("\n| mode | N | target | added TTFT p50 ms | added TTFT p99 ms |")
    print("|---|---|---|---|---|")
    by_key = {(r.mode, r.n, r.target): r for r in runs}
    for mode, n in sorted({(r.mode, r.n) for r in runs}, key=lambda k: (k[0] != "steady", k[1])):
        direct = by_key[(mode, n, "direct")]
        for target in args.targets.split(","):
            service = by_key[(mode, n, target)]
            print(
                f"| {mode} | {n} | {target} "
                f"| {service.pct('ttft', 0.5) - direct.pct('ttft', 0.5):.1f} "
                f"| {service.pct('ttft', 0.99) - direct.pct('ttft', 0.99):.1f} |"
            )
    if args.yardstick:
        yardstick(runs, by_key, args)
    errors = [s.error for r in runs for s in r.samples if s.error]
    if errors:
        print("\nFirst errors:", statistics.multimode(errors)[:3])


def yardstick(runs: list[Run], by_key: dict[tuple[str, int, str], Run], args) -> None:
    """The service's CPU per stream against the bare relay's, and issue 25's budget."""
    statements = args.statements_ms
    print(
        "\nService CPU per stream against the bare relay (bench/bare_relay.py), same requests "
        "right after; budget: 2x the bare relay + the three statements"
        + (f" ({statements:g} ms, --statements-ms)" if statements is not None else "")
        + f". CPU is counted in clock ticks ({1000 / os.sysconf('SC_CLK_TCK'):g} ms): a row is "
        "exact to a tick over its streams (steady: at least --min-streams; a burst of N: N).\n"
    )
    print(
        "| mode | N | target | service ms/stream | bare relay ms/stream | ratio "
        "| budget ms | within |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for mode, n in sorted({(r.mode, r.n) for r in runs}, key=lambda k: (k[0] != "steady", k[1])):
        for target in args.targets.split(","):
            service, bare = by_key[(mode, n, target)], by_key[(mode, n, f"bare {target}")]
            ours, theirs = service.cpu_ms_per_stream or 0.0, bare.cpu_ms_per_stream or 0.0
            ratio = f"{ours / theirs:.2f}" if theirs else ""
            budget = within = ""
            if statements is not None:
                limit = 2 * theirs + statements
                budget, within = f"{limit:.1f}", "yes" if ours <= limit else "no"
            print(
                f"| {mode} | {n} | {target} | {ours:.1f} | {theirs:.1f} | {ratio} "
                f"| {budget} | {within} |"
            )


if __name__ == "__main__":
    main()
