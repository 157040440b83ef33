"""A: a streamed ``POST /v1/chat/completions`` into the bench conversation; B: the same
answer through a streamed ``POST /v1/responses`` (``conversation``: the same one, its last 20
exchanges sent as context), on the same code: issue 24's bound is B/A <= 1.25 in CPU per
request. ``BENCH_RESPONSES=responses_unstored`` makes B a call without context (``store:
false``): the translation's own cost.
``python -m bench.ab bench/ab/responses_vs_chat.py --tokens 20``.
"""

from __future__ import annotations

import os

TARGET_A = "v1"
TARGET_B = os.environ.get("BENCH_RESPONSES", "responses")


def swap_a() -> None:
    """Nothing to swap: the versions differ by endpoint."""


def swap_b() -> None:
    """Nothing to swap: the versions differ by endpoint."""
