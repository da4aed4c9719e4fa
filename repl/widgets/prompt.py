"""The input line, with Up/Down through the history kept by the session."""

from __future__ import annotations

from textual.binding import Binding
from textual.widgets import Input


class PromptInput(Input):
    BINDINGS = [
        Binding("up", "history(-1)", "Previous input", show=False),
        Binding("down", "history(1)", "Next input", show=False),
    ]

    def __init__(self, history: list[str], **kwargs):
        super().__init__(**kwargs)
        self.history = history  # the session's list: shared, newest last
        self._pos: int | None = None

    def action_history(self, delta: int) -> None:
        if not self.history:
            return
        pos = len(self.history) if self._pos is None else self._pos
        pos = max(0, min(len(self.history), pos + delta))
        self._pos = pos
        self.value = self.history[pos] if pos < len(self.history) else ""
        self.cursor_position = len(self.value)

    def reset_history(self) -> None:
        self._pos = None
