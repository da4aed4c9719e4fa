"""The input box: multi-line text, Enter sends, Up/Down walk the history.

It is a TextArea, so a pasted block of lines arrives whole (a bracketed paste) and is sent
as one multi-line prompt. A new line inside the box: Ctrl+J, Alt+Enter, or a line ending
in a backslash, as in line mode.

The box is emptied the moment a line is sent, before any handler runs: text typed
while the app is busy goes into the next line, never into the one just sent.

A terminal without bracketed paste types a pasted block as keystrokes, an Enter per
line: each line is then sent (and queued) as typed. Characters that come faster than a
person types (``BURST`` seconds apart) are inserted in one edit rather than one each, so
a large paste costs little more than reading it.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual import events
from textual.binding import Binding
from textual.message import Message
from textual.widgets import TextArea

BURST = 0.0005  # seconds between two keys of a paste; a person needs tens of milliseconds


class PromptInput(TextArea):
    DEFAULT_CSS = """
    PromptInput { height: auto; max-height: 8; }
    """
    BINDINGS = [
        Binding("ctrl+j,alt+enter,shift+enter", "newline", "New line", show=False),
    ]

    @dataclass
    class Submitted(Message):
        input: PromptInput
        value: str

    def __init__(self, history: list[str], placeholder: str = "", **kwargs):
        super().__init__(
            compact=True, soft_wrap=True, tab_behavior="focus", show_line_numbers=False, **kwargs
        )
        self.placeholder = placeholder
        self.past = history  # the session's list: shared, newest last
        self._pos: int | None = None
        self._last_key = 0.0
        self._burst: list[str] = []

    # -- the value, as the app sees it ----------------------------------------------------
    @property
    def value(self) -> str:
        return self.text

    @value.setter
    def value(self, text: str) -> None:
        self.load_text(text)
        self.move_cursor(self.document.end)

    @property
    def holds_text(self) -> bool:
        """Something is typed (or still arriving in a burst): in step mode the keys then
        edit it (a `:branch 2` being typed), rather than step."""
        return bool(self.text or self._burst)

    @property
    def cursor_position(self) -> int:
        return len(self.text)

    @cursor_position.setter
    def cursor_position(self, _: int) -> None:
        self.move_cursor(self.document.end)

    # -- keys -----------------------------------------------------------------------------
    def check_consume_key(self, key: str, character: str | None) -> bool:
        """In step mode the digits choose a candidate (the app's bindings), not text, unless
        a command is being typed."""
        stepping = getattr(self.app, "stepper", None) is not None and not self.holds_text
        if stepping and character and character.isdigit():
            return False
        return super().check_consume_key(key, character)

    async def _on_key(self, event: events.Key) -> None:
        gap = event.time - self._last_key
        self._last_key = event.time
        if event.key == "enter":
            event.stop()
            event.prevent_default()
            self._flush_burst()
            if self.text.endswith("\\"):  # a continuation, as in line mode
                row, col = self.document.end
                self.replace("\n", (row, col - 1), (row, col))
                return
            self.submit()  # every Enter sends its line, however fast they come
            return
        if gap < BURST and event.is_printable and event.character:
            # typed faster than a person can: a paste or a script. Gather the characters
            # and insert them in one edit (one redraw), not one edit per key.
            event.stop()
            event.prevent_default()
            if not self._burst:
                self.set_timer(0.02, self._end_burst)
            self._burst.append(event.character)
            return
        self._flush_burst()
        await super()._on_key(event)

    async def _on_paste(self, event: events.Paste) -> None:
        self._flush_burst()
        event.stop()  # handled here: a paste bubbling on would be inserted again
        event.prevent_default()
        await super()._on_paste(event)

    def _end_burst(self) -> None:
        self._flush_burst()

    def _flush_burst(self) -> None:
        if self._burst:
            text, self._burst = "".join(self._burst), []
            self.insert(text)

    def submit(self) -> None:
        """Send what is in the box and empty it at once."""
        self._flush_burst()
        value = self.text
        self.load_text("")
        self._pos = None
        self.post_message(self.Submitted(self, value))

    def action_newline(self) -> None:
        self._flush_burst()
        self.insert("\n")

    def action_cursor_up(self, select: bool = False) -> None:
        if not select and self.cursor_location[0] == 0:
            self.action_history(-1)
        else:
            super().action_cursor_up(select)

    def action_cursor_down(self, select: bool = False) -> None:
        if not select and self.cursor_location[0] == self.document.line_count - 1:
            self.action_history(1)
        else:
            super().action_cursor_down(select)

    def action_history(self, delta: int) -> None:
        if not self.past:
            return
        pos = len(self.past) if self._pos is None else self._pos
        pos = max(0, min(len(self.past), pos + delta))
        self._pos = pos
        self.value = self.past[pos] if pos < len(self.past) else ""

    def reset_history(self) -> None:
        self._pos = None
