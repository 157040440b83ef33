"""Where the migrated database differs from the models, as `flask db check` compares them."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from app.extensions import db
from app.models.unmanaged import include_object


def drift() -> list:
    with db.engine.connect() as connection:
        # As migrations/env.py configures autogenerate (`flask db check`).
        opts = {"compare_type": True, "include_object": include_object}
        context = MigrationContext.configure(connection, opts=opts)
        return compare_metadata(context, db.metadata)
