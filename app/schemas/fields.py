"""Fields and validators every API area shares: storable text, names, UTC times, strict JSON
numbers and booleans, owners."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from marshmallow import ValidationError, fields, validate

from app.models import MODEL_MAX, TITLE_MAX
from app.text import storable

MAX_ID = 2**63 - 1
PROMPT_MAX = 100_000
# A prompt sent in a query string must leave the whole request line within the 4094 bytes
# gunicorn accepts (its limit_request_line): at worst 12 bytes a character once percent-encoded
# (4 UTF-8 bytes, %XX each), plus the path and the other parameter.
QUERY_PROMPT_MAX = 300


# A field's metadata key for JSON Schema keywords apispec would not copy into the document
# (app/api/__init__.py adds them): propertyNames, or items its converter would overwrite.
JSON_SCHEMA = "json_schema"
# A field's metadata key for its query parameter's OpenAPI style (app/api/__init__.py).
PARAMETER_STYLE = "parameter_style"

# What Text accepts, for the OpenAPI document: no NUL.
STORABLE = "\\u0000"
STORABLE_TEXT = rf"^[^{STORABLE}]*$"


class Text(fields.String):
    """A string a database can store: no NUL byte (refused); a lone surrogate, which JSON may
    spell ("\\ud800") and no database stores, becomes U+FFFD, as in model output.

    The document says "no NUL" (pattern). It cannot say "no lone surrogate": validators that
    compile patterns as Rust or ECMA regexes cannot name one, so the service takes them.
    """

    def __init__(self, **kwargs: Any) -> None:
        metadata = {"pattern": STORABLE_TEXT, **kwargs.pop("metadata", {})}
        super().__init__(metadata=metadata, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        if "\x00" in text:
            raise ValidationError("Must not contain NUL characters.")
        return storable(text)


class UtcDateTime(fields.AwareDateTime):
    """An ISO 8601 time with its offset (``default_timezone`` when it has none, if given),
    loaded as UTC: one whose UTC time falls outside years 1 to 9999
    (9999-12-31T23:00:00-05:00) is refused, where converting it later would overflow."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> datetime:
        moment = super()._deserialize(value, attr, data, **kwargs)
        try:
            return moment.astimezone(UTC)
        except OverflowError as error:
            raise ValidationError("Must be between years 1 and 9999 in UTC.") from error


class JsonInteger(fields.Integer):
    """A JSON number with an integral value (1, or 1.0: JSON Schema's integer), loaded as an
    int; not a string, a boolean or a fraction (marshmallow's Integer takes "5", and 5.5
    truncated)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.make_error("invalid")
        if isinstance(value, float):
            if not value.is_integer():
                raise self.make_error("invalid")
            value = int(value)
        return super()._deserialize(value, attr, data, **kwargs)  # type: ignore[no-any-return]


class StrictBoolean(fields.Boolean):
    """A JSON true or false, nothing else (marshmallow's Boolean takes 0, 1, "yes", "on")."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid")
        return value


def strict_boolean(**kwargs: Any) -> fields.Boolean:
    return StrictBoolean(**kwargs)


def json_values(value: Any) -> Iterator[Any]:
    """Every value in a JSON value, keys included, walked without recursion (the depth is
    the client's)."""
    stack = [value]
    while stack:
        item = stack.pop()
        yield item
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def not_blank(value: str) -> None:
    """Reject strings made only of white space (the empty string is Length's to report)."""
    if value and not value.strip():
        raise ValidationError("Must not be blank.")


# What Text with not_blank accepts, for the OpenAPI document: no NUL, and at least one
# character that is not white space as str.strip() sees it (listed: ECMA's \s differs).
_WHITE_SPACE = r"\t-\r\u001c-\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
NOT_BLANK_TEXT = rf"^[^{STORABLE}]*[^{STORABLE}{_WHITE_SPACE}][^{STORABLE}]*$"


def not_blank_text(max_length: int, **kwargs: Any) -> Text:
    metadata = {"pattern": NOT_BLANK_TEXT, **kwargs.pop("metadata", {})}
    return Text(
        validate=[validate.Length(min=1, max=max_length), not_blank], metadata=metadata, **kwargs
    )


def title_field(**kwargs: Any) -> Text:
    metadata = {"example": "Trip to Lyon", **kwargs.pop("metadata", {})}
    return not_blank_text(TITLE_MAX, metadata=metadata, **kwargs)


# What names a model, at any provider (gpt-4o-mini, llama3.1:8b, Qwen/Qwen2.5-7B-Instruct):
# printable ASCII, no white space. Anything else no LLM serves; a line break or a non-Latin-1
# character even breaks servers that echo the name in a response header. (The empty string
# is Length's to report.)
MODEL_NAME = r"^[!-~]*$"


def model_type_field(**kwargs: Any) -> Text:
    metadata = {"pattern": MODEL_NAME, **kwargs.pop("metadata", {})}
    return Text(
        metadata=metadata,
        validate=[
            validate.Length(min=1, max=MODEL_MAX),
            validate.Regexp(MODEL_NAME, error="Must be a model name: printable ASCII, no spaces."),
        ],
        **kwargs,
    )


def prompt_field(max_length: int = PROMPT_MAX, **kwargs: Any) -> Text:
    metadata = {"example": "Where should I eat in Lyon?", **kwargs.pop("metadata", {})}
    return not_blank_text(max_length, required=True, metadata=metadata, **kwargs)


_ID_DIGITS = len(str(MAX_ID))


class Owner(fields.Field):
    """``me`` (the default), ``all`` or a user id: whose ``whose`` a request reads."""

    def __init__(self, whose: str = "conversations", **kwargs: Any) -> None:
        # Documented as what it accepts: one of the two words, or an id.
        schema = {
            "oneOf": [
                {"type": "string", "enum": ["me", "all"]},
                {"type": "integer", "minimum": 1, "maximum": MAX_ID},
            ]
        }
        description = f"Whose {whose}: me (default); admins also all or a user id."
        metadata = {**schema, "description": description, **kwargs.pop("metadata", {})}
        super().__init__(load_default="me", metadata=metadata, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str | int:
        text = str(value).strip()
        if text in {"me", "all"}:
            return text
        # Count the digits first: int() refuses more than 4300 (a ValueError, so a 500).
        if (
            text.isascii()
            and text.isdigit()
            and len(text) <= _ID_DIGITS
            and 0 < int(text) <= MAX_ID
        ):
            return int(text)
        raise ValidationError("Must be me, all, or a user id.")
