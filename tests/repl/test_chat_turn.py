"""ChatTurn draws a streaming completion as settled blocks plus a live tail: it must show
exactly what one Static of the whole text shows (cell by cell, styles included), and a
frame must redraw only the tail however long the reply grows."""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest
from rich.style import Style
from textual.app import App
from textual.containers import VerticalScroll
from textual.geometry import Region
from textual.widgets import Static

from repl.widgets.chat import ChatTurn, TurnText

WIDTH = 50
PIECES = [
    "the", " cat", " sat", ".", "\n", "\n\n", " ", "\t", "é", "漢字", "🙂", "\x1b[2J", "\u202e",
    "\r", "x" * 70, " a very long line that wraps over the width of the turn more than once",
    ".\nThe", "\n ", "  ",
]  # fmt: skip


class Harness(App):
    """One ChatTurn in a scrolling column, built inside the app as the app builds it. The
    scrollbar's gutter is kept, so mounting the reference Static beside the turn (which
    makes the column scroll) does not narrow the turn in the middle of a comparison."""

    CSS = "VerticalScroll { scrollbar-gutter: stable; }"

    def __init__(self, *args):
        super().__init__()
        self.args = args

    def compose(self):
        self.turn = ChatTurn(*self.args)
        with VerticalScroll():
            yield self.turn


def cells(widgets) -> list[list[tuple[str, object]]]:
    """Each row the widgets draw, one after the other, as cells (see _look)."""
    rows = []
    for w in widgets:
        if not w.display:
            continue
        for strip in w.render_lines(Region(0, 0, w.size.width, w.size.height)):
            rows.append([_look(ch, seg.style) for seg in strip for ch in seg.text])
    return rows


def _look(ch: str, style):
    """A cell as the eye sees it: a space's foreground colour and weight do not show (a
    row's end spaces are text in one Static and padding in the other), and Textual's
    meta (the cell's offset in its widget) is not drawn."""
    if style is None:
        return ch, None
    if ch == " ":
        return ch, Style(bgcolor=style.bgcolor, reverse=style.reverse, underline=style.underline)
    return ch, style.clear_meta_and_links()


async def shown_equals_full_text(app, pilot) -> None:
    turn = app.turn
    await pilot.pause()
    parts = list(turn.query(TurnText))
    assert parts[0] is turn._head and parts[-1] is turn._tail  # blocks between, in order
    reference = Static(turn.full_text())
    await app.query_one(VerticalScroll).mount(reference)
    await pilot.pause()
    assert reference.size.width == turn.size.width
    assert cells(parts) == cells([reference])
    await reference.remove()


def event(text: str, p: float):
    return SimpleNamespace(text=text, token_prob=p, top=[])


@pytest.mark.parametrize(
    "seed, kind", [(0, "lines"), (1, "lines"), (2, "paragraph"), (3, "paragraph"), (4, "word")]
)
async def test_blocks_and_tail_show_what_one_static_shows(seed, kind, monkeypatch):
    """Random streams of words, wide characters, tabs and control bytes: with newlines, as
    one paragraph (cut where it wraps), or as one word with no space (cut where it folds,
    as a random model's reply often is), colour switched on and off mid-stream, then
    finished with a footer. Small blocks, so that a stream makes many."""
    monkeypatch.setattr("repl.widgets.chat.chosen_prob", lambda e: e.token_prob)
    monkeypatch.setattr(ChatTurn, "BLOCK_LINES", 6)
    monkeypatch.setattr(ChatTurn, "WRAP_CUT_CHARS", 300)
    newlines = kind == "lines"
    pieces = {
        "lines": PIECES,
        "paragraph": [p for p in PIECES if "\n" not in p],
        "word": ["ried", "Remote", "漢字", "é", "\x1b", "x" * 70],
    }[kind]
    rng = random.Random(seed)
    app = Harness("scratch:\x1b]0;x\x07", "a prompt\nwith two lines")
    async with app.run_test(size=(WIDTH, 40)) as pilot:
        await pilot.pause()
        turn = app.turn
        for n in range(400):
            if rng.random() < 0.5:
                turn.append_tokens([event(rng.choice(pieces), rng.random()) for _ in range(3)])
            else:
                turn.append(rng.choice(pieces))
            if n % 97 == 0:
                turn.set_colour(not turn.colour)
            if n % 131 == 0:
                await shown_equals_full_text(app, pilot)
        assert len(turn._blocks) >= 5  # the stream settled into blocks
        await shown_equals_full_text(app, pilot)
        turn.set_colour(not turn.colour)  # every block redrawn
        await shown_equals_full_text(app, pilot)
        turn.finish("stopped", "12 tokens | 3.0 tok/s")
        await shown_equals_full_text(app, pilot)
        assert newlines or turn._wrap_width is not None  # one paragraph: cut at wraps
        await pilot.resize_terminal(WIDTH + 17, 40)  # blocks cut at wraps do not fit it
        await shown_equals_full_text(app, pilot)


async def test_queued_then_failed_and_step_redraws():
    app = Harness("?", "later", "queued")
    async with app.run_test(size=(WIDTH, 40)) as pilot:
        turn = app.turn
        await shown_equals_full_text(app, pilot)
        assert "queued: runs after" in turn.full_text().plain
        turn.start("scratch")
        turn.append("line\n" * 60 + "end")
        await shown_equals_full_text(app, pilot)
        assert turn._blocks
        # step mode replaces the whole completion: the blocks go, the text is the new one
        turn.show_pieces([("one", 0.9), ("\n", 0.5), ("two", 0.01)])
        await shown_equals_full_text(app, pilot)
        assert not turn._blocks and turn.completion == "one\ntwo"
        turn.finish("failed")
        await shown_equals_full_text(app, pilot)
    app = Harness("?", "never ran", "queued")
    async with app.run_test(size=(WIDTH, 40)) as pilot:
        queued = app.turn
        queued.finish("failed")  # cancelled while queued
        await shown_equals_full_text(app, pilot)
        assert "queued" not in queued.full_text().plain


@pytest.mark.parametrize("newline", ["\n", " "])
async def test_a_frame_redraws_only_the_tail(monkeypatch, newline):
    """5,000 lines streamed a few words at a time, or one paragraph as long: no update
    draws more than the tail, while one Static redrew the whole 200,000-character reply
    every frame."""
    drawn = []
    real_update = TurnText.update

    def update(self, content="", *, layout=True):
        drawn.append(len(content.plain) if hasattr(content, "plain") else len(str(content)))
        return real_update(self, content, layout=layout)

    monkeypatch.setattr(TurnText, "update", update)
    app = Harness("scratch", "go")
    async with app.run_test(size=(WIDTH, 40)) as pilot:
        await pilot.pause()
        turn = app.turn
        for n in range(5000):
            turn.append(f"line {n:5d} of the reply, ")
            turn.append("forty characters long" + newline)
            if n % 500 == 0:
                await pilot.pause()
        await pilot.pause()
        assert len(turn.completion) > 200_000
        bound = max((ChatTurn.BLOCK_LINES + 2) * 50, ChatTurn.WRAP_CUT_CHARS + 2 * 50) + 100
        assert max(drawn) <= bound, (max(drawn), bound)
        assert len(turn._blocks) >= len(turn.completion) // (bound + 100)


async def test_a_tail_grown_back_to_its_row_count_after_a_resize_is_laid_out():
    """Widened, the tail wraps into a row fewer; a few more words bring it back to the
    row count it had at the old width. That count was compared with the one remembered
    from the old width, no layout was asked for, and the tail was drawn a row short."""
    app = Harness("scratch", "go")
    async with app.run_test(size=(30, 40)) as pilot:
        await pilot.pause()
        turn = app.turn
        turn.append("word " * 40)
        await pilot.pause()
        rows = turn._tail.size.height
        await pilot.resize_terminal(32, 40)
        await pilot.pause()
        assert turn._tail.size.height == rows - 1
        turn.append("word " * 6)
        await pilot.pause()
        assert turn._tail.size.height == rows  # was rows - 1: the cursor's row not drawn


async def test_text_streamed_before_the_turn_handles_a_resize_is_cut_for_the_new_width(
    monkeypatch,
):
    """A resize sets the turn's size at once but its Resize event waits in the turn's
    queue, while the app may draw tokens first. Blocks cut then, at the new width, were
    kept beside those cut at the old one, and the reply broke its rows early for good."""
    monkeypatch.setattr(ChatTurn, "WRAP_CUT_CHARS", 300)
    app = Harness("scratch", "go")
    async with app.run_test(size=(WIDTH, 40)) as pilot:
        await pilot.pause()
        turn = app.turn
        for i in range(100):
            turn.append(f"word{i} ")
        await pilot.pause()
        assert turn._wrap_width is not None
        on_resize = ChatTurn.on_resize
        monkeypatch.setattr(ChatTurn, "on_resize", lambda self: None)  # not handled yet
        await pilot.resize_terminal(WIDTH + 17, 40)
        for i in range(100, 160):
            turn.append(f"word{i} ")
        on_resize(turn)  # handled now
        await shown_equals_full_text(app, pilot)


async def test_colour_toggle_walks_each_token_once(monkeypatch):
    """F4 redraws every block in colour: each walked the tokens from the first, so a long
    reply's toggle took blocks x tokens steps (2,000 lines: ~80 blocks x 4,000 tokens)."""
    monkeypatch.setattr("repl.widgets.chat.chosen_prob", lambda e: e.token_prob)

    class Counted(list):
        reads = 0

        def __getitem__(self, i):
            Counted.reads += 1
            return super().__getitem__(i)

    app = Harness("scratch", "go")
    async with app.run_test(size=(WIDTH, 40)) as pilot:
        await pilot.pause()
        turn = app.turn
        for n in range(2000):
            turn.append_tokens([event(f"line {n}", 0.5), event("\n", 0.9)])
        await pilot.pause()
        assert len(turn._blocks) >= 2000 // (ChatTurn.BLOCK_LINES + 1)
        turn.pieces = Counted(turn.pieces)
        turn.set_colour(True)
        assert Counted.reads <= len(turn.pieces) + 4 * len(turn._blocks), Counted.reads
        await shown_equals_full_text(app, pilot)


@pytest.mark.parametrize(
    "width, prompt, appends",
    [
        (25, "prompt prompt prompt ", ["\u200d", " ", "x" * 30, "x" * 30]),  # the probe's
        (25, "p", ["a very long line\xa0", "x" * 30, "x" * 30]),  # a no-break space
        (12, "p", ["ab", "🇫🇷", " ", "x" * 30, "x" * 30]),
    ],
)
async def test_a_block_cut_where_a_row_wraps_ends_as_a_wrapped_row(
    width, prompt, appends, monkeypatch
):
    """Textual trims the end of a wrapped row but not of the last row: a block cut where
    a row wraps ends with what was a wrapped row, trimmed the same (here a space after a
    zero-width joiner, a no-break space, a flag)."""
    monkeypatch.setattr(ChatTurn, "WRAP_CUT_CHARS", 40)
    app = Harness("m", prompt)
    async with app.run_test(size=(width + 2, 30)) as pilot:
        await pilot.pause()
        for text in appends:
            app.turn.append(text)
            await pilot.pause()
        assert app.turn._blocks
        await shown_equals_full_text(app, pilot)


async def test_without_rich_wrapping_the_tail_is_laid_out_each_frame(monkeypatch):
    """If Rich moves its private divide_line, the rows cannot be counted (-1): each frame
    must then ask for a layout. -1 equalled the -1 remembered, so none was asked for and
    the growing tail stayed one row high."""
    monkeypatch.setattr("repl.widgets.chat._wrap_offsets", None)
    app = Harness("scratch", "go")
    async with app.run_test(size=(WIDTH, 40)) as pilot:
        await pilot.pause()
        turn = app.turn
        for _ in range(10):
            turn.append("word " * 20)
            await pilot.pause()
        await shown_equals_full_text(app, pilot)
        assert turn._tail.size.height > 10
        assert not turn._blocks  # no cutting at wraps without the wrapping
