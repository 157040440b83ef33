"""A: a stream as before the tree and before the changes that followed it (the two
statements of bench/ab/tree_hot_path.py's A, an arguments schema built per request, psycopg's
4 KB statement cache, the whole ended row read back, Mapping checks per chunk); B: the code
as it is. The net change of a stream's CPU since the tree
(issue 23's bound: no more than before, within noise).
``python -m bench.ab bench/ab/since_the_tree.py --tokens 20 [--target v1]``.
"""

from __future__ import annotations

import runpy
from pathlib import Path

HERE = Path(__file__).resolve().parent
PARTS = [runpy.run_path(str(HERE / name)) for name in ("tree_hot_path.py",
         "schema_instances.py", "statement_cache.py", "lean_ending.py",
         "plain_dicts.py")]  # fmt: skip


def swap_a() -> None:
    for part in PARTS:
        part["swap_a"]()


def swap_b() -> None:
    for part in PARTS:
        part["swap_b"]()
