"""Physical erasure of a delete on SQLite: the full-text index erased in place or compacted,
the WAL emptied.

PostgreSQL needs neither (its tsvector columns go with their rows; VACUUM reclaims dead
tuples: docs/deletion.md), so both do nothing there.
"""

from __future__ import annotations

import logging

from sqlalchemy import Engine, event, text
from sqlalchemy.orm import Session as OrmSession

from app.extensions import Session
from app.models.unmanaged import FTS_PROMPTS, FTS_RESPONSES, FTS_TITLES

log = logging.getLogger(__name__)

# Session.info key: checkpoint the WAL once this session's transaction has committed.
CHECKPOINT_AFTER_COMMIT = "convstore_checkpoint_wal"
# How long a checkpoint waits for readers of an older snapshot before giving up (ms): the
# delete's response must not wait on a long read.
CHECKPOINT_WAIT_MS = 200

_OPTIMIZE = tuple(
    text(f"INSERT INTO {fts}({fts}) VALUES ('optimize')")
    for fts in (FTS_TITLES, FTS_PROMPTS, FTS_RESPONSES)
)
# FTS5's secure-delete removes a row's tokens from the index as the row is deleted, where a
# merge ('optimize') otherwise rewrites the whole index; it needs SQLite 3.42, and once on, a
# table's index format can no longer be read by an older SQLite (docs/deletion.md).
SECURE_DELETE_SINCE = (3, 42, 0)
_SECURE_DELETE = tuple(
    text(f"INSERT INTO {fts}({fts}, rank) VALUES ('secure-delete', 1)")
    for fts in (FTS_TITLES, FTS_PROMPTS, FTS_RESPONSES)
)


def secure_delete_available(session: OrmSession) -> bool:
    """Whether the session's database is SQLite with FTS5's secure-delete."""
    dialect = session.get_bind().dialect
    version = getattr(dialect.dbapi, "sqlite_version_info", (0,))
    return dialect.name == "sqlite" and tuple(version) >= SECURE_DELETE_SINCE


def erase_in_place(session: OrmSession) -> None:
    """SQLite 3.42 and later: turn on FTS5's secure-delete for the deleting transaction's
    statements that follow (the option persists in the database; setting it again is one
    row). Call it before a delete's statements, and ``compact_search_index`` after."""
    if secure_delete_available(session):
        for statement in _SECURE_DELETE:
            session.execute(statement)


def compact_search_index(session: OrmSession) -> None:
    """SQLite: leave no deleted token in FTS5's shadow tables, in the deleting transaction.
    Without secure-delete (``erase_in_place``) a delete only adds tombstones to FTS5's
    segments, whose older entries keep the deleted tokens until a merge rewrites them: each
    index is merged into one segment. The WAL is checkpointed after the commit."""
    if session.get_bind().dialect.name != "sqlite":
        return
    if not secure_delete_available(session):
        for statement in _OPTIMIZE:
            session.execute(statement)
    session.info[CHECKPOINT_AFTER_COMMIT] = True


def checkpoint_wal(engine: Engine) -> bool:
    """Copy the WAL into the database file and truncate it to zero bytes, so that the pages
    a delete changed leave it; best effort: False (and logged) if readers of an older
    snapshot kept it from finishing within CHECKPOINT_WAIT_MS or it failed."""
    try:
        raw = engine.raw_connection()
        try:
            cursor = raw.cursor()
            waited = cursor.execute("PRAGMA busy_timeout").fetchone()[0]
            cursor.execute(f"PRAGMA busy_timeout={CHECKPOINT_WAIT_MS}")
            try:
                busy, _, _ = cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            finally:
                cursor.execute(f"PRAGMA busy_timeout={int(waited)}")
            cursor.close()
        finally:
            raw.close()
    except Exception as error:  # best effort: it never fails the delete that asked for it
        log.warning("WAL checkpoint after a delete failed: %s", error.__class__.__name__)
        return False
    if busy:
        log.info("WAL checkpoint after a delete left for later: readers of an older snapshot")
    return not busy


@event.listens_for(Session, "after_commit")
def _checkpoint_after_commit(session: OrmSession) -> None:
    if not session.info.pop(CHECKPOINT_AFTER_COMMIT, False):
        return
    bind = session.get_bind()
    # A Connection is a test's or a caller's own, still in its outer transaction.
    if isinstance(bind, Engine):
        checkpoint_wal(bind)


@event.listens_for(Session, "after_rollback")
def _forget_checkpoint(session: OrmSession) -> None:
    session.info.pop(CHECKPOINT_AFTER_COMMIT, None)
