"""Every list answers with an RFC 8288 Link rel="next" header built on after."""

from __future__ import annotations

import re

from app.models import Conversation, Message

NEXT = re.compile(r'^<([^>]+)>; rel="next"$')


def walk(client, url: str) -> tuple[list[list[int]], list[str]]:
    """Follow next links from ``url`` to the end: the ids of each page, the URLs visited."""
    pages, urls = [], []
    while url:
        response = client.get(url)
        assert response.status_code == 200, response.json
        pages.append([row["id"] for row in response.json])
        urls.append(url)
        link = response.headers.get("Link")
        url = NEXT.match(link)[1] if link else None
    return pages, urls


def test_conversation_pages_link_to_the_next_until_the_last(client, database, owner_id):
    ids = database.add(
        *[Conversation(title=f"c{n}", model_type="m", owner_id=owner_id) for n in range(5)]
    )

    pages, urls = walk(client, "/conversations?take=2")

    assert pages == [ids[0:2], ids[2:4], ids[4:5]]
    assert urls[1:] == [
        f"/conversations?take=2&after={ids[1]}",
        f"/conversations?take=2&after={ids[3]}",
    ]


def test_a_page_that_ends_exactly_at_the_last_row_has_no_next_link(client, database, owner_id):
    database.add(
        *[Conversation(title=f"c{n}", model_type="m", owner_id=owner_id) for n in range(4)]
    )

    pages, _ = walk(client, "/conversations?take=2")

    assert [len(page) for page in pages] == [2, 2]


def test_the_next_link_drops_skip_and_keeps_the_other_arguments(client, database, owner_id):
    ids = database.add(
        *[
            Conversation(title=f"c{n}", model_type="m", owner_id=owner_id, meta={"k": "v"})
            for n in range(4)
        ]
    )

    response = client.get("/conversations?skip=1&take=1&metadata[k]=v")

    url = NEXT.match(response.headers["Link"])[1]
    assert url == f"/conversations?take=1&metadata%5Bk%5D=v&after={ids[1]}"
    assert [row["id"] for row in client.get(url).json] == [ids[2]]


def test_an_empty_list_has_no_link(client):
    response = client.get("/conversations")

    assert response.json == []
    assert "Link" not in response.headers


def test_message_pages_link_to_the_next_until_the_last(client, database, owner_id):
    (conversation_id,) = database.add(Conversation(title="t", model_type="m", owner_id=owner_id))
    ids = database.add(
        *[Message(conversation_id=conversation_id, prompt_content=f"p{n}") for n in range(3)]
    )

    pages, urls = walk(client, f"/conversations/{conversation_id}/messages?take=2")

    assert pages == [ids[0:2], ids[2:3]]
    assert urls[1] == f"/conversations/{conversation_id}/messages?take=2&after={ids[1]}"


def test_the_link_header_is_documented(client):
    paths = client.get("/openapi.json").json["paths"]

    for path in ("/conversations", "/conversations/{conversation_id}/messages"):
        assert "Link" in paths[path]["get"]["responses"]["200"]["headers"]
