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


SHORT = {
    "logits": "model",
    "repetition_penalty": "rep",
    "temperature": "temp",
    "top_k": "top-k",
    "top_p": "top-p",
    "greedy": "pick",
}


def pipeline_table(pipe, tokenizer) -> Text:
    """Rows of candidates, a column per stage that changed something (the model's own
    probabilities first, the distribution the pick is drawn from last); the pick marked."""
    cols = [j for j, (name, on) in enumerate(zip(pipe.stages, pipe.active, strict=True))
            if on or j == 0 or name == "greedy" or j == len(pipe.stages) - 1]  # fmt: skip
    t = Text()
    head = "".join(f"{SHORT.get(pipe.stages[j], pipe.stages[j])[:6]:>7}" for j in cols)
    t.append(" " * 16 + head + "\n", style="dim")
    for token_id, probs in pipe.rows:
        label = shown_piece(tokenizer, token_id, 8)
        t.append(f"{token_id:>6} ", style="cyan")
        t.append(label + " " * max(1, 9 - cell_len(label)))
        t.append("".join(f"{probs[j]:7.1%}" if probs[j] > 0 else "      ·" for j in cols))
        t.append(" ◀\n" if token_id == pipe.token else "\n", style="yellow")
    t.append(
        f"entropy {pipe.entropy_bits:.2f} bits; the pick was the model's #{pipe.chosen_rank}, "
        f"drawn with p = {pipe.chosen_prob:.1%}",
        style="dim",
    )
    return t
