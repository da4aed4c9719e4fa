"""The chat pane: each prompt, then its completion streaming in, labelled with its model."""

from __future__ import annotations

from rich.text import Text
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Static

from repl.session import CompareResult, chosen_prob, printable, surprisal_band

BAND_STYLES = ("", "yellow", "dark_orange", "bold red")  # see repl.session.SURPRISAL_BANDS


class NoticeLine(Static):
    DEFAULT_CSS = "NoticeLine { margin: 0 1; }"
    # A notice longer than this (`:tokens` of a pasted chapter, an error quoting a huge
    # value) shows its head: drawing tens of thousands of lines held the UI for seconds.
    MAX_LINES = 1000
    MAX_CHARS = 50_000

    def __init__(self, text: str, level: str = "info"):
        style = {"error": "bold red", "info": "dim"}.get(level, "")
        super().__init__(Text(printable(self._head(text)), style=style))
        self.add_class(level)

    @classmethod
    def _head(cls, text: str) -> str:
        lines = text.split("\n", cls.MAX_LINES)
        if len(lines) > cls.MAX_LINES:
            more = text.count("\n") + 1 - cls.MAX_LINES
            text = "\n".join(lines[: cls.MAX_LINES]) + f"\n... ({more} more lines not shown)"
        if len(text) > cls.MAX_CHARS:
            more = len(text) - cls.MAX_CHARS
            text = text[: cls.MAX_CHARS] + f"... ({more} more characters not shown)"
        return text


class ChatTurn(Static):
    """One prompt and its completion; ``append`` adds streamed text."""

    PROMPT_LINES = 6  # a longer (pasted) prompt shows its head and its line count

    def __init__(self, model: str, prompt: str, state: str = "generating"):
        super().__init__()
        self.model, self.prompt = model, prompt
        self.completion = ""
        self.pieces: list[tuple[str, int]] = []  # (text, surprisal band) per generated token
        self.colour = False  # surprisal colouring on?
        self.state = state  # queued | generating | done | stopped | failed
        self.footer = ""
        self._prompt_text = self._shown_prompt(prompt)
        self._rows = -1
        self._refresh_text()

    @classmethod
    def _shown_prompt(cls, prompt: str) -> Text:
        lines = prompt.split("\n")
        t = Text()
        if len(lines) > cls.PROMPT_LINES:
            t.append(printable("\n".join(lines[:3])[:2000]) + "\n")
            t.append(f"... ({len(lines)} lines, {len(prompt)} characters)", style="italic")
        else:
            t.append(printable(prompt[:4000]))
            if len(prompt) > 4000:
                t.append(f"... ({len(prompt)} characters)", style="italic")
        return t

    def start(self, model: str) -> None:
        self.model, self.state = model, "generating"
        self._refresh_text()

    def append_tokens(self, events) -> None:
        """Add streamed tokens (each with the probability the model gave it)."""
        self.pieces.extend((e.text, surprisal_band(chosen_prob(e))) for e in events)
        self.append("".join(e.text for e in events), record=False)

    def show_pieces(self, pieces: list[tuple[str, float]]) -> None:
        """Replace the completion with these (text, probability) pieces, one per token (step
        mode redraws the whole turn after each step, coloured like a streamed one)."""
        self.completion = "".join(text for text, _ in pieces)
        self.pieces = [(text, surprisal_band(p)) for text, p in pieces]
        self._refresh_text()

    def set_colour(self, on: bool) -> None:
        if on != self.colour:
            self.colour = on
            self._refresh_text(layout=False)

    def append(self, text: str, record: bool = True) -> None:
        """Add streamed text. A layout pass (the costly part of a frame) is asked for only
        when the turn may have grown a line: a newline, or about a line's worth of text."""
        if record:
            self.pieces.append((text, 0))
        self.completion += text
        width = max(self.size.width, 20)
        rows = self.completion.count("\n") + len(self.completion) // width
        self._refresh_text(layout=rows != self._rows)
        self._rows = rows

    def finish(self, state: str, footer: str = "") -> None:
        self.state, self.footer = state, footer
        self._refresh_text()

    def _refresh_text(self, layout: bool = True) -> None:
        t = Text()
        t.append("you ", style="bold cyan")
        t.append_text(self._prompt_text)
        t.append("\n")
        if self.state == "queued":
            t.append("queued: runs after what is ahead of it", style="dim italic")
            self.update(t)
            return
        t.append(f"{printable(self.model)} ", style="bold magenta")
        tail = self.prompt.rsplit("\n", 1)[-1][-200:]
        t.append(printable(tail), style="dim")
        if self.colour:
            for text, band in self.pieces:
                t.append(printable(text), style=BAND_STYLES[band])
        else:
            t.append(printable(self.completion))
        if self.state == "generating":
            t.append("▌", style="blink")
        elif self.state == "stopped":
            t.append("  [stopped]", style="bold yellow")
        elif self.state == "failed":
            t.append("  [failed]", style="bold red")
        if self.footer:
            t.append("\n" + printable(self.footer), style="dim italic")
        self.update(t, layout=layout)


class CompareView(Horizontal):
    """Two completions side by side, the first differing token marked."""

    def __init__(self, result: CompareResult, tokenizers):
        super().__init__()
        self.result, self.tokenizers = result, tokenizers

    def compose(self):
        r = self.result
        for summary, tok in ((r.left, self.tokenizers[0]), (r.right, self.tokenizers[1])):
            t = Text()
            t.append(f"{printable(summary.model)}\n", style="bold magenta")
            new = summary.output_ids[len(summary.input_ids) :]
            for i, token in enumerate(new):
                piece = tok.decode([token]) if tok else str(token)
                style = "reverse bold red" if i == r.first_difference else ""
                t.append(printable(piece), style=style)
            yield Static(t, classes="compare-column")
        note = (
            "identical token for token"
            if r.first_difference is None
            else f"first difference at new token {r.first_difference} (highlighted)"
        )
        self.border_title = f":compare {printable(r.prompt)[:40]}: {note}"


class ChatLog(VerticalScroll):
    def add(self, widget):
        self.mount(widget)
        self.scroll_end(animate=False)
        return widget
