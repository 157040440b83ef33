"""The one error shape of the REST API (app/errors.py)."""

from __future__ import annotations

from marshmallow import Schema, fields


class ErrorOut(Schema):
    """The one shape of every error (app/errors.py)."""

    code = fields.Integer(required=True, metadata={"description": "The HTTP status code."})
    status = fields.String(required=True, metadata={"description": "Its reason phrase."})
    message = fields.String(required=True, metadata={"description": "What went wrong."})
    errors = fields.Dict(
        keys=fields.String(),
        metadata={
            "description": "What is invalid (400, 422): by location (json, query), then by "
            "field, lists of messages."
        },
    )
