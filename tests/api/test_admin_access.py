"""An admin changes and deletes anybody's conversation; the owner sees the change."""

from __future__ import annotations

from tests.conftest import keyed_client


def test_an_admin_updates_and_deletes_another_users_conversation(app, client, make_account):
    admin = keyed_client(app, make_account("root", admin=True).key)
    alices = client.post("/conversations", json={"title": "mine", "model_type": "m1"}).json["id"]

    updated = admin.put(f"/conversations/{alices}", json={"title": "moderated", "model_type": "m2"})
    seen_by_alice = client.get(f"/conversations/{alices}").json
    deleted = admin.delete(f"/conversations/{alices}")

    assert updated.status_code == 202
    assert (seen_by_alice["title"], seen_by_alice["model_type"]) == ("moderated", "m2")
    assert seen_by_alice["owner_id"] == updated.json["owner_id"]
    assert deleted.status_code == 204
    assert client.get(f"/conversations/{alices}").status_code == 404


def test_a_user_can_neither_update_nor_delete_another_users_conversation(app, client, make_account):
    bob = keyed_client(app, make_account("bob").key)
    alices = client.post("/conversations", json={"title": "mine"}).json["id"]

    updated = bob.put(f"/conversations/{alices}", json={"title": "x", "model_type": "m"})
    deleted = bob.delete(f"/conversations/{alices}")

    assert (updated.status_code, deleted.status_code) == (404, 404)
    assert client.get(f"/conversations/{alices}").json["title"] == "mine"
