"""JSON text that came from outside (a checkpoint's files, a run's state, TF_CONFIG, the
history file, a saved session), parsed with every way it can fail as one ``ValueError``."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

# Deeper than any file we write (a saved session nests 4 levels) and far below the
# interpreter's recursion limit, so the parser is never run near it.
MAX_DEPTH = 200

# a string that never closes runs to the end: tried again from each quote inside it,
# each try scanning to the end, it took quadratic time
_STRING = re.compile(r'"(?:[^"\\]|\\.)*(?:"|\\?\Z)', re.S)
_BRACKET = re.compile(r"[\[\]{}]")


def loads(text: str | bytes) -> Any:
    """``json.loads``, but a text nested too deep is a ValueError too.

    ``json.loads`` raises JSONDecodeError (a ValueError) for bad syntax and a plain
    ValueError for an integer over Python's 4,300-digit limit, but RecursionError for
    nesting too deep (``[`` x 100,000). Catching that RecursionError is not enough: the
    parser reaches it ~1,000 frames down, and anything that runs there (a collection
    calling a finaliser, an unraisable-exception hook) fails in turn and prints
    "Exception ignored in ..." to stderr. So the nesting is measured first, without
    recursion, and a text deeper than MAX_DEPTH never reaches the parser."""
    if isinstance(text, (bytes, bytearray)):
        text = text.decode(json.detect_encoding(text), "surrogatepass")
    if too_deep(text):
        raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
    try:
        return json.loads(text)
    except RecursionError as e:  # called with the stack already deep
        raise ValueError(f"nested too deep: {e}") from None


def too_deep(text: str) -> bool:
    """Whether ``text`` nests ``[``/``{`` deeper than MAX_DEPTH, brackets inside strings
    not counted. Linear and without recursion; a text with few brackets returns at once."""
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return False
    depth = 0
    for m in _BRACKET.finditer(_STRING.sub("", text)):
        depth += 1 if m.group() in "[{" else -1
        if depth > MAX_DEPTH:
            return True
    return False


def too_deep_file(directory: Path) -> Path | None:
    """The first small ``*.json`` file in ``directory`` that nests deeper than MAX_DEPTH,
    or None. For directories a library (transformers) reads with ``json.load``: they are
    refused before it recurses into them. tokenizer.json is read by the tokenizers
    library, whose parser stops at 128 levels by itself."""
    if not directory.is_dir():
        return None
    for path in sorted(directory.glob("*.json")):
        if path.name == "tokenizer.json":
            continue
        try:
            if path.stat().st_size > 16 << 20:
                continue  # not a config; left to the loader
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue  # the loader says what is wrong with it
        if too_deep(text):
            return path
    return None
