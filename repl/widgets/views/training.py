"""Training: a live plot of the train and val loss against iterations, the learning rate,
tokens/s, the time left, and the latest sample (the moment the noise turns into text)."""

from __future__ import annotations

from dataclasses import dataclass, field

from rich.text import Text

from repl.terminal import safe
from repl.widgets.views.base import PanelView, TurnState


@dataclass
class TrainLog:
    """What the Training view shows; the app appends as the run's events arrive."""

    out: str = ""
    max_iters: int = 0
    n_params: int = 0
    steps: list[tuple[int, float]] = field(default_factory=list)  # (iter, train loss)
    evals: list[tuple[int, float, float]] = field(default_factory=list)  # (iter, train, val)
    lr: float = 0.0
    tokens_per_s: float = 0.0
    eta_s: float | None = None
    sample: str = ""
    state: str = "starting"  # starting | compiling | training | stopping | done | failed


def plot(series: list[tuple[list[tuple[int, float]], str, str]], x_max: int, width: int = 40,
         height: int = 10) -> Text:  # fmt: skip
    """A text chart of several (points, glyph, style) series over iterations 0..x_max."""
    ys = [y for points, _, _ in series for _, y in points]
    if not ys:
        return Text("(no points yet)", style="dim")
    lo, hi = min(ys), max(ys)
    hi = hi if hi > lo else lo + 1.0
    grid = [[(" ", "")] * width for _ in range(height)]
    for points, glyph, style in series:
        for x, y in points:
            col = min(width - 1, int(x / max(x_max, 1) * (width - 1)))
            row = min(height - 1, int((hi - y) / (hi - lo) * (height - 1)))
            grid[row][col] = (glyph, style)
    t = Text()
    for r, row in enumerate(grid):
        label = f"{hi:6.2f} " if r == 0 else f"{lo:6.2f} " if r == height - 1 else " " * 7
        t.append(label + "│", style="dim")
        for glyph, style in row:
            t.append(glyph, style=style)
        t.append("\n")
    t.append(" " * 7 + "└" + "─" * width + "\n", style="dim")
    t.append(" " * 8 + f"0{' ' * (width - len(str(x_max)) - 1)}{x_max}\n", style="dim")
    return t


class TrainingView(PanelView):
    title = "Training"

    def render_state(self, s: TurnState):
        log = s.train
        if log is None:
            return self.waiting(
                "train a model with :train FILE (or :train shakespeare): the loss curves, "
                "the learning rate and samples show here as it learns"
            )
        t = Text()
        last = log.steps[-1][0] if log.steps else 0
        t.append(f"{log.state}: iter {last}/{log.max_iters}", style="bold")
        t.append(f"  {log.n_params / 1e6:.2f}M params\n")
        if log.steps:
            eta = f", {log.eta_s:.0f}s left" if log.eta_s is not None else ""
            t.append(f"loss {log.steps[-1][1]:.3f}  lr {log.lr:.1e}  "
                     f"{log.tokens_per_s:,.0f} tok/s{eta}\n")  # fmt: skip
        if log.evals:
            i, tr, va = log.evals[-1]
            t.append(f"eval at {i}: train {tr:.3f}, val {va:.3f}\n", style="green")
        t.append("\n")
        t.append_text(
            plot(
                [
                    (log.steps, "·", "cyan"),
                    ([(i, tr) for i, tr, _ in log.evals], "o", "bold cyan"),
                    ([(i, va) for i, _, va in log.evals], "●", "bold green"),
                ],
                log.max_iters,
                width=max(20, min(60, (self.size.width or 50) - 10)),
            )
        )
        t.append("· train loss   ● val loss\n", style="dim")
        if log.sample:
            t.append("\nlatest sample:\n", style="bold")
            t.append(safe(log.sample[-300:]) + "\n")
        return t
