"""The collector in a long session (repl.collector): each turn's end freezes what the turn
drew, so the collector's passes during the next reply walk only what that reply makes;
and what was frozen and later dropped (:clear, every few turns) is still collected."""

import gc
import threading
import weakref

from repl.app import make_app
from repl.collector import Collector
from repl.widgets import ChatTurn
from tests.repl.fakes import FakeLM, FakeLoader
from tests.repl.test_app import SIZE, settle, submit, until

TEXT = "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind\n" * 8


def _tracked(obj) -> bool:
    """Whether a collector pass would walk obj (frozen objects are not in get_objects)."""
    return any(o is obj for o in gc.get_objects())


def _app(gate=None):
    lm = FakeLM("scratch", script=TEXT, n_positions=len(TEXT) + 100, gate=gate)
    return make_app(model="scratch", loader=FakeLoader(models={"scratch": lm}), history_path=False)


async def _turn(app, pilot, prompt="go"):
    def count():
        return app.collector.turns, app.collector.sweeps

    before = count()
    await submit(pilot, prompt)
    await settle(app, pilot)
    # the settle (or sweep) runs after the turn's last frame
    await until(pilot, lambda: count() != before)


async def test_a_finished_turn_is_out_of_the_collectors_walk():
    gate = threading.Event()
    gate.set()
    app = _app(gate)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        app.session.settings = app.session.settings.updated(
            max_new_tokens=len(TEXT), greedy=True, stop_at_eos=False
        )
        await _turn(app, pilot)
        first = app.query(ChatTurn).last()
        assert first.state == "done"
        assert not _tracked(first)  # frozen at the turn's end
        gate.clear()  # the next turn holds at its first token
        await submit(pilot, "again")
        await until(pilot, lambda: len(app.query(ChatTurn)) == 2)
        second = app.query(ChatTurn).last()
        assert second.state == "generating"
        assert _tracked(second)  # a turn in progress is walked as usual
        gate.set()
        await settle(app, pilot)


async def test_cleared_turns_do_not_outlive_the_next_clear(monkeypatch):
    """Frozen at their turns' ends and in cycles (a widget, its parent, its styles), turns
    that :clear drops are freed only by a sweep. Textual's layout caches hold the ones just
    dropped for a few more frames, so each :clear's sweep frees those of the one before."""
    monkeypatch.setattr(Collector, "SWEEP_TURNS", 1000)  # no sweeps but :clear's
    app = _app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        app.session.settings = app.session.settings.updated(
            max_new_tokens=len(TEXT), greedy=True, stop_at_eos=False
        )
        made = []
        for _ in range(6):
            await _turn(app, pilot)
            made.append(weakref.ref(app.query(ChatTurn).last()))
            sweeps = app.collector.sweeps
            await submit(pilot, ":clear")
            await until(pilot, lambda s=sweeps: app.collector.sweeps > s)
            assert not app.query(ChatTurn)
        alive = [i for i, t in enumerate(made) if t() is not None]
        assert set(alive) <= {4, 5}, alive  # without the sweeps: all six


async def test_every_few_turns_a_sweep_frees_what_the_frozen_turns_dropped(monkeypatch):
    monkeypatch.setattr(Collector, "SWEEP_TURNS", 3)
    app = _app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        app.session.settings = app.session.settings.updated(
            max_new_tokens=len(TEXT), greedy=True, stop_at_eos=False
        )
        sweeps = app.collector.sweeps  # (a load may have swept already)
        for _ in range(7):
            await _turn(app, pilot)
        assert app.collector.sweeps - sweeps == 2 and app.collector.turns == 1


def test_a_sweep_collects_frozen_cyclic_garbage_and_a_settle_does_not():
    class Node:
        pass

    c = Collector()
    a, b = Node(), Node()
    a.other, b.other = b, a  # a cycle: only the collector frees it
    ref = weakref.ref(a)
    c.settle()  # frozen while alive
    del a, b
    c.settle()
    assert ref() is not None  # a settle walks only what is not frozen
    c.sweep()
    assert ref() is None


async def test_a_failed_load_sweeps_the_model_it_half_built():
    app = _app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        sweeps = app.collector.sweeps
        await submit(pilot, ":model scratch:/no/such/dir")
        await settle(app, pilot)
        assert app.collector.sweeps == sweeps + 1
