"""A conversation's metadata: the field that takes it, and the metadata[key]=value filters."""

from __future__ import annotations

import re
from typing import Any

from marshmallow import Schema, ValidationError, fields, pre_load, validate

from app.models import METADATA_KEY_MAX, METADATA_MAX_PAIRS, METADATA_VALUE_MAX
from app.schemas.fields import JSON_SCHEMA, PARAMETER_STYLE, STORABLE, STORABLE_TEXT, Text


def metadata_field(
    *,
    nullable_values: bool = False,
    description: str = "",
    parameter_style: str | None = None,
    key_pattern: str = STORABLE_TEXT,
    **kwargs: Any,
) -> fields.Dict:
    """A metadata object: at most 16 pairs of strings (OpenAI's limits); keys match
    ``key_pattern``."""
    value = Text(validate=validate.Length(max=METADATA_VALUE_MAX), allow_none=nullable_values)
    description += (
        f"At most {METADATA_MAX_PAIRS} pairs; keys 1 to {METADATA_KEY_MAX} characters, "
        f"string values up to {METADATA_VALUE_MAX}."
    )
    if nullable_values:
        description += " Merged into the conversation's; a key set to null is removed."
    return fields.Dict(
        keys=Text(
            validate=[
                validate.Length(min=1, max=METADATA_KEY_MAX),
                validate.Regexp(key_pattern, error="Not a valid key here."),
            ]
        ),
        values=value,
        validate=_at_most_pairs,
        data_key="metadata",
        metadata={
            "description": description,
            "maxProperties": METADATA_MAX_PAIRS,
            **({PARAMETER_STYLE: parameter_style} if parameter_style else {}),
            JSON_SCHEMA: {
                "propertyNames": {
                    "minLength": 1,
                    "maxLength": METADATA_KEY_MAX,
                    "pattern": key_pattern,
                }
            },
        },
        **kwargs,
    )


def _at_most_pairs(value: dict[str, Any]) -> None:
    # Not validate.Length: the document would say maxLength, a string's bound.
    if len(value) > METADATA_MAX_PAIRS:
        raise ValidationError(f"At most {METADATA_MAX_PAIRS} pairs.")


METADATA_PARAM = re.compile(r"^metadata\[(.*)\]$", re.DOTALL)
# A filter's key never holds "][": metadata[a][b]=v is a nested deepObject, which no
# conversation's metadata (string values only) can match, not the key "a][b".
FILTER_KEY = rf"^(?:[^{STORABLE}\]]|\]+[^{STORABLE}\[\]])*\]*$"


class MetadataFilterArgs(Schema):
    """Query arguments that take ``metadata[key]=value`` filters (all must match)."""

    meta = metadata_field(
        load_default=dict,
        description="Only conversations whose metadata has these pairs: metadata[key]=value "
        "(a key holding ][ cannot be filtered on: that is a nested object). ",
        parameter_style="deepObject",
        key_pattern=FILTER_KEY,
    )

    @pre_load
    def collect_metadata(self, data: Any, **_kwargs: Any) -> Any:
        # The filters' keys are the user's own: gather metadata[key] parameters into one dict
        # for the metadata field to validate (limits as on a conversation).
        if not hasattr(data, "keys"):
            return data
        loaded: dict[str, Any] = {}
        wanted: dict[str, Any] = {}
        for key in data:
            match = METADATA_PARAM.match(key)
            if match:
                wanted[match[1]] = data[key]
            else:
                loaded[key] = data[key]
        if wanted:
            loaded["metadata"] = wanted
        return loaded
