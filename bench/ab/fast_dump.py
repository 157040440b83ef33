"""A: response schemas dumped by marshmallow's per-field path; B: FastDumpSchema (plain fields
read off the object). ``python -m bench.ab bench/ab/fast_dump.py --target list``.
"""

from __future__ import annotations

from marshmallow import Schema

from app.schemas.fast_dump import FastDumpSchema

NEW = FastDumpSchema._serialize


def swap_a() -> None:
    FastDumpSchema._serialize = Schema._serialize  # type: ignore[method-assign]


def swap_b() -> None:
    FastDumpSchema._serialize = NEW  # type: ignore[method-assign]
