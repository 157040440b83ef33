"""RFC 8288 ``Link: <...>; rel="next"`` headers for lists paged with ``after``."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from flask import request
from marshmallow import Schema

from app.schemas.metadata import METADATA_PARAM, MetadataFilterArgs
from app.services.pages import Page

LINK_HEADER = {
    "Link": {
        "description": 'The next page, when there is one: <url>; rel="next" (RFC 8288).',
        "schema": {"type": "string"},
    }
}


def next_link(page: Page[Any], arguments: type[Schema]) -> dict[str, str]:
    """The Link header for the page after ``page`` (none after the last page).

    The same request with ``after`` set to the page's last id and ``skip`` dropped (the id
    already counts the rows skipped); ``arguments``: the schema the request's query was
    validated with.
    """
    if not page.has_more or not page.items:
        return {}
    return link_to("after", page.items[-1].id, arguments)


def cursor_link(
    page: Page[Any], cursor: Callable[[Any], str], arguments: type[Schema]
) -> dict[str, str]:
    """The Link header for the page after ``page`` in a list paged by an opaque ``cursor``
    (made from the page's last row) rather than by id."""
    if not page.has_more or not page.items:
        return {}
    return link_to("cursor", cursor(page.items[-1]), arguments)


def link_to(cursor: str, value: object, arguments: type[Schema]) -> dict[str, str]:
    """A rel="next" Link: this request's path with its validated query arguments, ``cursor``
    set to ``value``, without skip.

    Only the parameters ``arguments`` declares are carried over: the others were ignored,
    and url_for would read some (_external, _anchor, _method, _scheme, endpoint, the path's
    own) as instructions to it, a 500 or a link to the client's Host.
    """
    declared = _declared(arguments)
    filters = issubclass(arguments, MetadataFilterArgs)
    pairs = [
        (name, item)
        for name, items in request.args.lists()
        if name not in {"skip", cursor}
        and (name in declared or (filters and METADATA_PARAM.match(name) is not None))
        for item in items
    ]
    pairs.append((cursor, str(value)))
    url = f"{request.script_root}{request.path}?{urlencode(pairs)}"
    return {"Link": f'<{url}>; rel="next"'}


@functools.cache
def _declared(arguments: type[Schema]) -> frozenset[str]:
    return frozenset(
        field.data_key or name for name, field in arguments().fields.items() if not field.dump_only
    )
