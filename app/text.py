"""Text both engines can store and every client can decode: ``storable``.

PostgreSQL text cannot hold NUL, and a lone surrogate (which JSON's ``\\ud800`` escape can
carry) cannot be encoded to UTF-8. Model output goes through ``storable`` before it is sent,
so that what the client receives is byte for byte what is saved.
"""

from __future__ import annotations

import re

REPLACEMENT = "\ufffd"
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(text: str) -> str:
    """``text`` with NUL and lone surrogates replaced by U+FFFD."""
    if text.isascii():
        return text.replace("\x00", REPLACEMENT) if "\x00" in text else text
    return _UNSTORABLE.sub(REPLACEMENT, text)
