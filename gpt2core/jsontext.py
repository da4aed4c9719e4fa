"""JSON text that came from outside (a checkpoint's files, a run's state, TF_CONFIG, the
history file), parsed with every way it can fail as one ``ValueError``."""

from __future__ import annotations

import json
from typing import Any


def loads(text: str | bytes) -> Any:
    """``json.loads``, but a text nested too deep for the parser is a ValueError too.

    ``json.loads`` raises JSONDecodeError (a ValueError) for bad syntax and a plain
    ValueError for an integer over Python's 4,300-digit limit, but RecursionError for
    nesting too deep (``[`` x 100,000): a caller that catches ValueError, as it should,
    then let a hostile file through as a traceback."""
    try:
        return json.loads(text)
    except RecursionError as e:
        raise ValueError(f"nested too deep: {e}") from None
