"""The side panel: what the model saw and produced, step by step."""

from __future__ import annotations

from rich.cells import cell_len
from rich.console import Group
from rich.text import Text
from textual.widgets import Static

from gpt2core.generate import GenerationSummary, TokenEvent
from gpt2core.tokenizer import piece
from repl.session import printable, stats_line, tensor_text


class SidePanel(Static):
    BAR = 16

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.border_title = "tensors"
        self.input_ids: list[int] = []
        self.output_ids: list[int] = []
        self.event: TokenEvent | None = None
        self.summary: GenerationSummary | None = None
        self.tokenizer = None
        self.renders = 0  # token batches rendered (tests check it is one per frame)
        self._stale = False
        self._lines = 0
        self.render_panel()

    def start(self, input_ids: list[int], tokenizer) -> None:
        self.input_ids, self.output_ids = list(input_ids), list(input_ids)
        self.event, self.summary, self.tokenizer = None, None, tokenizer
        self.render_panel()

    def tokens(self, events: list[TokenEvent]) -> None:
        """Tokens that arrived since the last frame: one render for all of them."""
        if not events:
            return
        self.output_ids.extend(e.token_id for e in events)
        self.event = events[-1]
        self.renders += 1
        if self.display:  # a hidden panel keeps its state but does no rendering work
            # the panel's size is fixed: lay out again only when the output tensor's text
            # may have grown a line (about 8 ids a line at this width)
            lines = len(self.output_ids) // 8
            self.render_panel(layout=lines != self._lines)
            self._lines = lines
        else:
            self._stale = True

    def on_show(self) -> None:
        if self._stale:
            self.render_panel()

    def finish(self, summary: GenerationSummary) -> None:
        self.summary = summary
        self.input_ids, self.output_ids = summary.input_ids, summary.output_ids
        self.render_panel()

    def render_panel(self, layout: bool = True) -> None:
        self._stale = False
        parts = [
            Text("input_ids", style="bold"),
            Text(tensor_text(self.input_ids) if self.input_ids else "(no prompt yet)"),
            Text("\noutput", style="bold"),
            Text(tensor_text(self.output_ids) if self.output_ids else ""),
        ]
        if self.event is not None and self.tokenizer is not None:
            parts.append(Text(f"\nnext-token candidates, step {self.event.step}", style="bold"))
            rows = Text()  # plain lines, not a rich Table: this redraws every frame
            cands = self.event.candidates
            shown = [repr(printable(piece(self.tokenizer, c.token_id)))[:18] for c in cands]
            width = max(cell_len(x) for x in shown)
            for c, label in zip(cands, shown, strict=True):
                bar = "█" * max(1, round(c.prob * self.BAR)) if c.prob > 0.005 else "·"
                rows.append(f"{c.token_id:>6} ", style="cyan")
                rows.append(label + " " * (1 + width - cell_len(label)))
                rows.append(f"{c.prob:6.1%} ")
                rows.append(bar, style="green")
                rows.append(" ◀\n" if c.chosen else "\n", style="bold yellow")
            rows.rstrip()
            parts.append(rows)
        if self.summary is not None:
            parts.append(Text("\nlast turn", style="bold"))
            parts.append(Text(stats_line(self.summary).replace(" | ", "\n")))
        self.update(Group(*parts), layout=layout)
