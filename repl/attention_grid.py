"""A T x T attention grid as plain text rows: shared by the Attention view (which styles
the parts) and the `gpt2 inspect` / `:inspect` report (which prints them). Plain strings:
no Textual, no styles (rich only measures the labels' width in terminal cells)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from rich.cells import set_cell_size

from repl.terminal import safe

SHADES = " ░▒▓█"
MASKED = "·"  # a key after the query: the causal mask hides it (its weight is exactly 0)
INTRO = "rows look back; · = masked"  # fits the narrowest panel (29 columns)


def shade(w: float) -> str:
    return SHADES[min(len(SHADES) - 1, int(w * (len(SHADES) - 1) + 0.5))]


@dataclass(frozen=True)
class GridRow:
    index: str  # the query position, right-aligned: "  3 "
    label: str  # its piece, escaped and cut or padded to the label width, in cells
    shades: str  # one shaded cell per key 0..q, against the row's strongest weight
    masked: str  # one MASKED cell per key after q


def margin(label_chars: int) -> int:
    """Columns before a row's first cell: its index and its label."""
    return 4 + label_chars + 1


def cell_width(t: int, label_chars: int, width: int) -> int:
    """Two characters per key when the grid fits ``width`` columns that way, else one."""
    return 2 if margin(label_chars) + 2 * t <= width else 1


def header(t: int, cell: int) -> str:
    """The key positions' last digits, one per column (after the margin)."""
    return "".join(f"{k % 10:<{cell}}" for k in range(t))


def grid_rows(g: np.ndarray, pieces: list[str], label_chars: int, cell: int) -> list[GridRow]:
    """g: (T, T), row q the weights of query position q over keys 0..q; pieces: the T
    context tokens. Each row is shaded against its own strongest weight."""
    t = g.shape[0]  # (T, T)
    rows = []
    for q in range(t):
        text = safe(pieces[q]) if q < len(pieces) else "?"
        text = text.replace("\n", "\\n").replace("\t", "\\t").replace(" ", "␣")
        label = set_cell_size(text, label_chars)  # in terminal cells: 中 takes two
        top = max(float(g[q, : q + 1].max()), 1e-9)  # (q + 1,) -> ()
        shades = "".join(shade(float(w) / top) * cell for w in g[q, : q + 1])
        rows.append(GridRow(f"{q:>3} ", f"{label} ", shades, MASKED.ljust(cell) * (t - q - 1)))
    return rows
