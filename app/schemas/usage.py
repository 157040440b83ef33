"""Usage reports: their arguments and rows."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from marshmallow import Schema, ValidationError, fields, post_load, validate
from webargs.fields import DelimitedList

from app.schemas.fields import JSON_SCHEMA, Owner

USAGE_GROUPS = ("day", "model", "user")
USAGE_MAX_DAYS = 366
USAGE_DEFAULT_DAYS = 30


class UsageArgs(Schema):
    start = fields.Date(
        data_key="from",
        load_default=None,
        metadata={"description": "First UTC day (YYYY-MM-DD); default: 29 days before to."},
    )
    end = fields.Date(
        data_key="to",
        load_default=None,
        metadata={"description": "Last UTC day, included; default: today (UTC)."},
    )
    group_by = DelimitedList(
        fields.String(validate=validate.OneOf(USAGE_GROUPS)),
        load_default=[],
        # Given, it names at least one group: "group_by=" is not "no grouping" but a typo.
        validate=validate.Length(min=1),
        metadata={
            "description": "Comma-separated, any of day, model, user; none: one total.",
            JSON_SCHEMA: {"default": []},  # not the serialized "" apispec would write
        },
    )
    owner = Owner(whose="usage")

    @post_load
    def _range(self, data: dict[str, Any], **_kwargs: Any) -> dict[str, Any]:
        """Fill in the default range and check it: from <= to, at most USAGE_MAX_DAYS."""
        end = data["end"] or datetime.now(UTC).date()
        try:
            start = data["start"] or end - timedelta(days=USAGE_DEFAULT_DAYS - 1)
        except OverflowError:  # to= in the first days of year 1
            start = date.min
        if end < start:
            raise ValidationError("Must not be before from (default: today).", "to")
        if (end - start).days >= USAGE_MAX_DAYS:
            raise ValidationError(f"At most {USAGE_MAX_DAYS} days after from.", "to")
        return {**data, "start": start, "end": end}


class Percentiles(Schema):
    p50 = fields.Integer(allow_none=True)
    p95 = fields.Integer(allow_none=True)


class OutcomeCounts(Schema):
    complete = fields.Integer()
    failed = fields.Integer()
    client_closed = fields.Integer()
    interrupted = fields.Integer()
    rate_limited = fields.Integer(
        metadata={"description": "Failed because the LLM provider rate limited (429)."}
    )


class EstimatedUsage(Schema):
    exchanges = fields.Integer(
        metadata={"description": "Exchanges charged an estimate: the LLM's usage never came."}
    )
    total_tokens = fields.Integer(metadata={"description": "Their tokens (part of total_tokens)."})


class UsageRowOut(Schema):
    day = fields.Date(allow_none=True, metadata={"description": "null unless grouped by day."})
    model = fields.String(
        allow_none=True, metadata={"description": "null unless grouped by model (or unknown)."}
    )
    user_id = fields.Integer(
        allow_none=True, metadata={"description": "null unless grouped by user."}
    )
    exchanges = fields.Integer(metadata={"description": "Exchanges ended (titles excluded)."})
    succeeded = fields.Integer()
    failed = fields.Integer(metadata={"description": "Exchanges that did not complete."})
    outcomes = fields.Nested(OutcomeCounts)
    prompt_tokens = fields.Integer()
    response_tokens = fields.Integer()
    total_tokens = fields.Integer(metadata={"description": "Exchanges' and title calls'."})
    title_tokens = fields.Integer(metadata={"description": "Spent on title calls."})
    estimated = fields.Nested(EstimatedUsage)
    ttft_ms = fields.Nested(
        Percentiles,
        metadata={
            "description": "Histogram percentiles: each the upper bound of its latency bucket "
            "(docs: API guide, usage)."
        },
    )
    duration_ms = fields.Nested(Percentiles)


class Prebuilt(fields.Nested):
    """Documented as its nested schema; dumped as given, the service having built it field
    by field (marshmallow's dump of a long report, nested values and all, costs several times
    its query)."""

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> Any:
        return value


class UsageOut(Schema):
    start = fields.Date(data_key="from")
    end = fields.Date(data_key="to")
    group_by = fields.List(fields.String())
    rows = Prebuilt(UsageRowOut, many=True)
