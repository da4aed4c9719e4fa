"""Next token: the candidates with bars, and how the sampling pipeline (repetition
penalty, temperature, top-k, top-p) turned the model's probabilities into the pick."""

from __future__ import annotations

from rich.cells import cell_len
from rich.console import Group
from rich.text import Text

from gpt2core.tokenizer import piece
from repl.terminal import safe
from repl.widgets.views.base import PanelView, TurnState

BAR = 16


def shown_piece(tokenizer, token_id: int, width: int = 18) -> str:
    return repr(safe(piece(tokenizer, token_id)))[:width]


def candidate_rows(candidates, tokenizer) -> Text:
    """One line per candidate: id, piece, probability, bar, the pick marked. Plain lines,
    not a rich Table: this redraws every frame."""
    rows = Text()
    shown = [shown_piece(tokenizer, c.token_id) for c in candidates]
    width = max((cell_len(x) for x in shown), default=0)
    for c, label in zip(candidates, shown, strict=True):
        bar = "█" * max(1, round(c.prob * BAR)) if c.prob > 0.005 else "·"
        rows.append(f"{c.token_id:>6} ", style="cyan")
        rows.append(label + " " * (1 + width - cell_len(label)))
        rows.append(f"{c.prob:6.1%} ")
        rows.append(bar, style="green")
        rows.append(" ◀\n" if c.chosen else "\n", style="bold yellow")
    rows.rstrip()
    return rows


class NextTokenView(PanelView):
    title = "Next token"
    probes = frozenset({"pipeline"})

    def render_state(self, s: TurnState):
        if s.event is None or s.tokenizer is None:
            return self.waiting("the candidates for each next token show here as a reply streams")
        parts = [
            Text(f"step {s.event.step}: the model's top candidates", style="bold"),
            candidate_rows(s.event.candidates, s.tokenizer),
        ]
        pipe = s.probe("pipeline")
        if pipe is not None:
            parts.append(Text("\nthe sampling pipeline (probability at each stage)", style="bold"))
            parts.append(pipeline_table(pipe, s.tokenizer))
        return Group(*parts)


def pipeline_table(pipe, tokenizer) -> Text:
    """Rows of candidates, a column per stage; the chosen token marked."""
    stages = list(pipe.stages)
    short = [name[:7] for name in stages]
    t = Text()
    t.append(" " * 20 + " ".join(f"{x:>7}" for x in short) + "\n", style="dim")
    for token_id, probs in pipe.rows:
        label = shown_piece(tokenizer, token_id, 12)
        t.append(f"{token_id:>6} ", style="cyan")
        t.append(label + " " * max(1, 13 - cell_len(label)))
        t.append(" ".join(f"{p:7.1%}" if p > 0 else "      ·" for p in probs))
        t.append(" ◀\n" if token_id == getattr(pipe, "chosen", None) else "\n", style="yellow")
    t.append(
        f"entropy {pipe.entropy_bits:.2f} bits, pick: rank {pipe.chosen_rank + 1}, "
        f"p = {pipe.chosen_prob:.1%}",
        style="dim",
    )
    return t
