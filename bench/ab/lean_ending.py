"""A: a stream's ending reads the whole ended row back, made a Message (as before
``PendingExchange.wants_saved_row``); B: the code as it is (the text and /v1 streams read
back its id only). ``python -m bench.ab bench/ab/lean_ending.py --tokens 20 [--target v1]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.models import Message
from app.repositories.usage import UsageRepository

NEW = UsageRepository.end_and_fold


def whole(
    self: UsageRepository, message_id: int, values: Mapping[str, Any], whole: bool = True
) -> Message | None:
    return NEW(self, message_id, values, True)


def swap_a() -> None:
    UsageRepository.end_and_fold = whole  # type: ignore[method-assign]


def swap_b() -> None:
    UsageRepository.end_and_fold = NEW  # type: ignore[method-assign]
