"""The caller's stored responses and items found by their OpenAI ids, and OpenAI's paged
item lists: what the Responses and Conversations services share."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypedDict

from app.errors import NotFound, Unprocessable
from app.exchange.responses_ids import parse_item_id, parse_response_id
from app.exchange.responses_items import find_item
from app.models import NOT_STORED_PARAMS, Message
from app.repositories.responses import ResponseRepository

RESPONSES_ENDPOINT = "responses"  # the endpoint column of an exchange made by /v1/responses


class ItemList(TypedDict):
    """OpenAI's list of items: one page, with the ids that bound it."""

    object: str
    data: list[dict[str, Any]]
    first_id: str | None
    last_id: str | None
    has_more: bool


class Deleted(TypedDict):
    """OpenAI's answer to a delete."""

    id: str
    object: str
    deleted: bool


class UnknownId(NotFound):
    """An id that names nothing of the caller's; ``param`` says which field held it."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        if param is not None:
            self.errors = {"json": {param: [message]}}


def readable(row: Any) -> bool:
    """Whether an exchange's content is kept (store: false keeps none, nor does any exchange
    of a no-store key's, on any endpoint: NOT_STORED_PARAMS; a deleted response, a
    tombstone, none either)."""
    if row.deleted_at is not None:
        return False
    params = row.request_params if isinstance(row.request_params, Mapping) else {}
    if params == NOT_STORED_PARAMS:
        return False
    return not (row.endpoint == RESPONSES_ENDPOINT and params.get("store") is False)


def find_response(responses: ResponseRepository, response_id: str) -> Message:
    """The readable exchange ``resp_<id>`` names among ``responses``, or UnknownId."""
    uid = parse_response_id(response_id)
    row = responses.find(uid) if uid is not None else None
    if row is None or not readable(row):
        raise UnknownId(f"No response with id {response_id!r}.")
    return row


def resolve_references(
    responses: ResponseRepository, items: list[dict[str, Any]], field: str
) -> list[dict[str, Any]]:
    """``items`` with each ``item_reference`` replaced by the stored item it names (one of
    the caller's); UnknownId naming ``field`` if there is none."""
    resolved = []
    for item in items:
        if item.get("type") != "item_reference":
            resolved.append(item)
            continue
        parsed = parse_item_id(item["id"])
        row = responses.find(parsed[1]) if parsed is not None else None
        found = (
            find_item(row, parsed[2], parsed[3])
            if parsed is not None and row is not None and readable(row)
            else None
        )
        if found is None or found["id"] != item["id"]:
            raise UnknownId(f"No item with id {item['id']!r}.", field)
        resolved.append({k: v for k, v in found.items() if k not in ("id", "status")})
    return resolved


def item_list(data: list[dict[str, Any]], has_more: bool) -> ItemList:
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": has_more,
    }


def page(items: list[dict[str, Any]], after: str | None, limit: int, order: str) -> ItemList:
    """One page of a list, OpenAI's shape: ``after`` an item id of the list."""
    ordered = items if order == "asc" else items[::-1]
    start = 0
    if after is not None:
        ids = [item["id"] for item in ordered]
        if after not in ids:
            raise Unprocessable(
                f"No item {after!r} in this list.", {"query": {"after": ["No such item."]}}
            )
        start = ids.index(after) + 1
    return item_list(ordered[start : start + limit], len(ordered) > start + limit)
