"""A: psycopg's default bound on the statements it caches (4 KB), under which a stream's
save (14 KB) is parsed again on every stream; B: the service's bound
(``app.database.STATEMENT_CACHE_LENGTH``). ``python -m bench.ab bench/ab/statement_cache.py``.
"""

from __future__ import annotations

from psycopg import _queries

from app.database import STATEMENT_CACHE_LENGTH

PSYCOPG_DEFAULT = 4096


def swap_a() -> None:
    _queries.MAX_CACHED_STATEMENT_LENGTH = PSYCOPG_DEFAULT


def swap_b() -> None:
    _queries.MAX_CACHED_STATEMENT_LENGTH = STATEMENT_CACHE_LENGTH
