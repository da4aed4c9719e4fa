"""Snapshot of the main screen with the side panel mid-generation (fake model, frozen
cursor, generation held at a fixed token by a gate)."""

import threading

from repl.app import make_app
from tests.repl.fakes import FakeLM, FakeLoader


def test_main_screen_mid_generation(snap_compare):
    gate = threading.Event()
    lm = FakeLM("scratch", gate=gate, gate_after=12)
    app = make_app(
        model="scratch",
        loader=FakeLoader(models={"scratch": lm}),
        history_path=False,
        cursor_blink=False,
    )
    app.session.settings = app.session.settings.updated(max_new_tokens=40, greedy=True, seed=0)

    async def run_before(pilot):
        await app.workers.wait_for_complete()
        await pilot.pause()
        for ch in "Once upon a time":
            await pilot.press(ch if ch != " " else "space")
        await pilot.press("enter")
        for _ in range(500):  # until the generation is held at the gate
            await pilot.pause(0.02)
            if len(app.query_one("SidePanel").output_ids) >= 16 + 12:
                break
        await pilot.pause(0.1)
        threading.Timer(5.0, gate.set).start()  # let the worker finish after the snapshot

    assert snap_compare(app, terminal_size=(120, 40), run_before=run_before)
