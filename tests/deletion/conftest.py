"""Fixtures of the deletion tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def conversation_id(client) -> int:
    return client.post("/conversations", json={"title": "chat", "model_type": "m"}).json["id"]
