"""What a write finds under its conversation's lock that forbids it: raised by repositories,
answered by app/errors.py (409, or 404 for a conversation gone), never as a database error."""

from __future__ import annotations


class WriteConflict(Exception):
    """A write refused because of what another one did or is doing; ``message`` says which
    exchange or conversation, by id."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ExchangeInProgress(WriteConflict):
    """A delete would remove an exchange still being generated (its worker would write its
    ending, and charge it, afterwards)."""

    def __init__(self, message_id: int) -> None:
        super().__init__(
            f"Exchange {message_id} is in progress; delete once it has ended (the reaper "
            "ends a stale one as interrupted)."
        )
        self.message_id = message_id


class ParentGone(WriteConflict):
    """A new exchange's parent was deleted after its context was read: nothing was saved."""

    def __init__(self, parent_id: int) -> None:
        super().__init__(
            f"Exchange {parent_id}, which this one would follow, was deleted meanwhile; "
            "nothing was saved."
        )
        self.parent_id = parent_id


class ConversationGone(WriteConflict):
    """A new exchange's conversation was deleted after its context was read."""

    def __init__(self, conversation_id: int) -> None:
        super().__init__(f"Conversation {conversation_id} does not exist.")
        self.conversation_id = conversation_id
