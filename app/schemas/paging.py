"""The query arguments of a page of rows: skip, take, and the keyset cursor after."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from app.schemas.fields import MAX_ID

# Bound OFFSET to what a signed 64-bit integer holds: PostgreSQL rejects anything larger.
MAX_OFFSET = 2**63 - 1
MAX_PAGE = 100


class PageArgs(Schema):
    skip = fields.Integer(
        load_default=0,
        validate=validate.Range(min=0, max=MAX_OFFSET),
        metadata={"description": "Rows to skip."},
    )
    take = fields.Integer(
        load_default=MAX_PAGE,
        validate=validate.Range(min=1, max=MAX_PAGE),
        metadata={"description": f"Rows to return (1 to {MAX_PAGE})."},
    )
    after = fields.Integer(
        load_default=None,
        validate=validate.Range(min=0, max=MAX_ID),
        metadata={
            "description": "Only rows with a larger id: pass the last id of the previous page "
            "(as fast on the millionth row as on the first, unlike skip)."
        },
    )
