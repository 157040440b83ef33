"""The seed's FastAPI shape (FastAPI + async SQLAlchemy, repository/service layers, Pydantic
schemas) on convstore's tables: the peer bench/crud.py compares convstore with.

    .venv/bin/pip install -e ".[bench]"
    DATABASE_URL=postgresql://postgres@127.0.0.1/db BENCH_OWNER_ID=1 \\
      GUNICORN_WORKER_CLASS=uvicorn_worker.UvicornWorker \\
      .venv/bin/gunicorn -c gunicorn.conf.py bench.seed_peer.main:app

Served by gunicorn with uvicorn workers through convstore's own gunicorn.conf.py (same
worker count, timeouts, keep-alive). Where it departs from the seed's notes, for fairness
or because convstore's schema requires it (each said where it is done):

- auth: the seed has none; convstore checks a bearer key. The cheapest equivalent here:
  any ``Authorization: Bearer ...`` header is accepted, without any lookup (main.py);
- the tables are convstore's: ``owner_id`` (NOT NULL) is set from BENCH_OWNER_ID on
  create, and ``owner_id`` and ``metadata`` are read and returned so both bodies carry the
  same fields (entities.py, schemas.py);
- lists are ordered by id, as convstore's are, and messages are paged with skip/take like
  conversations (the seed returns all of them, unordered);
- the pool is convstore's (DB_POOL_SIZE, DB_MAX_OVERFLOW: 10 + 0 per worker by default),
  the driver asyncpg (SEED_PEER_DRIVER=psycopg for the seed's psycopg), no SQL echo, and
  timestamps default per row (the seed evaluates datetime.now once, at import).
"""
