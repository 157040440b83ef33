"""Top-down tables from a py-spy profile of the service's workers (raw, "folded" stacks).

Record one while the streaming benchmark runs (py-spy is not a dependency: pip install py-spy):

    .venv/bin/python -m bench.streaming --levels 200 --modes steady --targets service &
    .venv/bin/py-spy record --pid "$(pgrep -f 'gunicorn -c gunicorn.conf.py' | head -1)" \\
        --subprocesses --rate 200 --duration 12 --format raw -o profile.folded --nonblocking
    .venv/bin/python -m bench.profile_tables profile.folded > bench/results/profiles/NAME.txt

Prints each sample's nearest frame in app/ (where the service's own code spends, directly or
through the libraries it calls), the library of each sample's leaf, and top-down trees under
the named functions.
"""

from __future__ import annotations

import argparse
import collections
import re
from collections.abc import Iterator

FRAME = re.compile(r" \((?:.*/)?([^/]+):\d+\)$")
APP_FRAME = re.compile(r"\(app/[^)]*\)$")


def stacks(path: str) -> Iterator[tuple[list[str], int]]:
    with open(path, encoding="utf-8") as folded:
        for line in folded:
            stack, _, count = line.rstrip().rpartition(" ")
            yield stack.split(";"), int(count)


def library(frame: str) -> str:
    found = re.search(r"\(([^)]*)\)$", frame)
    if not found:
        return "native (no Python frame: C code, the gevent loop, GC)"
    path = found.group(1)
    return path.split("/")[0] if "/" in path else path.split(":")[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folded")
    parser.add_argument("--under", default="begin_exchange,open_exchange,Exchange.relay,_save ")
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--min", type=float, default=0.5, help="percent")
    args = parser.parse_args()

    total = 0
    nearest: collections.Counter[str] = collections.Counter()
    leaves: collections.Counter[str] = collections.Counter()
    for frames, count in stacks(args.folded):
        total += count
        leaves[library(frames[-1])] += count
        owner = next((f for f in reversed(frames) if APP_FRAME.search(f)), None)
        nearest[FRAME.sub("", owner) if owner else "(outside app/: server, framework, loop)"] += (
            count
        )
    print(f"{total} samples\n\n| nearest frame in app/ | share |\n|---|---|")
    for name, count in nearest.most_common(25):
        print(f"| {name} | {100 * count / total:.1f} % |")
    print("\n| leaf library | share |\n|---|---|")
    for name, count in leaves.most_common(20):
        print(f"| {name} | {100 * count / total:.1f} % |")
    for root in args.under.split(","):
        tree: collections.Counter[tuple[str, ...]] = collections.Counter()
        for frames, count in stacks(args.folded):
            names = [FRAME.sub(r" (\1)", f) for f in frames]
            for i, name in enumerate(names):
                if name.startswith(root):
                    below = tuple(names[i + 1 : i + 1 + args.depth])
                    tree[()] += count
                    for depth in range(1, len(below) + 1):
                        tree[below[:depth]] += count
                    break
        print(f"\n{root.strip()}: {100 * tree[()] / max(total, 1):.1f} %")
        for path, count in sorted(tree.items()):
            if path and 100 * count / total >= args.min:
                print("  " * len(path) + f"{100 * count / total:5.1f} % {path[-1]}")


if __name__ == "__main__":
    main()
