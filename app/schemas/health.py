"""The probes' answer."""

from __future__ import annotations

from marshmallow import Schema, fields


class HealthOut(Schema):
    status = fields.String(metadata={"description": "ok, or unavailable"})
    detail = fields.String(metadata={"description": "What is wrong, when something is."})
