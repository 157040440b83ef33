"""RFC 8288 ``Link: <...>; rel="next"`` headers for lists paged with ``after``."""

from __future__ import annotations

from typing import Any

from flask import request, url_for

from app.services.pages import Page

LINK_HEADER = {
    "Link": {
        "description": 'The next page, when there is one: <url>; rel="next" (RFC 8288).',
        "schema": {"type": "string"},
    }
}


def next_link(page: Page[Any], cursor: str = "after", value: object = None) -> dict[str, str]:
    """The Link header for the page after ``page`` (none after the last page).

    The same request with ``after`` set to the page's last id and ``skip`` dropped (the id
    already counts the rows skipped); ``cursor``/``value`` name another cursor parameter.
    """
    if not page.has_more or not page.items:
        return {}
    args = request.args.to_dict(flat=False)
    args.pop("skip", None)
    args[cursor] = [str(page.items[-1].id if value is None else value)]
    url = url_for(request.endpoint or "", **(request.view_args or {}), **args)
    return {"Link": f'<{url}>; rel="next"'}
