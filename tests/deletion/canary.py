"""Where a canary string is stored: every text, JSON and full-text column of every table on
PostgreSQL, the raw bytes of the database file and its WAL on SQLite."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Flask

from app.extensions import db
from tests.deletion.test_erasure import stored_bytes

TEXT_TYPES = ("text", "character varying", "json", "jsonb", "tsvector")


def places_holding(app: Flask, canary: str) -> list[str]:
    """``table.column`` of each PostgreSQL column holding ``canary`` somewhere; on SQLite
    ["database file"] if the file's or the WAL's bytes hold it (deleted content included:
    freed pages, FTS5 segments)."""
    with app.app_context():
        if db.engine.dialect.name == "sqlite":
            return ["database file"] if canary.encode() in stored_bytes(app) else []
        columns = db.session.execute(
            sa.text(
                "SELECT table_name, column_name FROM information_schema.columns "
                "WHERE table_schema = 'public' AND data_type = ANY(:types)"
            ),
            {"types": list(TEXT_TYPES)},
        ).all()
        return [
            f"{table}.{column}"
            for table, column in columns
            if db.session.scalar(
                sa.text(f'SELECT count(*) FROM "{table}" WHERE "{column}"::text LIKE :pattern'),
                {"pattern": f"%{canary}%"},
            )
        ]
