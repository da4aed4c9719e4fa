"""`:train` inside the app: the Training view plots the run, Esc stops it and saves last/,
which resumes; chatting goes on meanwhile."""

from repl.app import make_app
from repl.widgets import PromptInput, SidePanel
from repl.widgets.views import TrainingView
from tests.conftest import SHAKESPEARE
from tests.repl.fakes import FakeLoader
from tests.repl.test_app import SIZE, notices, settle, text_of, until


def _corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(SHAKESPEARE.read_text(encoding="utf-8")[:30_000], encoding="utf-8")
    return path


async def _until(pilot, cond, n=3000):
    await until(pilot, cond, n, every=0.05)


async def paste(app, pilot, line):
    """A command pasted and entered: typed key by key, a :train line with its corpus path
    took 10 s (Pilot waits for the machine to go idle between keys)."""
    from textual import events

    app.prompt_input.post_message(events.Paste(line))
    await pilot.pause()
    await pilot.press("enter")
    await pilot.pause()


async def test_train_in_the_app_plots_and_finishes(tmp_path):
    out = tmp_path / "run"
    app = make_app(model="scratch", loader=FakeLoader(), history_path=False)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await paste(app, pilot, f":train {_corpus(tmp_path)} --preset tiny --max-iters 6 "
                                f"--eval-interval 3 --eval-iters 2 --out {out}")  # fmt: skip
        panel = app.query_one(SidePanel)
        assert isinstance(panel.view, TrainingView)
        await _until(pilot, lambda: app.train_stop is None)
        log = panel.state.train
        assert log.state == "done" and [i for i, _ in log.steps] == [1, 2, 3, 4, 5, 6]
        assert [i for i, _, _ in log.evals][:2] == [0, 3]
        text = text_of(panel.view)
        assert "done: iter 6/6" in text and "val loss" in text and "●" in text
        assert any(f":model scratch:{out}" in n for n in notices(app))
        assert (out / "last").is_dir() and (out / "config.json").is_file()


async def test_esc_stops_a_run_saves_last_and_it_resumes(tmp_path):
    from gpt2core.train import prepare
    from repl.train_args import parse_train_args

    out = tmp_path / "run"
    args = f"{_corpus(tmp_path)} --preset tiny --max-iters 5000 --eval-interval 1000 --out {out}"
    app = make_app(model="scratch", loader=FakeLoader(), history_path=False)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await paste(app, pilot, f":train {args} --eval-iters 2")
        panel = app.query_one(SidePanel)
        await _until(pilot, lambda: len(panel.state.train.steps) >= 3)
        # typed while it trains (through the box, not pilot.press: Pilot waits for the CPU
        # to go idle between keys, which it never does during a run)
        box = app.query_one(PromptInput)
        for line in (":set max_new_tokens=4", "chatting while it trains"):
            box.value = line
            box.submit()
            await pilot.pause()
        await _until(pilot, lambda: app.session.turns)
        # one Esc (meant, say, for a reply that has just ended) only asks: a run may be long
        await pilot.press("escape")
        assert "Esc again stops the training run" in notices(app)[-1]
        await pilot.pause(app.STOP_REPEAT_S)
        assert app.train_stop is not None and not app.train_stop.is_set()
        await pilot.press("escape")
        await _until(pilot, lambda: app.train_stop is None)
        assert panel.state.train.state == "stopped"
        assert any("stopped at iter" in n and "saved" in n for n in notices(app))
        assert f":model scratch:{out}/last" in " ".join(notices(app)).replace("\n", "")
        # resumed with a setting the saved run does not have: one line, nothing started
        await paste(app, pilot, f":train {args} --eval-iters 3 --resume")
        await _until(pilot, lambda: any("--eval-iters 3 (saved: 2)" in n for n in notices(app)))
        assert app.train_stop is None
    request = parse_train_args(f"{args} --resume")
    p = prepare(request.config, resume=True)
    assert 3 <= p.start < 5000  # it goes on from where Esc stopped it
