"""Lens: the logit lens. The residual stream after each block, read through the final
LayerNorm and the tied head: what the model would say if it stopped at that layer. The
layer where the final pick first becomes the top token is marked."""

from __future__ import annotations

from rich.text import Text

from gpt2core.tokenizer import piece
from repl.terminal import inline
from repl.widgets.views.base import PanelView, TurnState


class LensView(PanelView):
    title = "Lens"
    probes = frozenset({"lens"})

    def render_state(self, s: TurnState):
        lens = s.probe("lens")  # per layer: [(token_id, prob), ...] most likely first
        if lens is None or s.tokenizer is None:
            return self.waiting("what each layer would predict shows here while a reply streams")
        final = lens[-1][0][0]
        first = next((i for i, row in enumerate(lens) if row and row[0][0] == final), None)
        t = Text()
        t.append("layer  top tokens after that block\n", style="bold")
        for i, row in enumerate(lens):
            mark = "◀ first" if i == first else ""
            t.append(f"{i + 1:>5}  ", style="cyan")
            for token_id, p in row[:3]:
                label = inline(piece(s.tokenizer, token_id))[:10]
                style = "bold green" if token_id == final else ""
                t.append(f"{label!r} {p:.0%}  ", style=style)
            t.append(mark + "\n", style="yellow")
        return t
