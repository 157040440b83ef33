"""Daily token budgets: an exchange is refused before any upstream call once its user has
spent their tokens for the UTC day (``TOKEN_BUDGET_DAILY``, or the user's own budget).

Spending is read from the usage rollups, which count exchanges when they end (and title
calls), on the UTC day they were asked, estimated usage included: exchanges still streaming
are not in it yet, so a user can overshoot by what their exchanges in flight spend.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from http import HTTPStatus

from flask import current_app
from sqlalchemy.orm import Session

from app.errors import DomainError
from app.repositories.usage import UsageRepository
from app.services.auth import Principal


class BudgetExhausted(DomainError):
    """The user's tokens for today are spent (429 until the next UTC midnight)."""

    status_code = HTTPStatus.TOO_MANY_REQUESTS


def check_budget(session: Session, actor: Principal, now: datetime | None = None) -> None:
    """Raise BudgetExhausted if ``actor`` has no tokens left on the UTC day of ``now`` (the
    time the exchange is recorded as asked, which decides the day it counts on; default
    the current time): one indexed query."""
    budget = actor.daily_token_budget or current_app.config["TOKEN_BUDGET_DAILY"]
    if not budget:
        return
    now = now or datetime.now(UTC)
    spent = UsageRepository(session).tokens_spent(actor.user_id, now.date())
    if spent < budget:
        return
    reset = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), UTC)
    seconds = max(1, int((reset - now).total_seconds()))
    raise BudgetExhausted(
        f"Today's token budget ({budget}) is spent ({spent} used); it resets at "
        f"{reset.isoformat(timespec='seconds')}.",
        headers={"Retry-After": str(seconds)},
    )
