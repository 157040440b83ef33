"""Readiness: is the database reachable and its schema at the latest migration?"""

from __future__ import annotations

import logging
from functools import cache

from alembic.script import ScriptDirectory
from flask import current_app
from sqlalchemy import inspect, text
from sqlalchemy.exc import SQLAlchemyError

from app.extensions import db

log = logging.getLogger(__name__)


@cache
def _heads(directory: str) -> frozenset[str]:
    config = current_app.extensions["migrate"].migrate.get_config(directory)
    return frozenset(ScriptDirectory.from_config(config).get_heads())


def migration_heads() -> frozenset[str]:
    """The head revisions of the migrations shipped with the code."""
    return _heads(current_app.extensions["migrate"].directory)


def _applied_revisions() -> frozenset[str]:
    if not inspect(db.session.connection()).has_table("alembic_version"):
        return frozenset()  # nothing has been migrated yet
    return frozenset(db.session.scalars(text("SELECT version_num FROM alembic_version")))


def readiness() -> dict[str, str]:
    """``{"status": "ok"}`` when the service can serve, else why not."""
    try:
        applied = _applied_revisions()
    except SQLAlchemyError:
        log.warning("readiness: database unreachable", exc_info=True)
        return {"status": "unavailable", "detail": "database unreachable"}
    finally:
        db.session.rollback()
    expected = migration_heads()
    if applied != expected:
        detail = f"schema at {sorted(applied) or 'base'}, code expects {sorted(expected)}"
        return {"status": "unavailable", "detail": f"{detail}: run `flask db upgrade`"}
    return {"status": "ok"}
