"""Tokens: the prompt and the output as coloured token pieces with their ids."""

from __future__ import annotations

from rich.text import Text

from gpt2core.tokenizer import piece
from repl.terminal import inline
from repl.widgets.views.base import PanelView, TurnState

COLOURS = ("on #3b4261", "on #2d4f3c", "on #5a3d2b", "on #4b3560")


class TokensView(PanelView):
    title = "Tokens"
    LIMIT = 400  # the newest tokens; a long turn shows its tail

    def render_state(self, s: TurnState):
        if not s.output_ids or s.tokenizer is None:
            return self.waiting("each token of the prompt and the reply shows here, with its id")
        t = Text()
        ids = s.output_ids
        start = max(0, len(ids) - self.LIMIT)
        if start:
            t.append(f"... {start} earlier tokens\n", style="dim")
        n_prompt = len(s.input_ids)
        for i in range(start, len(ids)):
            if i == n_prompt:
                t.append("\n── reply ──\n", style="dim")
            text = inline(piece(s.tokenizer, ids[i]))
            style = COLOURS[i % len(COLOURS)] + (" bold" if i >= n_prompt else "")
            t.append(text or "∅", style=style)
            t.append(f"{ids[i]}", style="dim cyan")
            t.append(" ")
        return t
