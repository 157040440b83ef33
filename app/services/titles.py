"""Conversation titles generated from the first prompt, with a plain fallback."""

from __future__ import annotations

import functools
import logging
import re
from datetime import date

from flask import Flask

from app.errors import DomainError
from app.extensions import db
from app.llm.client import get_llm
from app.repositories import MessageRepository
from app.services.persistence import save_with_retry
from app.services.usage import record_title, title_record, today
from app.web import metrics

log = logging.getLogger(__name__)

TITLE_CHARS = 80
FALLBACK_WORDS = 8
INSTRUCTION = (
    "Write a title of at most six words for a conversation that starts with the user's "
    "message. Answer with the title alone: no quotes, no punctuation at the end."
)
_THINK = re.compile(r"<think>.*?(</think>|$)", re.DOTALL | re.IGNORECASE)
_LABEL = re.compile(r"^\s*title\s*:\s*", re.IGNORECASE)
_MARKUP = re.compile(r"[*_`#>]+")
_QUOTES = "\"'\u201c\u201d\u2018\u2019\u00ab\u00bb"  # straight, curly and angle quotes


def _cap(text: str) -> str:
    if len(text) <= TITLE_CHARS:
        return text
    cut = text[:TITLE_CHARS].rsplit(" ", 1)[0]
    return cut or text[:TITLE_CHARS]


def clean_title(raw: str) -> str | None:
    """A model's answer made into a title: reasoning, markdown, quotes dropped; None if empty."""
    text = _THINK.sub("", raw)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return None
    title = _MARKUP.sub("", _LABEL.sub("", lines[0]))
    title = " ".join(title.split()).strip(_QUOTES + " ").rstrip(".:;,")
    title = title.strip(_QUOTES + " ")
    return _cap(title) or None


def fallback_title(prompt: str) -> str:
    """The first words of the prompt."""
    return _cap(" ".join(prompt.split()[:FALLBACK_WORDS])) or "Untitled"


def title_conversation(
    app: Flask, conversation_id: int, model: str, prompt: str, day: date | None = None
) -> None:
    """Title an untitled conversation from its first prompt (runs after its first complete
    exchange, which ``prompt`` is; exchanges that failed before it may have come first); the
    title call's usage counts on ``day``, the UTC day the exchange was asked (default today)."""
    title_model = app.config["TITLE_MODEL"] or model
    # Its own app context: the connection goes back before the LLM is called.
    with app.app_context():
        prompt = MessageRepository(db.session).first_prompt(conversation_id) or prompt
    with app.app_context():
        title, usage = None, None
        try:
            answer = get_llm().complete_with_usage(
                title_model,
                [{"role": "system", "content": INSTRUCTION}, {"role": "user", "content": prompt}],
                max_tokens=app.config["TITLE_MAX_TOKENS"],
            )
            title, usage, called = clean_title(answer.text), answer.usage, True
        except DomainError as error:
            log.info("title call failed (%s); using the prompt's first words", error.message)
            called = False
        title = title or fallback_title(prompt)
    tokens = (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) if usage else None
    if tokens:
        metrics.title_tokens(title_model, tokens[2])
    # Tokens spent on titles count as usage of kind title, not as exchanges.
    record = title_record(conversation_id, title, title_model, day or today(), tokens, called)
    save_with_retry(
        app,
        functools.partial(record_title, record=record),
        record,
        f"title of conversation {conversation_id}",
        exchange=False,
    )
