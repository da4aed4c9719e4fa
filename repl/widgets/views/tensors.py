"""Tensors: the prompt's input_ids and the output as TensorFlow prints them, the
next-token candidates, and the last turn's figures."""

from __future__ import annotations

from rich.console import Group
from rich.text import Text

from repl.session import stats_line, tensor_text
from repl.widgets.views.base import PanelView, TurnState
from repl.widgets.views.next_token import candidate_rows


class TensorsView(PanelView):
    title = "Tensors"

    def render_state(self, s: TurnState):
        parts = [
            Text("input_ids", style="bold"),
            Text(tensor_text(s.input_ids) if s.input_ids else "(no prompt yet)"),
            Text("\noutput", style="bold"),
            Text(tensor_text(s.output_ids) if s.output_ids else ""),
        ]
        if s.event is not None and s.tokenizer is not None:
            parts.append(Text(f"\nnext-token candidates, step {s.event.step}", style="bold"))
            parts.append(candidate_rows(s.event.candidates, s.tokenizer))
        if s.summary is not None:
            parts.append(Text("\nlast turn", style="bold"))
            parts.append(Text(stats_line(s.summary).replace(" | ", "\n")))
        return Group(*parts)
