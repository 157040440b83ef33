"""A/B in one process: two versions of the service's code, alternated request by request.

    .venv/bin/python -m bench.ab bench/ab/orm_to_core.py --requests 400

A swap file defines ``swap_a()`` and ``swap_b()``, each installing one version (by replacing
functions of the app's modules). Streams (or, ``--target get``, one conversation; ``list``, 20) go
through the app in-process (Flask's test client, the fake LLM over HTTP, PostgreSQL), in the
order A B, B A, A B..., each timed in thread CPU time. This VM's speed drifts by 10 to 40 %
from one minute to the next, which swamps a difference of a few percent between two separate
runs; alternating requests in one process puts both versions under the same drift.
``bench/ab/same.py`` (A = B) shows the method's own noise. A swap file may also name a target
per version (``TARGET_A``, ``TARGET_B``) to compare two endpoints on the same code:
``bench/ab/responses_vs_chat.py``.
"""

from __future__ import annotations

import argparse
import os
import runpy
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.ab_targets import TARGETS, ab_env, create_target_data, drain, request_functions  # noqa: E402
from bench.common import create_database, drop_database, start_fake_llm  # noqa: E402
from tests.procfile import create_user, free_port, release  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("swap_file")
    parser.add_argument("--requests", type=int, default=400, help="per version")
    parser.add_argument("--tokens", type=int, default=3)
    parser.add_argument("--target", choices=TARGETS, default="text")
    args = parser.parse_args(argv)

    llm_port = free_port()
    llm = start_fake_llm(llm_port, args.tokens, 0)
    url = create_database("postgresql")
    env = ab_env(url, llm_port)
    release(env)
    key = create_user(env, "bench")
    os.environ.update(env)
    conversation_id = create_target_data(url, args.target)

    from app import create_app

    client = create_app().test_client()
    sends = request_functions(client, key, conversation_id)
    swaps = runpy.run_path(args.swap_file)
    targets = {v: sends[swaps.get(f"TARGET_{v}", args.target)] for v in "AB"}
    version = "A"

    def one(n: int) -> None:
        drain(targets[version](n))

    swap_a: Callable[[], None] = swaps["swap_a"]
    swap_b: Callable[[], None] = swaps["swap_b"]
    for n in range(60):  # warm up both
        version = "A" if n % 2 else "B"
        (swap_a if n % 2 else swap_b)()
        one(n)
    times: dict[str, list[float]] = {"A": [], "B": []}
    for n in range(args.requests):
        order = [("A", swap_a), ("B", swap_b)]
        for name, swap in order if n % 2 else reversed(order):
            version = name
            swap()
            started = time.thread_time()
            one(n)
            times[name].append(time.thread_time() - started)
    llm.terminate()
    drop_database(url)

    a, b = (statistics.median(times[k]) * 1000 for k in "AB")
    named = {v: swaps.get(f"TARGET_{v}", args.target) for v in "AB"}
    targets_named = named["A"] if named["A"] == named["B"] else f"A {named['A']}, B {named['B']}"
    print(
        f"{Path(args.swap_file).name}, {targets_named}, {args.tokens} tokens, "
        f"{args.requests} requests each: CPU per request median A {a:.3f} ms, "
        f"B {b:.3f} ms, B/A {b / a:.3f}"
    )


if __name__ == "__main__":
    main()
