"""The status bar: model, key settings, context used/max, last tokens/s, state."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from repl.terminal import safe


class StatusBar(Static):
    def show(
        self,
        *,
        model: str,
        state: str,
        settings,
        context: tuple[int, int] | None,
        rate: float | None,
        colour: bool = False,
    ) -> None:
        t = Text()
        t.append(f" {state} ", style="reverse bold" if state != "ready" else "reverse")
        t.append(f"  {safe(model)}", style="bold")
        s = settings
        mode = "greedy" if s.is_greedy else f"T={s.temperature:g} top_k={s.top_k} top_p={s.top_p:g}"
        t.append(f"  {mode} max_new={s.max_new_tokens} seed={s.seed}")
        if context:
            t.append(f"  ctx {context[0]}/{context[1]}")
        if rate:
            t.append(f"  {rate:.1f} tok/s")
        if colour:  # the legend of the surprisal colouring
            from repl.session import SURPRISAL_BANDS
            from repl.widgets.chat import BAND_STYLES

            t.append("  p: ")
            for (_, label), style in zip(SURPRISAL_BANDS, BAND_STYLES, strict=True):
                t.append(label + " ", style=style or "bold")
        self.update(t, layout=False)  # one line, always: no layout pass needed
