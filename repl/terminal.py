"""The one path from model or user text to a terminal.

Model output, prompts, corpora and file names can carry bytes a terminal acts on: ESC
sequences (clear the screen, move the cursor, OSC 52 writes the clipboard), BEL, a
carriage return that overwrites a line, 8-bit C1 controls (U+009B is a one-character
CSI), DEL, and the bidi controls that reorder what a reader sees (U+202E). Every front
end and every command turns such text into something inert with ``safe`` before it is
printed, and ``json_line`` does the same for ``--json`` output (valid JSON, with those
characters as ``\\uXXXX`` escapes).
"""

from __future__ import annotations

import json
import re
from typing import Any

# C0 except tab and newline, DEL, C1, and the bidi embedding/override/isolate controls
# and marks (U+061C, U+200E/F, U+202A-U+202E, U+2066-U+2069).
_DANGEROUS = "\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
_DANGEROUS_RE = re.compile(f"[{_DANGEROUS}]")
# In JSON text, json.dumps already escapes C0; DEL, C1 and bidi controls it leaves raw.
_JSON_RAW_RE = re.compile("[\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _shown(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def safe(text: str) -> str:
    """``text`` with every control a terminal would act on shown as its code
    (``\\x1b``, ``\\u202e``); tabs and newlines are kept."""
    return _DANGEROUS_RE.sub(lambda m: _shown(m.group()), text)


def inline(text: str) -> str:
    """``safe`` for text shown inside one line (a token in a table or a label): newlines
    and tabs shown as ``\\n`` and ``\\t`` too, so a newline token does not break its row and a
    tab token is not mistaken for spaces."""
    return safe(text).replace("\n", "\\n").replace("\t", "\\t")


def strip_controls(text: str) -> str:
    """``text`` without the controls ``safe`` would show (for what a person typed)."""
    return _DANGEROUS_RE.sub("", text)


def json_line(obj: Any) -> str:
    """One JSON document, readable UTF-8, with nothing a terminal would act on."""
    text = json.dumps(obj, ensure_ascii=False)
    return _JSON_RAW_RE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


ERROR_LINE_CHARS = 300  # an error line quotes what was typed, which can be a megabyte


def clip_error(text: str) -> str:
    """An error message as one line of at most ERROR_LINE_CHARS: errors echo the value or
    the path a person gave (``:set temperature=`` and a pasted megabyte printed a
    1,000,084-character line), and some libraries' messages go on for lines (Keras prints
    the arrays it could not assign). What is cut is counted."""
    first, *rest = text.strip().split("\n")
    more = len(first) - ERROR_LINE_CHARS
    if more > 0:
        first = f"{first[:ERROR_LINE_CHARS]}... ({more:,} more characters)"
    if rest:
        first += f" (+{len(rest)} more line{'s' if len(rest) > 1 else ''})"
    return first


def is_safe(text: str) -> bool:
    return _DANGEROUS_RE.search(text) is None


__all__ = ["safe", "strip_controls", "json_line", "is_safe", "clip_error"]
