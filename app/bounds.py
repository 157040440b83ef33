"""Bounds of the columns that values from the upstream are clamped to before they are saved.

A leaf: app/models/ declares its columns with them, and app/llm clamps to them.
"""

from __future__ import annotations

FINISH_REASON_MAX = 32  # characters of ``messages.finish_reason``
INTEGER_MAX = 2**31 - 1  # what an INTEGER column (the token counts) holds
