"""Step mode in the app: keys drive a real tiny model one token at a time."""

from repl.app import make_app
from repl.widgets import ChatTurn, SidePanel
from repl.widgets.views import NextTokenView
from tests.repl.fakes import FakeLoader
from tests.repl.test_app import SIZE, notices, settle, submit, text_of, until


async def _open_step(app, pilot, *settings):
    """A tiny real model, these :set lines, then `:step Once upon a time` until it opens."""
    await settle(app, pilot)
    for line in settings:
        await submit(pilot, line)
    await submit(pilot, ":step Once upon a time")
    await until(pilot, lambda: app.stepper is not None)


async def test_step_keys_force_accept_undo_and_finish(scratch_tiny_dir):
    app = make_app(model=f"scratch:{scratch_tiny_dir}", history_path=False)
    async with app.run_test(size=SIZE) as pilot:
        await _open_step(app, pilot, ":set greedy=true")
        panel = app.query_one(SidePanel)
        assert isinstance(panel.view, NextTokenView)
        assert "step 0" in text_of(panel.view) and "sampling pipeline" in text_of(panel.view)
        footer_keys = {b.binding.action for b in app.active_bindings.values()}
        assert "step_accept" in footer_keys
        st = app.stepper
        second = st.proposal.candidates[1].token_id
        for key, n in (("2", 1), ("enter", 2), ("backspace", 1)):
            await pilot.press(key)
            await until(pilot, lambda n=n: len(st.tokens) == n)
        third = st.proposal.candidates[2].token_id
        await pilot.press("3")
        await until(pilot, lambda: len(st.tokens) == 2)
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


async def test_branches_and_branch_n_switch_inside_step_mode(scratch_tiny_dir):
    """Two branches made by stepping back and forcing other candidates; `:branches` lists
    them and `:branch N` switches (typed while the turn is open: once ':' is typed, Enter,
    the digits and Backspace edit the command instead of stepping); the turn's text and
    output_ids follow the branch, and the left path becomes a branch."""
    app = make_app(model=f"scratch:{scratch_tiny_dir}", history_path=False)
    async with app.run_test(size=SIZE) as pilot:
        await _open_step(app, pilot, ":set greedy=true")
        st = app.stepper
        tok = st.lm.tokenizer
        c2 = st.proposal.candidates[1].token_id
        await pilot.press("2")
        await until(pilot, lambda: len(st.tokens) == 1)
        await app.workers.wait_for_complete()  # the step's proposal is drawn too
        pick = st.proposal.token_id
        c3, c4 = (st.proposal.candidates[k].token_id for k in (2, 3))
        for key, n in (("enter", 2), ("backspace", 1), ("3", 2), ("backspace", 1), ("4", 2)):
            await pilot.press(key)
            await until(pilot, lambda n=n: len(st.tokens) == n)
            await app.workers.wait_for_complete()
        new = lambda: [r.token_id for r in st.tokens]  # noqa: E731
        assert new() == [c2, c4]
        branches = lambda: [[r.token_id for r in b.tokens] for b in st.branches]  # noqa: E731
        assert branches() == [[c2, pick], [c2, c3]]

        await submit(pilot, ":branches")
        await pilot.pause(0.1)
        listing = notices(app)[-1]
        assert f"1: {tok.decode([c2, pick])}" in listing
        assert f"2: {tok.decode([c2, c3])}" in listing
        assert new() == [c2, c4]  # typing the command took no step

        await submit(pilot, ":branch 1")
        await until(pilot, lambda: new() == [c2, pick])
        await pilot.pause(0.1)
        widget = list(app.query(ChatTurn))[-1]
        assert widget.completion == tok.decode([c2, pick])
        assert app.query_one(SidePanel).output_ids == st.output_ids
        assert st.output_ids[4:] == [c2, pick]
        assert branches() == [[c2, c3], [c2, c4]]  # the path left is kept as a branch

        await submit(pilot, ":branch 7")
        await pilot.pause(0.2)
        assert "no branch 7: there are 2" in notices(app)[-1] and new() == [c2, pick]

        await pilot.press("escape")
        await settle(app, pilot)
        turn = app.session.turns[-1]
        assert turn.output_ids[4:] == [c2, pick] and turn.text == tok.decode([c2, pick])
        assert turn.branches == [[c2, c3], [c2, c4]]
        assert [op[0] for op in turn.ops][-1] == "switch"
        assert [t["forced"] for t in turn.tokens] == [True, False]


async def test_step_mode_colours_each_token_by_its_probability(scratch_tiny_dir):
    """With surprisal colouring on, a step-mode turn is coloured token by token like a
    streamed one: each piece's band comes from the probability the model gave it."""
    from repl.session import surprisal_band

    app = make_app(model=f"scratch:{scratch_tiny_dir}", history_path=False)
    async with app.run_test(size=SIZE) as pilot:
        await _open_step(app, pilot, ":set greedy=true", ":set color=surprisal")
        st = app.stepper
        for key, n in (("5", 1), ("enter", 2), ("4", 3)):
            await pilot.press(key)
            await until(pilot, lambda n=n: len(st.tokens) == n)
            await app.workers.wait_for_complete()
        await pilot.pause(0.1)
        widget = list(app.query(ChatTurn))[-1]
        assert widget.colour
        assert len(widget.pieces) == 3
        bands = [surprisal_band(r.prob) for r in st.tokens]
        assert [band for _, band in widget.pieces] == bands
        assert "".join(text for text, _ in widget.pieces) == st.text()
        assert st.tokens[0].rank == 5 and st.tokens[0].prob < st.tokens[1].prob


async def test_ctrl_c_ends_a_step_mode_turn_and_a_second_quits():
    """Ctrl-C stops what runs (here the open step-mode turn, as Esc does), then quits: in
    step mode it did neither, however often it was pressed."""
    app = make_app(model="scratch:a", loader=FakeLoader(), history_path=False)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await submit(pilot, ":step hi")
        await until(pilot, lambda: app.stepper is not None)
        await pilot.press("enter")
        await until(pilot, lambda: len(app.stepper.tokens) == 1)
        await pilot.press("ctrl+c")
        await until(pilot, lambda: app.stepper is None and not app.generating)
        assert app.is_running
        assert list(app.query(ChatTurn))[-1].state == "done"
        assert app.session.turns[-1].kind == "step" and len(app.session.turns[-1].tokens) == 1
        await pilot.press("ctrl+c")
        await until(pilot, lambda: not app.is_running)


async def test_a_step_turn_that_cannot_start_is_marked_failed():
    """`:step` with a prompt the model cannot encode is one error line, and its turn says
    failed: it kept showing as generating (a blinking cursor) for the rest of the session."""
    app = make_app(model="scratch:a", loader=FakeLoader(), history_path=False)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await submit(pilot, ":step 中")
        await until(pilot, lambda: any(n.startswith("step: character") for n in notices(app)))
        await settle(app, pilot)
        [widget] = app.query(ChatTurn)
        assert widget.state == "failed" and app._step_turn is None and not app.generating
        await submit(pilot, ":step hi")  # step mode still opens
        await until(pilot, lambda: app.stepper is not None)
        await pilot.press("escape")
        await settle(app, pilot)
        assert [w.state for w in app.query(ChatTurn)] == ["failed", "done"]


async def test_a_backend_failing_a_step_key_leaves_the_turn_open_and_whole():
    """A hostile probe's find: a step key whose backend raised anything but StepError (the
    fake's missing step-back here) ended "generating" with the turn still open: a queued
    prompt ran mid-turn, a second :step opened over the first, and Esc then saved the
    first turn's tokens under the second's prompt."""
    app = make_app(model="scratch:a", loader=FakeLoader(), history_path=False)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await submit(pilot, ":set greedy=true max_new_tokens=5")
        await submit(pilot, ":step hello")
        await until(pilot, lambda: app.stepper is not None)
        first = app.stepper
        await pilot.press("enter")
        await pilot.press("enter")
        await until(pilot, lambda: len(first.tokens) == 2)
        await submit(pilot, "queued prompt")  # waits behind the open turn
        await submit(pilot, ":step second")
        await pilot.press("backspace")  # FakeLM cannot step back: NotImplementedError
        await until(pilot, lambda: any("step undo failed" in n for n in notices(app)))
        assert "nothing changed" in notices(app)[-1]
        assert app.stepper is first and app.generating and len(app.queue) == 2
        assert len(first.tokens) == 2 and first.proposal is first._stack[-1].proposal
        await pilot.press("enter")  # the turn goes on where it was
        await until(pilot, lambda: len(first.tokens) == 3)
        await pilot.press("escape")  # ends it; then the queue runs, in order
        await until(pilot, lambda: len(app.session.turns) == 2 and app.stepper is not None)
        turn = app.session.turns[0]
        assert turn.kind == "step" and turn.prompt == "hello" and len(turn.tokens) == 3
        assert app.session.turns[1].prompt == "queued prompt"
        assert app._step_turn[1] == "second"
        await pilot.pause(app.STOP_REPEAT_S)  # sooner, it is the first Esc's double tap
        await pilot.press("escape")
        await settle(app, pilot)
        assert [w.state for w in app.query(ChatTurn)] == ["done", "done", "done"]
