"""Snapshots of the main screen mid-generation, one per side-panel view (fake model with
deterministic probes, frozen cursor, generation held at a fixed token by a gate)."""

import threading

import pytest

from repl.app import make_app
from repl.widgets.views import VIEWS
from tests.repl.fakes import FakeLM, FakeLoader


def _app(view: int, prompt: str = "Once upon a time", gate_after: int = 12):
    gate = threading.Event()
    lm = FakeLM("scratch", gate=gate, gate_after=gate_after)
    app = make_app(
        model="scratch",
        loader=FakeLoader(models={"scratch": lm}),
        history_path=False,
        cursor_blink=False,
    )
    app.session.settings = app.session.settings.updated(max_new_tokens=40, greedy=True, seed=0)

    async def run_before(pilot):
        for _ in range(200):
            await pilot.pause(0.02)
            if app.session.current is not None:
                break
        for _ in range(view):
            await pilot.press("f3")
        for ch in prompt:
            await pilot.press(ch if ch != " " else "space")
        await pilot.press("enter")
        for _ in range(500):  # until the generation is held at the gate
            await pilot.pause(0.02)
            if len(app.query_one("SidePanel").output_ids) >= len(prompt) + gate_after:
                break
        await pilot.pause(0.1)
        threading.Timer(5.0, gate.set).start()  # let the worker finish after the snapshot

    return app, run_before


def test_main_screen_mid_generation(snap_compare):
    app, run_before = _app(0)
    assert snap_compare(app, terminal_size=(120, 40), run_before=run_before)


@pytest.mark.parametrize("view", range(1, len(VIEWS)), ids=[v.title for v in VIEWS[1:]])
def test_each_view_mid_generation(snap_compare, view):
    app, run_before = _app(view)
    assert snap_compare(app, terminal_size=(100, 30), run_before=run_before)


class Shades(FakeLM):
    """The fake with its distribution made sharper or flatter step by step, so the picks
    fall in every surprisal band: p ~0.83, ~0.33, ~0.08, ~0.03 (the pick stays the same)."""

    SCALES = (1.0, 0.5, 0.25, 0.1)

    def _logits(self):
        v = super()._logits()  # counts the step: self.i is 1 for the first
        return v * self.SCALES[(self.i - 1) % len(self.SCALES)]


class Clock:
    """A clock for gpt2core.generate that ticks 10 ms per reading: the turn's ttft, tok/s
    and the status bar's rate come out the same on every run."""

    def __init__(self):
        self.t = 0.0

    def perf_counter(self):
        self.t += 0.01
        return self.t


def test_surprisal_colouring_after_a_generation(snap_compare, monkeypatch):
    """`:set color=surprisal`, then a whole reply: each token in its band's colour, the
    legend in the status bar."""
    import gpt2core.generate

    monkeypatch.setattr(gpt2core.generate, "time", Clock())
    lm = Shades("scratch")
    app = make_app(
        model="scratch",
        loader=FakeLoader(models={"scratch": lm}),
        history_path=False,
        cursor_blink=False,
    )

    async def run_before(pilot):
        for _ in range(200):
            await pilot.pause(0.02)
            if app.session.current is not None:
                break
        for line in (":set greedy=true max_new_tokens=24 seed=0 color=surprisal",
                     "Once upon a time"):  # fmt: skip
            for ch in line:
                await pilot.press(ch if ch != " " else "space")
            await pilot.press("enter")
        for _ in range(500):
            await pilot.pause(0.02)
            if app.session.turns and not app.generating:
                break
        await app.workers.wait_for_complete()
        await pilot.pause(0.1)
        bands = [band for _, band in app.query_one("ChatTurn").pieces]
        assert sorted(set(bands)) == [0, 1, 2, 3], bands

    assert snap_compare(app, terminal_size=(120, 40), run_before=run_before)


def test_attention_grid_on_a_short_context_80x24(snap_compare):
    """A context of 13 tokens: the T x T grid of the chosen head, on the smallest screen."""
    view = next(i for i, v in enumerate(VIEWS) if v.title == "Attention")
    app, run_before = _app(view, prompt="Hi there", gate_after=6)

    async def then_head_1(pilot):
        await run_before(pilot)
        await pilot.press("f8", "f8")
        await pilot.pause(0.1)

    assert snap_compare(app, terminal_size=(80, 24), run_before=then_head_1)
