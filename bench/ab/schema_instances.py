"""A: a request's arguments schema built anew for each request, as webargs does when given
a class (the endpoints were declared with classes); B: the one instance ``Blueprint.arguments``
now makes at declaration. ``python -m bench.ab bench/ab/schema_instances.py --target list``.
"""

from __future__ import annotations

from typing import Any

import marshmallow
from webargs.core import Parser

ONE_INSTANCE = Parser._get_schema


def _per_request(self: Parser, argmap: Any, req: Any) -> marshmallow.Schema:
    if isinstance(argmap, marshmallow.Schema):
        return type(argmap)()
    return ONE_INSTANCE(self, argmap, req)


def swap_a() -> None:
    Parser._get_schema = _per_request  # type: ignore[method-assign]


def swap_b() -> None:
    Parser._get_schema = ONE_INSTANCE  # type: ignore[method-assign]
