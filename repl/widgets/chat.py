"""The chat pane: each prompt, then its completion streaming in, labelled with its model."""

from __future__ import annotations

from rich.cells import cell_len
from rich.text import Text
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Static

try:  # the line wrapping Textual's Static uses (Rich's, private): to find where it wraps
    from rich._wrap import divide_line as _wrap_offsets
except ImportError:  # another Rich: a paragraph with no newline stays in the tail
    _wrap_offsets = None

from repl.session import CompareResult, chosen_prob, printable, surprisal_band
from repl.terminal import clip_error

BAND_STYLES = ("", "yellow", "dark_orange", "bold red")  # see repl.session.SURPRISAL_BANDS


class NoticeLine(Static):
    DEFAULT_CSS = "NoticeLine { margin: 0 1; }"
    # A notice longer than this (`:tokens` of a pasted chapter, an error quoting a huge
    # value) shows its head: drawing tens of thousands of lines held the UI for seconds.
    MAX_LINES = 1000
    MAX_CHARS = 50_000

    def __init__(self, text: str, level: str = "info"):
        if level == "error":
            text = clip_error(text)
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


def _tabs_expanded(t: Text, lead: int = 0) -> Text:
    """``t`` with its tabs as spaces, each to the next multiple of 8 from its line's start;
    ``t`` starts ``lead`` cells into its first line (a block cut where a paragraph wraps).
    Left to Textual, tab stops came out differently from Rich's, and one streamed turn with
    a line of tabs was measured a row shorter than it was drawn (its last row cut off)."""
    if lead:
        t = Text(" " * lead).append_text(t)
    t.expand_tabs(8)
    return t[lead:] if lead else t


def _clean_row_start(shown: str, k: int, width: int) -> bool:
    """Whether the row that starts at ``shown[k]`` wraps the same when ``shown[k:]`` is
    drawn on its own: it starts a word, or it is in the middle of a word that is folded
    over more rows after it. Rich folds a long word with its trailing spaces, so the rest
    of a word that no longer needs folding would wrap differently."""
    if shown[k].isspace():
        return False
    if shown[k - 1].isspace():
        return True
    end = k
    while end < len(shown) and not shown[end].isspace():
        end += 1
    return cell_len(shown[k:end]) > width


def _rows(plain: str, width: int) -> int:
    """How many rows Textual wraps ``plain`` (no tabs) into at ``width`` cells; -1 when it
    cannot tell (no width yet). Counted, not estimated from the length: a row of wide
    characters or one ended early by a long word holds fewer characters, and a row the
    estimate missed was drawn cut off until some later frame asked for a layout."""
    if width <= 0 or _wrap_offsets is None:
        return -1
    return sum(len(_wrap_offsets(line, width)) + 1 for line in plain.split("\n"))


class TurnText(Static):
    """A part of a ChatTurn: its prompt, a settled block of its completion, or the tail."""


class ChatTurn(Vertical):
    """One prompt and its completion; ``append`` adds streamed text.

    The completion is drawn by a column of Statics: settled blocks, each ending where a
    newline was, and the live tail. A frame redraws the tail only; as one Static the turn
    re-wrapped its whole text every frame, so a 20,000-token reply ran slower the longer
    it got and key presses waited seconds near its end. A block ends at a newline, or,
    in a paragraph with none, where Textual starts a row; so the column shows exactly
    what one Static of ``full_text()`` shows (tests/repl/test_chat_turn.py)."""

    DEFAULT_CSS = "ChatTurn { height: auto; } TurnText { height: auto; }"
    PROMPT_LINES = 6  # a longer (pasted) prompt shows its head and its line count
    BLOCK_LINES = 24  # the tail is settled into a block once it holds this many newlines
    WRAP_CUT_CHARS = 3000  # or, a paragraph with no newline, once it is this long

    def __init__(self, model: str, prompt: str, state: str = "generating"):
        super().__init__()
        self.model, self.prompt = model, prompt
        self.completion = ""
        self.pieces: list[tuple[str, int]] = []  # (text, surprisal band) per generated token
        self.colour = False  # surprisal colouring on?
        self.state = state  # queued | generating | done | stopped | failed
        self.footer = ""
        self._prompt_text = self._shown_prompt(prompt)
        self._tail_rows = (0, -1)  # (width, rows) the tail was last drawn in
        # completion[:_settled] is drawn by _blocks; block k draws completion[start:stop]
        # from _spans[k] = (start, stop, lead, piece): lead is the tab column (mod 8) it
        # starts at, piece the (index, offset) of the piece holding start (F4 redraws every
        # block: walking the pieces from the first for each took blocks x tokens steps)
        self._settled = 0
        self._spans: list[tuple[int, int, int, tuple[int, int]]] = []
        self._lead = 0  # the tail's
        self._wrap_width: int | None = None  # the width blocks were cut at wraps for
        self._blocks: list[TurnText] = []
        self._piece = (0, 0)  # (index, start offset) of the piece holding _settled
        self._head = TurnText(_tabs_expanded(self._head_text()))
        self._tail = TurnText()
        self._queued_head = self.state == "queued"
        self._refresh_text()

    def compose(self):
        yield self._head
        yield self._tail

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
        self._redraw_all()

    def append_tokens(self, events) -> None:
        """Add streamed tokens (each with the probability the model gave it)."""
        self.pieces.extend((e.text, surprisal_band(chosen_prob(e))) for e in events)
        self.append("".join(e.text for e in events), record=False)

    def show_pieces(self, pieces: list[tuple[str, float]]) -> None:
        """Replace the completion with these (text, probability) pieces, one per token (step
        mode redraws the whole turn after each step, coloured like a streamed one)."""
        self.completion = "".join(text for text, _ in pieces)
        self.pieces = [(text, surprisal_band(p)) for text, p in pieces]
        self._unsettle()
        self._refresh_text()

    def set_colour(self, on: bool) -> None:
        if on != self.colour:
            self.colour = on
            self._redraw_all(layout=False)

    def append(self, text: str, record: bool = True) -> None:
        """Add streamed text. A layout pass is asked for only when the tail grew a row
        or a block was settled."""
        if record:
            self.pieces.append((text, 0))
        self.completion += text
        self._refresh_text(layout=self._settle())

    def finish(self, state: str, footer: str = "") -> None:
        self.state, self.footer = state, footer
        self._refresh_text()

    def full_text(self) -> Text:
        """Everything the turn shows, as one Text (what its column of Statics draws)."""
        t = self._head_text()
        if self.state != "queued":
            t.append("\n")
            t.append_text(self._body_text(0, len(self.completion)))
            t.append_text(self._end_text())
        return _tabs_expanded(t)

    # -- drawing -------------------------------------------------------------------

    def _head_text(self) -> Text:
        t = Text()
        t.append("you ", style="bold cyan")
        t.append_text(self._prompt_text)
        if self.state == "queued":
            t.append("\n")
            t.append("queued: runs after what is ahead of it", style="dim italic")
        return t

    def _label(self) -> Text:
        t = Text()
        t.append(f"{printable(self.model)} ", style="bold magenta")
        tail = self.prompt.rsplit("\n", 1)[-1][-200:]
        t.append(printable(tail), style="dim")
        return t

    def _body_text(self, start: int, stop: int, piece: tuple[int, int] | None = None) -> Text:
        """completion[start:stop] as shown (the model's label before offset 0); ``piece``
        is the (index, start offset) of the piece holding ``start``, if known."""
        t = self._label() if start == 0 else Text()
        if not self.colour:
            t.append(printable(self.completion[start:stop]))
            return t
        index, offset = piece or (self._piece if start == self._settled else (0, 0))
        while index < len(self.pieces) and offset < stop:
            text, band = self.pieces[index]
            lo, hi = max(start - offset, 0), min(stop - offset, len(text))
            if hi > lo:
                t.append(printable(text[lo:hi]), style=BAND_STYLES[band])
            index, offset = index + 1, offset + len(text)
        return t

    def _end_text(self) -> Text:
        t = Text()
        if self.state == "generating":
            t.append("▌", style="blink")
        elif self.state == "stopped":
            t.append("  [stopped]", style="bold yellow")
        elif self.state == "failed":
            t.append("  [failed]", style="bold red")
        if self.footer:
            t.append("\n" + printable(self.footer), style="dim italic")
        return t

    def _refresh_text(self, layout: bool = True) -> None:
        """Redraw the live tail, and the head if the queued line comes or goes (the
        settled blocks do not change)."""
        if self._queued_head != (self.state == "queued"):
            self._queued_head = self.state == "queued"
            self._head.update(_tabs_expanded(self._head_text()))
        shown = self.state != "queued"
        if self._tail.display != shown:
            self._tail.display = shown
        if not shown:
            return
        t = self._body_text(self._settled, len(self.completion))
        t.append_text(self._end_text())
        t = _tabs_expanded(t, self._lead)
        rows = (self.size.width, _rows(t.plain, self.size.width))  # a resize lays it out
        unknown = rows[1] < 0  # no width yet, or no wrapping to count with: lay it out
        self._tail.update(t, layout=layout or unknown or rows != self._tail_rows)
        self._tail_rows = rows

    def _redraw_all(self, layout: bool = True) -> None:
        for block, span in zip(self._blocks, self._spans, strict=True):
            block.update(self._block_text(*span), layout=layout)
        self._refresh_text(layout)

    def on_resize(self) -> None:
        if self._unsettle_if_resized():
            self._refresh_text()

    def _unsettle_if_resized(self) -> bool:
        """Blocks cut where a paragraph wrapped are cut for one width: at another they
        would break its lines early, so the turn is one tail again (drawn once, whole).
        Checked on Resize and before each cut: a resize sets the size at once, but its
        Resize event may come after tokens were drawn at the new width."""
        if self._wrap_width in (None, self.size.width):
            return False
        self._unsettle()
        return True

    def _settle(self) -> bool:
        """Move the tail's finished lines into a new block (only while mounted: a block is
        a mounted Static), once the tail holds BLOCK_LINES newlines, or, a paragraph with
        no newline, once it is WRAP_CUT_CHARS long (cut where a line wrapped)."""
        if not self.is_mounted:
            return False
        if self._unsettle_if_resized():
            return True
        width = self.size.width  # the tail's too
        tail = self.completion[self._settled :]
        if tail.count("\n") >= self.BLOCK_LINES:
            j = self._newline_cut(tail)
            if j is not None:  # the newline itself is the boundary between the Statics
                self._add_block(self._settled + j, self._settled + j + 1, 0)
                return True
        if len(tail) >= self.WRAP_CUT_CHARS and width > 0 and _wrap_offsets is not None:
            cut = self._wrap_cut(tail, width)
            if cut is not None:
                c, lead = cut
                self._wrap_width = width
                self._add_block(self._settled + c, self._settled + c, lead)
                return True
        return False

    @staticmethod
    def _newline_cut(tail: str) -> int | None:
        """The last newline with text after it and not after another newline: a Static
        does not draw a Text's trailing newline as an empty row, so no block ends in one
        (and the tail is never left empty)."""
        j = len(tail) - 1
        while True:
            j = tail.rfind("\n", 0, j)
            if j <= 0:
                return None
            if tail[j - 1] != "\n":
                return j

    def _wrap_cut(self, tail: str, width: int) -> tuple[int, int] | None:
        """Where in ``tail`` the last clean row (``_clean_row_start``) that Textual wraps its
        last paragraph into starts, at least three rows from its end (the rows before the
        last two do not change as text is added), with the tab column (mod 8) there; or
        None.

        Found with the wrapping Textual uses, on the paragraph as shown (escapes, expanded
        tabs, the model's label), then mapped back to an offset of ``tail``: cut there,
        the block and the tail draw the rows the whole paragraph drew."""
        para = tail.rfind("\n") + 1  # where the last paragraph starts in tail
        start = self._settled + para
        lead = self._lead if para == 0 else 0
        shown = self._shown_plain(start, len(self.completion), lead)
        starts = _wrap_offsets(shown, width)
        target = next((k for k in reversed(starts[:-2]) if _clean_row_start(shown, k, width)), 0)
        if not target:
            return None
        lo, hi = 0, len(tail) - para  # the shortest prefix shown as >= target characters
        while lo < hi:
            mid = (lo + hi) // 2
            if len(self._shown_plain(start, start + mid, lead)) < target:
                lo = mid + 1
            else:
                hi = mid
        shown = self._shown_plain(start, start + lo, lead)
        if lo == 0 or len(shown) != target:
            return None  # the row starts inside an escape such as \\x1b: no cut there
        return para + lo, (lead + cell_len(shown)) % 8

    def _shown_plain(self, start: int, stop: int, lead: int) -> str:
        text = Text(self._label().plain if start == 0 else "")
        text.append(printable(self.completion[start:stop]))
        return _tabs_expanded(text, lead).plain

    def _add_block(self, stop: int, next_start: int, next_lead: int) -> None:
        """completion[_settled:stop] becomes a block; the tail starts at ``next_start``,
        ``next_lead`` cells into its line."""
        self._spans.append((self._settled, stop, self._lead, self._piece))
        block = TurnText(self._block_text(*self._spans[-1]))
        self._advance_piece(next_start)
        self._settled, self._lead = next_start, next_lead
        self._blocks.append(block)
        self.mount(block, before=self._tail)

    def _block_text(self, start: int, stop: int, lead: int, piece: tuple[int, int]) -> Text:
        t = _tabs_expanded(self._body_text(start, stop, piece), lead)
        if stop < len(self.completion) and self.completion[stop] != "\n":
            # cut where a row wraps: Textual trims the end of a wrapped row, not of a last
            # one; a row of whitespace only stays (trimmed, the row would be gone)
            para = t.plain.rsplit("\n", 1)[-1]
            rows = _wrap_offsets(para, self._wrap_width or self.size.width)
            if para[rows[-1] if rows else 0 :].strip():
                t.rstrip()
        return t

    def _advance_piece(self, to: int) -> None:
        index, offset = self._piece
        while index < len(self.pieces) and offset + len(self.pieces[index][0]) <= to:
            offset += len(self.pieces[index][0])
            index += 1
        self._piece = (index, offset)

    def _unsettle(self) -> None:
        """Drop the blocks: the whole completion is the tail again."""
        for block in self._blocks:
            block.remove()
        self._blocks, self._spans = [], []
        self._settled, self._piece, self._wrap_width, self._lead = 0, (0, 0), None, 0


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


class QueuedLine(NoticeLine):
    """The place in the chat of a queued :compare, :step or held :again: what it shows
    when it runs goes here, above the prompts queued after it (``ChatLog.place``)."""

    def __init__(self, line: str):
        super().__init__(f"queued: {line}")
        self.line = line
        self.state = "queued"  # :clear keeps it, like a queued turn

    def ran(self) -> None:
        """It ran as something that shows no turn (a held :inspect): it says so."""
        self.state = "done"
        self.update(Text(printable(self._head(self.line)), style="dim"))


class ChatLog(VerticalScroll):
    def add(self, widget, after=None):
        """Mount ``widget`` at the end, or right after ``after`` if that is still shown."""
        if after is not None and after.parent is self:
            self.mount(widget, after=after)
        else:
            self.mount(widget)
        self.scroll_end(animate=False)
        return widget

    def place(self, placeholder, widget):
        """``widget`` where ``placeholder`` was (at the end if there is none)."""
        self.add(widget, after=placeholder)
        if placeholder is not None and placeholder.parent is self:
            placeholder.remove()
        return widget
