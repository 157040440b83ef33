"""FastDumpSchema: a response schema that reads its plain fields off the object directly."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from marshmallow import Schema, fields, missing


def _to_int(value: Any) -> Any:
    return value if value is None or type(value) is int else int(value)


def _to_str(value: Any) -> Any:
    return value if value is None or type(value) is str else str(value)


def _to_bool(value: Any) -> Any:
    return value if value is None or type(value) is bool else bool(value)


def _to_iso(value: Any) -> Any:
    return None if value is None else value.isoformat()


def _field_converter(field: fields.Field) -> Any:
    """How ``field`` dumps a value, when marshmallow's machinery adds nothing to it."""
    if field.dump_default is not missing or "." in (field.attribute or ""):
        return None
    kind = type(field)
    if kind is fields.Integer and not field.as_string:
        return _to_int
    if kind is fields.String:
        return _to_str
    if kind is fields.Boolean:
        return _to_bool
    if kind in (fields.AwareDateTime, fields.DateTime) and field.format in (None, "iso"):
        return _to_iso
    return None


def _read_attribute(obj: Any, attribute: str, default: Any) -> Any:
    return getattr(obj, attribute, default)


class FastDumpSchema(Schema):
    """A response schema whose plain fields (int, str, bool, ISO datetimes) are read off the
    object directly, skipping marshmallow's per-field machinery on every list page; others go
    through marshmallow, with the same output."""

    def _serialize(self, obj: Any, *, many: bool = False) -> Any:
        if many and obj is not None:
            return [self._serialize(item) for item in obj]
        if isinstance(obj, Mapping):
            return super()._serialize(obj)
        plan = self.__dict__.get("_dump_plan")
        if plan is None:
            plan = self.__dict__["_dump_plan"] = [
                (
                    name,
                    field.attribute or name,
                    field.data_key if field.data_key is not None else name,
                    _field_converter(field),
                    field,
                    # An attribute, not an item: marshmallow's accessor tries obj[key]
                    # first, and a row (a page of conversations is read as rows) raises and
                    # formats an error for that before getattr answers.
                    self.get_attribute if "." in (field.attribute or name) else _read_attribute,
                )
                for name, field in self.dump_fields.items()
            ]
        result = self.dict_class()
        for name, attribute, key, convert, field, accessor in plan:
            if convert is not None:
                value = getattr(obj, attribute, missing)
                if value is not missing:
                    result[key] = convert(value)
                    continue
            value = field.serialize(name, obj, accessor=accessor)
            if value is not missing:
                result[key] = value
        return result
