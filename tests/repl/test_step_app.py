"""Step mode in the app: keys drive a real tiny model one token at a time."""

from repl.app import make_app
from repl.widgets import ChatTurn, SidePanel
from repl.widgets.views import NextTokenView
from tests.repl.test_app import SIZE, settle, submit, text_of


async def _until(pilot, cond, n=300):
    for _ in range(n):
        await pilot.pause(0.02)
        if cond():
            return
    raise AssertionError("timed out")


async def test_step_keys_force_accept_undo_and_finish(scratch_tiny_dir):
    app = make_app(model=f"scratch:{scratch_tiny_dir}", history_path=False)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await submit(pilot, ":set greedy=true")
        await submit(pilot, ":step Once upon a time")
        await _until(pilot, lambda: app.stepper is not None)
        panel = app.query_one(SidePanel)
        assert isinstance(panel.view, NextTokenView)
        assert "step 0" in text_of(panel.view) and "sampling pipeline" in text_of(panel.view)
        footer_keys = {b.binding.action for b in app.active_bindings.values()}
        assert "step_accept" in footer_keys
        st = app.stepper
        second = st.proposal.candidates[1].token_id
        for key, n in (("2", 1), ("enter", 2), ("backspace", 1)):
            await pilot.press(key)
            await _until(pilot, lambda n=n: len(st.tokens) == n)
        third = st.proposal.candidates[2].token_id
        await pilot.press("3")
        await _until(pilot, lambda: len(st.tokens) == 2)
        await pilot.press("escape")
        await settle(app, pilot)
        assert app.stepper is None and not app.generating
        turn = app.session.turns[-1]
        assert turn.output_ids[4:] == [second, third]
        assert [t["forced"] for t in turn.tokens] == [True, True] and len(turn.branches) == 1
        widget = list(app.query(ChatTurn))[-1]
        assert widget.state == "done" and "2 forced" in widget.footer
        assert not app.check_action("step_accept", ())  # keys are back to normal
        await submit(pilot, ":set max_new_tokens=3")
        await submit(pilot, "and then")
        await settle(app, pilot)
        assert app.session.turns[-1].prompt == "and then"
