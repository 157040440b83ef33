"""RFC 8288 ``Link: <...>; rel="next"`` headers for lists paged with ``after``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import request, url_for

from app.services.pages import Page

LINK_HEADER = {
    "Link": {
        "description": 'The next page, when there is one: <url>; rel="next" (RFC 8288).',
        "schema": {"type": "string"},
    }
}


def next_link(page: Page[Any]) -> dict[str, str]:
    """The Link header for the page after ``page`` (none after the last page).

    The same request with ``after`` set to the page's last id and ``skip`` dropped (the id
    already counts the rows skipped).
    """
    if not page.has_more or not page.items:
        return {}
    return link_to("after", page.items[-1].id)


def cursor_link(page: Page[Any], cursor: Callable[[Any], str]) -> dict[str, str]:
    """The Link header for the page after ``page`` in a list paged by an opaque ``cursor``
    (made from the page's last row) rather than by id."""
    if not page.has_more or not page.items:
        return {}
    return link_to("cursor", cursor(page.items[-1]))


def link_to(cursor: str, value: object) -> dict[str, str]:
    """A rel="next" Link: this request with ``cursor`` set to ``value``, without skip."""
    args = request.args.to_dict(flat=False)
    args.pop("skip", None)
    args[cursor] = [str(value)]
    url = url_for(request.endpoint or "", **(request.view_args or {}), **args)
    return {"Link": f'<{url}>; rel="next"'}
