"""Attention: for the token being predicted, how much each head of a layer looks at each
earlier token (a heat strip over the pieces), the heads' average, and a T x T grid of the
chosen head when the context is short."""

from __future__ import annotations

import numpy as np
from rich.text import Text

from gpt2core.tokenizer import piece
from repl.attention_grid import INTRO, cell_width, grid_rows, header, margin, shade
from repl.terminal import inline
from repl.widgets.views.base import PanelView, TurnState


class AttentionView(PanelView):
    title = "Attention"
    # "attention_grid" comes only while the context is short (gpt2core's GRID_MAX)
    probes = frozenset({"attention", "attention_grid"})
    layer = 0
    head = -1  # -1: the average over heads
    LABEL = 6  # characters of each piece in the grid's row labels
    GRID_INTRO = INTRO

    def render_state(self, s: TurnState):
        att = s.probe("attention")  # (n_layer, n_head, T): this step's query row
        if att is None or s.tokenizer is None:
            return self.waiting(
                "which earlier tokens each layer looks at shows here while a reply streams"
            )
        n_layer, n_head, T = att.shape
        self.layer = min(self.layer, n_layer - 1)
        self.head = min(self.head, n_head - 1)
        row = att[self.layer].mean(axis=0) if self.head < 0 else att[self.layer, self.head]
        who = "average of heads" if self.head < 0 else f"head {self.head}"
        t = Text()
        width = self.content_size.width or 32
        t.append(f"layer {self.layer + 1}/{n_layer}, {who}", "bold")
        hint = " (F5/F6 layer, F7/F8 head)"  # the footer shows the keys too: narrow drops it
        t.append((hint if width >= 48 else "") + "\n", "dim")
        # the weights were computed for the position that predicted the newest token: the
        # context is everything before that token (the last T of them, after any slide)
        ids = s.output_ids[:-1][-T:]
        grid = s.probe("attention_grid")  # (n_layer, n_head, T, T), short contexts only
        if grid is not None and grid.shape[-1] != T:
            grid = None
        if grid is not None:
            g = grid[self.layer].mean(axis=0) if self.head < 0 else grid[self.layer, self.head]
            n_reply = max(0, len(s.output_ids) - 1 - len(s.input_ids))
            self._grid(t, g, [piece(s.tokenizer, i) for i in ids], n_reply, width)
            top_n = 4  # the grid's last row is the strip: a shorter list keeps it on screen
        else:
            top_n = 8
        order = sorted(range(T), key=lambda i: -row[i])[:top_n]
        if grid is not None:
            t.append(f"row {T - 1} looks most at:\n", style="dim")
        label_w = 16 if width >= 48 else 8  # a narrow panel keeps each entry on one line
        bar_w = max(1, min(20, width - (4 + 1 + label_w + 1 + 6 + 1)))
        for i in order:
            label = inline(piece(s.tokenizer, ids[i])) if i < len(ids) else "?"
            label = repr(label[: label_w - 2])
            bar = "█" * max(1, round(float(row[i]) * bar_w))
            t.append(f"{i:>4} {label:<{label_w}} {float(row[i]):6.1%} ")
            t.append(bar + "\n", style="magenta")
        if grid is None:
            t.append("\nover the context (oldest left):\n", style="dim")
            top = max(float(row.max()), 1e-9)  # shaded against the strongest: flat rows show
            t.append("".join(shade(float(w) / top) for w in row[-48:]) + "\n", style="magenta")
        return t

    def _grid(self, t: Text, g: np.ndarray, pieces: list[str], n_reply: int, width: int):
        """g: (T, T), row q the weights of query position q over keys 0..q; pieces: the T
        context tokens; the last n_reply of them the model wrote (shown bold)."""
        T = g.shape[0]
        cell = cell_width(T, self.LABEL, width)
        t.append(INTRO + "\n", style="dim")
        t.append(" " * margin(self.LABEL))
        t.append(header(T, cell) + "\n", style="dim")
        for q, row in enumerate(grid_rows(g, pieces, self.LABEL, cell)):
            reply = q >= T - n_reply  # a token the model wrote in this reply
            t.append(row.index, style="cyan")
            t.append(row.label, style="bold" if reply else "")
            t.append(row.shades, style="magenta")
            t.append(row.masked + "\n", style="dim")
