"""HTTP layer: Blueprints that parse, call one service function, and serialize (+ limits.py).

May import services, exchange (the wire formats), schemas, models (for types), web and the
leaf modules; never repositories (pyproject.toml's import-linter contracts).
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any, NoReturn

import flask_smorest
from flask import Flask, Request, current_app, request
from marshmallow import RAISE
from webargs import core
from webargs.flaskparser import FlaskParser, abort, is_json_request
from werkzeug.routing import IntegerConverter

from app.api.openapi import ErrorResponses
from app.errors import Unprocessable
from app.schemas import json_text
from app.schemas.errors import ErrorOut
from app.schemas.fields import JSON_SCHEMA, MAX_ID, PARAMETER_STYLE


class IdConverter(IntegerConverter):
    """A positive id that fits a 64-bit column; anything else is a 404, not a database error."""

    def __init__(self, map: object, *args: object, **kwargs: object) -> None:
        super().__init__(map, min=1, max=MAX_ID)  # type: ignore[arg-type]


def _id_schema(_converter: IdConverter) -> dict[str, object]:
    return {"type": "integer", "format": "int64", "minimum": 1, "maximum": MAX_ID}


class ArgumentsParser(FlaskParser):
    """webargs' parser, reading JSON bodies with ``json_text.loads``: standard JSON only
    (no NaN or Infinity), nested at most ``MAX_JSON_DEPTH`` deep; anything else is a 400 that
    says why. (Python's own parser takes NaN, raises a plain ValueError for an integer of
    more than 4300 digits and RecursionError for deep nesting: 500s, or worse, stored.)
    """

    # A query parameter no schema declares is refused (422), as an unknown body field is:
    # ignored, ?_external=1 or ?endpoint=x would reach url_for, and a client's typo (?limit=
    # for take) would go unnoticed.
    DEFAULT_UNKNOWN_BY_LOCATION = {**FlaskParser.DEFAULT_UNKNOWN_BY_LOCATION, "query": RAISE}

    def _raw_load_json(self, req: Request) -> Any:
        if not is_json_request(req):
            return core.missing
        data = req.get_data(cache=True)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise json.JSONDecodeError(f"Not UTF-8: {exc.reason}", doc=" ", pos=0) from exc
        return json_text.loads(text)

    def _handle_invalid_json_error(
        self,
        error: json.JSONDecodeError | UnicodeDecodeError,
        req: Request,
        *args: Any,
        **kwargs: Any,
    ) -> NoReturn:
        if isinstance(error, json_text.UnsupportedJSON):
            message = f"Invalid JSON body: {error.reason}"
            abort(HTTPStatus.BAD_REQUEST, exc=error, message=message, messages={"json": [message]})
        super()._handle_invalid_json_error(error, req, *args, **kwargs)


def _json_schema_keywords(_converter: Any, field: Any, **_kwargs: Any) -> dict[str, Any]:
    """The keywords a field's metadata gives under JSON_SCHEMA, as they are."""
    return dict(field.metadata.get(JSON_SCHEMA, {}))


def _parameter_style(_converter: Any, field: Any, **_kwargs: Any) -> dict[str, Any]:
    """A query parameter's serialization, when its metadata names one (metadata[key]=value
    filters are deepObject: a form-style object would make every name a valid parameter)."""
    style = field.metadata.get(PARAMETER_STYLE)
    return {"style": style, "explode": True} if style else {}


# Left alone: the probes, docs and metrics (load balancers and scrapers may add a query
# string), and /v1, whose clients send their own (Azure's api-version) as OpenAI ignores them.
_ANY_QUERY_BLUEPRINTS = frozenset({"health", "api-docs", "docs", "metrics", "v1"})


def _refuse_undeclared_query() -> None:
    """A query string on an operation that declares no query parameter is refused (422), as
    the arguments parser refuses an undeclared one where some are declared. Runs after
    authentication."""
    if not request.args or request.method == "OPTIONS":
        return
    if request.blueprint in _ANY_QUERY_BLUEPRINTS:
        return
    view = current_app.view_functions.get(request.endpoint or "")
    view_class = getattr(view, "view_class", None)
    method = "get" if request.method == "HEAD" else request.method.lower()
    apidoc = getattr(getattr(view_class, method, None), "_apidoc", None)
    if apidoc is None:
        return
    declared = apidoc.get("arguments", {}).get("parameters", [])
    if any(parameter["in"] == "query" for parameter in declared):
        return
    raise Unprocessable(
        "The request is invalid; see errors.",
        {"query": {name: ["Unknown field."] for name in request.args}},
    )


class Blueprint(flask_smorest.Blueprint):
    ARGUMENTS_PARSER = ArgumentsParser()

    def arguments(self, schema: Any, *args: Any, **kwargs: Any) -> Any:
        """flask-smorest's, with a schema class made an instance once: webargs would build
        one per request, deep-copying its fields each time."""
        if isinstance(schema, type):
            schema = schema()
        return super().arguments(schema, *args, **kwargs)


class Api(flask_smorest.Api):
    # Each operation lists the errors it can answer (app/api/openapi.py) rather than one
    # catch-all "default", and every error has the shape app/errors.py gives it.
    DEFAULT_ERROR_RESPONSE_NAME = None
    ERROR_SCHEMA = ErrorOut


def register_api(app: Flask) -> Api:
    """Create the app's Api and register the URL converter and every Blueprint on it."""
    from app.api.conversations import blp as conversations
    from app.api.export import blp as export
    from app.api.feedback import blp as feedback
    from app.api.generation import blp as generation
    from app.api.health import blp as health
    from app.api.messages import blp as messages
    from app.api.metrics import blp as metrics
    from app.api.responses import blp as responses
    from app.api.search import blp as search
    from app.api.usage import blp as usage
    from app.api.v1 import blp as v1
    from app.errors import register_error_shape
    from app.exchange.openai_wire import error_shape

    app.url_map.converters["id"] = IdConverter
    api = Api(app, spec_kwargs={"extra_plugins": [ErrorResponses()]})
    api.register_converter(IdConverter, _id_schema)
    api.ma_plugin.converter.add_attribute_function(_json_schema_keywords)
    api.ma_plugin.converter.add_parameter_attribute_function(_parameter_style)
    for blueprint in (
        conversations,
        messages,
        feedback,
        search,
        export,
        generation,
        usage,
        health,
        metrics,
        v1,
        responses,
    ):
        api.register_blueprint(blueprint)
    register_error_shape(app, "/v1/", error_shape)
    app.before_request(_refuse_undeclared_query)
    return api
