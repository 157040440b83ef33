"""HTTP layer: Blueprints that parse, call one service function, and serialize."""

from __future__ import annotations

from flask import Flask
from flask_smorest import Api
from werkzeug.routing import IntegerConverter


class IdConverter(IntegerConverter):
    """A positive id that fits a 64-bit column; anything else is a 404, not a database error."""

    def __init__(self, map: object, *args: object, **kwargs: object) -> None:
        super().__init__(map, min=1, max=2**63 - 1)  # type: ignore[arg-type]


def _id_schema(_converter: IdConverter) -> dict[str, object]:
    return {"type": "integer", "format": "int64", "minimum": 1}


def register_api(app: Flask) -> Api:
    """Create the app's Api and register the URL converter and every Blueprint on it."""
    from app.api.conversations import blp as conversations
    from app.api.generation import blp as generation
    from app.api.health import blp as health
    from app.api.messages import blp as messages

    app.url_map.converters["id"] = IdConverter
    api = Api(app)
    api.register_converter(IdConverter, _id_schema)
    for blueprint in (conversations, messages, generation, health):
        api.register_blueprint(blueprint)
    return api
