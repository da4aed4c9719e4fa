"""ChatTurn draws a streaming completion as settled blocks plus a live tail: it must show
exactly what one Static of the whole text shows (cell by cell, styles included), and a
frame must redraw only the tail however long the reply grows."""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest
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
    """One ChatTurn in a scrolling column, built inside the app as the app builds it."""

    def __init__(self, *args):
        super().__init__()
        self.args = args

    def compose(self):
        self.turn = ChatTurn(*self.args)
        with VerticalScroll():
            yield self.turn


def cells(widgets) -> list[list[tuple[str, object]]]:
    """Each row the widgets draw, one after the other, as (character, style) cells."""
    rows = []
    for w in widgets:
        if not w.display:
            continue
        for strip in w.render_lines(Region(0, 0, w.size.width, w.size.height)):
            rows.append([(ch, _look(seg.style)) for seg in strip for ch in seg.text])
    return rows


def _look(style):
    """A cell's style without Textual's meta (which holds the cell's offset in its widget)."""
    return style.clear_meta_and_links() if style is not None else None


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


@pytest.mark.parametrize("seed", [0, 1, 2])
async def test_blocks_and_tail_show_what_one_static_shows(seed, monkeypatch):
    """Random streams of words, newlines, wide characters and control bytes, with colour
    switched on and off mid-stream, then finished with a footer."""
    monkeypatch.setattr("repl.widgets.chat.chosen_prob", lambda e: e.token_prob)
    rng = random.Random(seed)
    app = Harness("scratch:\x1b]0;x\x07", "a prompt\nwith two lines")
    async with app.run_test(size=(WIDTH, 40)) as pilot:
        await pilot.pause()
        turn = app.turn
        for n in range(400):
            if rng.random() < 0.5:
                turn.append_tokens([event(rng.choice(PIECES), rng.random()) for _ in range(3)])
            else:
                turn.append(rng.choice(PIECES))
            if n % 97 == 0:
                turn.set_colour(not turn.colour)
            if n % 131 == 0:
                await shown_equals_full_text(app, pilot)
        assert len(turn._blocks) >= 3  # the stream settled into blocks
        await shown_equals_full_text(app, pilot)
        turn.set_colour(not turn.colour)  # every block redrawn
        await shown_equals_full_text(app, pilot)
        turn.finish("stopped", "12 tokens | 3.0 tok/s")
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


async def test_a_frame_redraws_only_the_tail(monkeypatch):
    """5,000 lines streamed a few words at a time: no update draws more than the tail,
    while one Static redrew the whole 200,000-character reply every frame."""
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
            turn.append("forty characters long\n")
            if n % 500 == 0:
                await pilot.pause()
        await pilot.pause()
        assert len(turn.completion) > 200_000
        longest_line = max(map(len, turn.completion.split("\n")))
        bound = (ChatTurn.BLOCK_LINES + 2) * (longest_line + 1) + 100
        assert max(drawn) <= bound, (max(drawn), bound)
        assert len(turn._blocks) >= 5000 // (ChatTurn.BLOCK_LINES + 1)
