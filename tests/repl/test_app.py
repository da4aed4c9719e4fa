"""Pilot tests of the Textual app with a deterministic fake model (no TensorFlow weights),
plus one with a real tiny scratch checkpoint."""

import json
import threading

from repl.app import make_app
from repl.widgets import ChatTurn, CompareView, NoticeLine, QueuedLine, SidePanel
from tests.repl.fakes import DirLoader, FakeLM, FakeLoader

SIZE = (120, 40)


def text_of(widget) -> str:
    """What a Static or a ChatTurn shows, as plain text."""
    import io

    from rich.console import Console

    console = Console(width=200, file=io.StringIO(), record=True)
    # a ChatTurn is a column of Statics; full_text() is what they show (test_chat_turn)
    console.print(widget.full_text() if hasattr(widget, "full_text") else widget.content)
    return console.export_text()


def notices(app):
    return [text_of(n) for n in app.query(NoticeLine)]


async def settle(app, pilot, timeout=120.0):
    """Wait until no load, generation or queued prompt is left (loads run on the app's
    loader thread, not as Textual workers)."""
    import time

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        await app.workers.wait_for_complete()
        await pilot.pause()
        if not app.loads.busy and not app.generating and not app.queue:
            break
        await pilot.pause(0.02)
    await pilot.pause()
    await pilot.pause()


async def until(pilot, cond, n=300, every=0.02):
    """Pause until cond() holds (at most n pauses of ``every`` seconds)."""
    for _ in range(n):
        await pilot.pause(every)
        if cond():
            return
    raise AssertionError("timed out")


async def submit(pilot, text):
    for ch in text:
        await pilot.press(ch if ch != " " else "space")
    await pilot.press("enter")


async def test_typing_streams_a_completion_and_fills_the_panel(tmp_path):
    app = make_app(model="scratch", loader=FakeLoader(), history_path=tmp_path / "h")
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        app.session.settings = app.session.settings.updated(max_new_tokens=9, greedy=True)
        await submit(pilot, "hi")
        await settle(app, pilot)
        turn = app.query_one(ChatTurn)
        assert turn.model == "scratch" and turn.completion == "the quick" and turn.state == "done"
        panel = app.query_one(SidePanel)
        assert panel.input_ids == [8, 9]
        assert len(panel.output_ids) == 11
        text = text_of(panel.view)
        assert "tf.Tensor([[8 9]], shape=(1, 2), dtype=int32)" in text
        assert "shape=(1, 11), dtype=int32)" in text and "◀" in text
        assert "stop: max_new_tokens" in text
        palette = [c.title for c in app.get_system_commands(app.screen)]
        assert {":model", ":set", ":compare", ":save", ":tokens"} <= set(palette)


async def test_esc_stops_and_keeps_the_partial_text(tmp_path):
    gate = threading.Event()
    lm = FakeLM("pretrained:slow", gate=gate, gate_after=3)
    app = make_app(
        model="pretrained:slow",
        loader=FakeLoader(models={"pretrained:slow": lm}),
        history_path=False,
    )
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        app.session.settings = app.session.settings.updated(max_new_tokens=200, greedy=True)
        await submit(pilot, "go")
        await pilot.pause(0.2)
        assert app.generating
        await pilot.press("escape")
        gate.set()
        await settle(app, pilot)
        turn = app.query_one(ChatTurn)
        assert turn.state == "stopped" and 1 <= len(turn.completion) <= 5
        assert "[stopped]" in text_of(turn)
        assert app.session.turns[-1].stats["stop_reason"] == "cancelled"
        await pilot.press("ctrl+c")  # nothing generating: Ctrl-C quits
        await pilot.pause()
    assert app.return_code == 0


async def test_ctrl_c_during_generation_stops_it_without_quitting(tmp_path):
    gate = threading.Event()
    app = make_app(
        model="pretrained:slow",
        loader=FakeLoader(
            models={"pretrained:slow": FakeLM("pretrained:slow", gate=gate, gate_after=2)}
        ),
        history_path=False,
    )
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await submit(pilot, "go")
        await pilot.pause(0.2)
        await pilot.press("ctrl+c")
        gate.set()
        await settle(app, pilot)
        assert app.is_running and app.query_one(ChatTurn).state == "stopped"


async def test_model_switch_during_generation(tmp_path):
    gate = threading.Event()
    first = FakeLM("pretrained:first", gate=gate, gate_after=2)
    loader = FakeLoader(
        models={"pretrained:first": first, "scratch:other": FakeLM("scratch:other", script="zz")}
    )
    app = make_app(model="pretrained:first", loader=loader, history_path=False)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        app.session.settings = app.session.settings.updated(max_new_tokens=6, greedy=True)
        await submit(pilot, "a")
        await pilot.pause(0.1)
        await submit(pilot, ":model scratch:other")
        for _ in range(500):  # the load worker finishes while the first model is held
            await pilot.pause(0.02)
            if app.session.current.name == "scratch:other":
                break
        assert app.session.current.name == "scratch:other"
        assert app.generating  # loaded while the other generates
        gate.set()
        await settle(app, pilot)
        turns = list(app.query(ChatTurn))
        assert turns[0].model == "pretrained:first" and turns[0].completion == "the qu"
        await submit(pilot, "b")
        await settle(app, pilot)
        turns = list(app.query(ChatTurn))
        assert turns[1].model == "scratch:other" and turns[1].completion == "zzzzzz"
        assert any("model: scratch:other" in n for n in notices(app))


async def test_set_errors_and_unknown_commands_are_one_line(tmp_path):
    app = make_app(model="scratch", loader=FakeLoader(), history_path=False)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await submit(pilot, ":set top_p=7")
        await submit(pilot, ":set temperature=-2")
        await submit(pilot, ":frobnicate")
        await submit(pilot, ":model scratch:/no/such/dir")
        await settle(app, pilot)
        errors = [text_of(n) for n in app.query(NoticeLine) if n.has_class("error")]
        assert any("top_p must be a number in (0, 1]" in e for e in errors)
        assert any("temperature must be a number >= 0" in e for e in errors)
        assert any("unknown command :frobnicate" in e for e in errors)
        assert any(
            "no such checkpoint directory" in e and "still using scratch" in e for e in errors
        )
        assert app.session.settings.top_p == 1.0 and app.session.current.name == "scratch"


async def test_save_writes_the_transcript(tmp_path):
    app = make_app(model="scratch", loader=FakeLoader(), history_path=False)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await submit(pilot, ":set max_new_tokens=4 seed=11")
        await submit(pilot, "ab")
        await settle(app, pilot)
        path = tmp_path / "out.json"
        await submit(pilot, f":save {path}")
        await settle(app, pilot)
    data = json.loads(path.read_text())
    (turn,) = data["turns"]
    assert turn["seed"] == 11 and turn["settings"]["max_new_tokens"] == 4
    assert turn["input_ids"] == [1, 2] and len(turn["output_ids"]) == 6


async def test_falls_back_to_scratch_when_pretrained_cannot_load(tmp_path):
    gate = threading.Event()
    loader = FakeLoader(fail={"pretrained:gpt2"}, gate=gate)
    app = make_app(model="pretrained", loader=loader, history_path=False)
    async with app.run_test(size=SIZE) as pilot:
        await submit(pilot, "early")  # typed before the model is ready
        await pilot.pause()
        assert any("queued" in n for n in notices(app))
        gate.set()
        await settle(app, pilot)
        await settle(app, pilot)
        assert app.session.current.name == "scratch"
        assert any("could not load pretrained" in n and "using scratch" in n for n in notices(app))
        turn = app.query_one(ChatTurn)  # the early prompt ran on the fallback
        assert turn.prompt == "early" and turn.model == "scratch" and turn.state == "done"


async def test_compare_side_by_side(tmp_path):
    loader = FakeLoader(
        models={
            "scratch": FakeLM("scratch", script="hello world"),
            "pretrained:gpt2": FakeLM("pretrained:gpt2", script="hello there"),
        }
    )
    app = make_app(model="scratch", loader=loader, history_path=False)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await submit(pilot, ":set max_new_tokens=8 greedy=true")
        await submit(pilot, ":compare x")
        await settle(app, pilot)
        view = app.query_one(CompareView)
        assert view.result.first_difference == 6
        assert "first difference at new token 6" in view.border_title


async def test_history_up_down(tmp_path):
    app = make_app(model="scratch", loader=FakeLoader(), history_path=tmp_path / "h.jsonl")
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await submit(pilot, ":settings")
        await submit(pilot, ":help")
        await pilot.press("up")
        assert app.query_one("#prompt").value == ":help"
        await pilot.press("up")
        assert app.query_one("#prompt").value == ":settings"
        await pilot.press("down", "down")
        assert app.query_one("#prompt").value == ""
    again = make_app(model="scratch", loader=FakeLoader(), history_path=tmp_path / "h.jsonl")
    assert again.session.history.items[-2:] == [":settings", ":help"]


async def test_real_tiny_scratch_checkpoint(scratch_tiny_dir):
    app = make_app(model=f"scratch:{scratch_tiny_dir}", history_path=False)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        assert app.session.current.kind == "scratch"
        await submit(pilot, ":set max_new_tokens=6 greedy=true")
        await submit(pilot, "Once upon a time")
        await settle(app, pilot)
        turn = app.query_one(ChatTurn)
        assert turn.state == "done" and turn.completion
        panel = text_of(app.query_one(SidePanel).view)
        assert "tf.Tensor([[7454 2402  257  640]], shape=(1, 4), dtype=int32)" in panel
        assert "shape=(1, 10), dtype=int32)" in panel


async def test_the_switch_interval_is_the_apps_only_while_it_runs(tmp_path):
    """The app shortens the interpreter's thread switch interval for its decoder thread;
    the setting is the whole process's, so it goes back when the app ends."""
    import sys

    before = sys.getswitchinterval()
    app = make_app(model="scratch", loader=FakeLoader(), history_path=tmp_path / "h")
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        assert sys.getswitchinterval() == app.SWITCH_INTERVAL_S != before
    assert sys.getswitchinterval() == before


async def test_save_to_the_home_of_a_user_that_does_not_exist_is_one_line():
    """`:save ~nosuchuser/x.json` (a typo for ~/x.json): pathlib raises RuntimeError, which
    ended the app with a traceback."""
    app = make_app(model="scratch", loader=FakeLoader(), history_path=False)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await submit(pilot, ":save ~gpt2-no-such-user/x.json")
        await settle(app, pilot)
        assert app.is_running
        assert notices(app)[-1] == (
            "~gpt2-no-such-user/x.json: cannot write (no such user's home directory)\n"
        )


async def test_a_huge_notice_shows_its_head_and_how_much_is_left_out():
    """`:tokens` of a pasted chapter made a notice of a line per token: drawing 30,000 of
    them held the UI thread for seconds (keys waited). A notice shows its first
    NoticeLine.MAX_LINES lines and says how many more there are."""
    from textual import events

    app = make_app(model="scratch", loader=FakeLoader(), history_path=False)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        app.prompt_input.post_message(events.Paste(":tokens " + "ab " * 2000))
        await pilot.pause()
        await pilot.press("enter")
        await until(pilot, lambda: notices(app)[-1].startswith("5999 tokens"))
        shown = notices(app)[-1].splitlines()
        assert len(shown) == NoticeLine.MAX_LINES + 1
        assert shown[-1] == f"... ({6001 - NoticeLine.MAX_LINES} more lines not shown)"
        app.prompt_input.post_message(events.Paste(":set seed=" + "9" * 200_000))
        await pilot.pause()
        await pilot.press("enter")  # the error quotes it: cut to one short line
        await until(pilot, lambda: "more characters)" in notices(app)[-1])
        assert len(notices(app)[-1].replace("\n", "")) < 400


async def test_a_second_ctrl_c_quits_while_a_compare_loads_its_second_model():
    """`:compare` loads its second model inside the turn, where the cancel flag is not
    looked at: Ctrl-C could not stop it, and no number of presses quit."""
    loader = FakeLoader(models={"scratch": FakeLM("scratch"), "pretrained:gpt2": FakeLM("p")})
    app = make_app(model="scratch", loader=loader, history_path=False)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await settle(app, pilot)
            loader.gate = threading.Event()  # the next load (compare's second) waits
            await submit(pilot, ":compare x")
            await until(pilot, lambda: "pretrained:gpt2" in loader.calls)
            await pilot.press("ctrl+c")  # asks the turn to stop: the load goes on
            await pilot.pause()
            assert app.is_running and app.generating
            await pilot.press("ctrl+c")
            await until(pilot, lambda: not app.is_running)
    finally:
        loader.gate.set()  # let the loading thread finish


async def test_again_and_inspect_typed_while_a_turn_streams_act_on_that_turn():
    """:again and :inspect (with no prompt) act on the last turn; typed while one streams
    they wait for it. Handled at once they found no turn yet ("nothing to run again yet")
    or, later in a session, silently took the turn before the one streaming."""
    gate = threading.Event()
    gate.set()  # the first turn runs freely; the second waits after 2 tokens
    lm = FakeLM("scratch", gate=gate, gate_after=2)
    app = make_app(model="scratch", loader=FakeLoader(models={"scratch": lm}), history_path=False)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await settle(app, pilot)
            await submit(pilot, ":set max_new_tokens=4")
            await submit(pilot, "first")
            await settle(app, pilot)
            gate.clear()
            await submit(pilot, "second")
            await until(pilot, lambda: app.generating)
            await submit(pilot, ":again")
            await submit(pilot, ":inspect")
            await pilot.pause()
            assert [t.prompt for t in app.session.turns] == ["first"]  # still streaming
            gate.set()
            await settle(app, pilot)
            await until(pilot, lambda: any("logit lens" in n for n in notices(app)))
            assert [t.prompt for t in app.session.turns] == ["first", "second", "second"]
            assert not [n for n in notices(app) if n.startswith("nothing to")]
            report = next(n for n in notices(app) if "logit lens" in n)
            second = app.session.turns[-1]
            assert f"prompt: {len(second.output_ids)} tokens" in report  # the :again turn
            assert app.session.history.items[-2:] == [":again", ":inspect"]
    finally:
        gate.set()


def _gated_app():
    """(app, gate): a fake 'scratch' model that holds after 2 tokens while the gate is
    clear, and a 'pretrained:gpt2' one for :compare. The gate starts set."""
    gate = threading.Event()
    gate.set()
    loader = FakeLoader(
        models={
            "scratch": FakeLM("scratch", script="hello world", gate=gate, gate_after=2),
            "pretrained:gpt2": FakeLM("pretrained:gpt2", script="hello there"),
        }
    )
    return make_app(model="scratch", loader=loader, history_path=False), gate


def _shown(app) -> list[str]:
    """The chat's turns, compare results and notices, in order."""
    out = []
    for w in app.chat.children:
        if isinstance(w, ChatTurn):
            out.append(f"turn {w.prompt} {w.state}")
        elif isinstance(w, CompareView):
            out.append(f"compare {w.result.prompt}")
        elif isinstance(w, NoticeLine):
            out.append(text_of(w).strip())
    return out


async def test_queued_compare_step_and_again_show_in_the_order_they_were_typed():
    """Typed while a turn streams: `:compare`, a prompt, `:again`, a prompt, `:step`, a
    prompt. Each shows in the chat where it was typed: the compare's result, the :again
    turn and the step turn landed where they finished, below the prompts queued after
    them."""
    app, gate = _gated_app()
    try:
        async with app.run_test(size=SIZE) as pilot:
            await settle(app, pilot)
            await submit(pilot, ":set max_new_tokens=4 greedy=true")
            gate.clear()
            await submit(pilot, "first")
            await until(pilot, lambda: app.generating)
            for line in (":compare c", "p1", ":again", "p2", ":step s", "p3"):
                await submit(pilot, line)
            await pilot.pause()
            gate.set()
            await until(pilot, lambda: app.stepper is not None, n=1500)
            await pilot.press("escape")  # the step turn ends; p3 runs
            await settle(app, pilot)
            shown = [s for s in _shown(app) if s.startswith(("turn ", "compare "))]
            assert shown == [
                "turn first done",
                "compare c",
                "turn p1 done",
                "turn p1 done",  # :again ran the turn before it: p1
                "turn p2 done",
                "turn s done",
                "turn p3 done",
            ], shown
            assert not [w for w in app.query(QueuedLine) if w.state == "queued"]
    finally:
        gate.set()


async def test_a_held_again_that_is_refused_says_so_in_its_place():
    """`:again x` typed while a turn streams, then a prompt: its usage error showed below
    that prompt's turn, and its place said only ':again x'."""
    app, gate = _gated_app()
    try:
        async with app.run_test(size=SIZE) as pilot:
            await settle(app, pilot)
            await submit(pilot, ":set max_new_tokens=4 greedy=true")
            gate.clear()
            await submit(pilot, "first")
            await until(pilot, lambda: app.generating)
            await submit(pilot, ":again x")
            await submit(pilot, "p2")
            gate.set()
            await settle(app, pilot)
            shown = _shown(app)
            assert shown[-3:] == ["turn first done", "usage: :again [same]", "turn p2 done"]
    finally:
        gate.set()


async def test_clear_keeps_the_place_of_a_running_compare_and_the_open_step_turn():
    """:clear while a :compare runs removed the line that holds its place, and its result
    landed below the prompt queued after it; in step mode it removed the step turn, whose
    steps then showed nowhere."""
    app, gate = _gated_app()
    try:
        async with app.run_test(size=SIZE) as pilot:
            await settle(app, pilot)
            await submit(pilot, ":set max_new_tokens=4 greedy=true")
            gate.clear()
            await submit(pilot, ":compare c")
            await until(pilot, lambda: app.generating)
            await submit(pilot, "p1")
            await submit(pilot, ":clear")
            gate.set()
            await settle(app, pilot)
            assert [s for s in _shown(app) if not s.startswith("compare:")] == [
                "compare c",
                "turn p1 done",
            ]
            await submit(pilot, ":step s")
            await until(pilot, lambda: app.stepper is not None)
            await submit(pilot, ":clear")
            await pilot.press("enter")  # a step: the turn shows it
            await until(pilot, lambda: len(app.stepper.tokens) == 1)
            await pilot.press("escape")
            await settle(app, pilot)
            assert _shown(app)[0] == "turn s done"
            assert app.query_one(ChatTurn).completion == "h"
    finally:
        gate.set()


def test_an_error_notice_quoting_a_huge_input_is_one_short_line():
    line = text_of(NoticeLine("temperature=" + "1" * 1_000_000 + " is invalid", "error"))
    assert len(line.strip().splitlines()) <= 3 and len(line) < 400  # (wrapped at 200 columns)
    assert "more characters)" in line
    info = text_of(NoticeLine("x" * 5_000))  # not an error: :tokens tables and the like stay
    assert len(info.replace("\n", "")) >= 5_000


async def test_model_again_on_the_current_directory_reloads_it_when_its_files_changed(tmp_path):
    """`:model scratch:DIR` on the model in use replied 'already using' before the session
    could see that DIR's files had changed (a run trained into it): it reloads now."""
    import os

    from textual import events

    async def command(text):  # pasted, not typed key by key (a long path took 2 s a time)
        app.prompt_input.post_message(events.Paste(text))
        await pilot.pause()
        await pilot.press("enter")
        await settle(app, pilot)

    d = DirLoader(tmp_path)
    ck, loads = d.dir, d.loads
    app = make_app(model=d.spec, loader=d, history_path=False)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        assert len(loads) == 1
        await command(f":model scratch:{ck}")
        assert len(loads) == 1 and "already using" in notices(app)[-1]
        await command(f":model scratch:{ck}/../{ck.name}/")  # the same directory, spelled anew
        assert len(loads) == 1 and f"already using scratch:{ck}" in notices(app)[-1]
        os.utime(ck / "model.safetensors", ns=(1, 1))
        await command(f":model scratch:{ck}")
        assert len(loads) == 2 and app.session.current is app.session.models[f"scratch:{ck}"]


async def test_a_narrow_terminal_starts_with_the_panel_hidden_and_f2_shows_it():
    """At 30 columns the chat was 0 wide (the panel is at least 32), at 40 it was 6: a
    reply was invisible until F2 (a hostile probe's find)."""
    app = make_app(model="scratch", loader=FakeLoader(), history_path=False)
    async with app.run_test(size=(40, 20)) as pilot:
        await settle(app, pilot)
        await submit(pilot, "hi")
        await settle(app, pilot)
        assert not app.panel.display and app.chat.size.width >= 36
        await pilot.press("f2")
        await pilot.pause()
        assert app.panel.display and app.panel.size.width > 0
        await pilot.resize_terminal(120, 40)
        await pilot.pause()
        assert app.panel.display and app.chat.size.width > 50
    app = make_app(model="scratch", loader=FakeLoader(), history_path=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        assert app.panel.display
        await pilot.resize_terminal(50, 30)  # shrunk: the chat keeps the room
        await pilot.pause()
        assert not app.panel.display and app.chat.size.width >= 46
