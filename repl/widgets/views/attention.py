"""Attention: for the token being predicted, how much each head of a layer looks at each
earlier token (a heat strip over the pieces), the heads' average, and a T x T grid of the
chosen head when the context is short."""

from __future__ import annotations

from rich.text import Text

from gpt2core.tokenizer import piece
from repl.terminal import safe
from repl.widgets.views.base import PanelView, TurnState

SHADES = " ░▒▓█"


def shade(w: float) -> str:
    return SHADES[min(len(SHADES) - 1, int(w * (len(SHADES) - 1) + 0.5))]


class AttentionView(PanelView):
    title = "Attention"
    probes = frozenset({"attention"})
    layer = 0
    head = -1  # -1: the average over heads

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
        t.append(f"layer {self.layer + 1}/{n_layer}, {who} (F5/F6 layer, F7/F8 head)\n", "bold")
        # the weights were computed for the position that predicted the newest token: the
        # context is everything before that token (the last T of them, after any slide)
        ids = s.output_ids[:-1][-T:]
        order = sorted(range(T), key=lambda i: -row[i])[:8]
        for i in order:
            label = (
                safe(piece(s.tokenizer, ids[i])).replace("\n", "\\n")[:14] if i < len(ids) else "?"
            )
            bar = "█" * max(1, round(float(row[i]) * 20))
            t.append(f"{i:>4} {label!r:<16} {float(row[i]):6.1%} ")
            t.append(bar + "\n", style="magenta")
        t.append("\nover the context (oldest left):\n", style="dim")
        top = max(float(row.max()), 1e-9)  # shaded against the strongest: even flat rows show
        t.append("".join(shade(float(w) / top) for w in row[-48:]) + "\n", style="magenta")
        return t
