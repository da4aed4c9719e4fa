"""What a run tells its front ends (gpt2core.train_events), `:train`'s parser, and the
bundled corpus."""

import dataclasses
import os
from pathlib import Path

import pytest

from gpt2core.data import BUNDLED, corpus_path, read_corpus
from gpt2core.train import TrainConfig, TrainError, train
from gpt2core.train_events import (
    TrainDone,
    TrainEval,
    TrainSaved,
    TrainStarted,
    TrainStep,
)
from repl.cli import build_parser, main
from repl.train_args import TrainHelp, parse_train_args
from tests.conftest import SHAKESPEARE


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    p = tmp_path_factory.mktemp("corpus") / "small.txt"
    p.write_text(SHAKESPEARE.read_text(encoding="utf-8")[:30_000], encoding="utf-8")
    return p


def tiny(corpus, out, **kw):
    base = dict(
        corpus=(str(corpus),),
        out=str(out),
        n_layer=2,
        n_embd=32,
        n_head=2,
        block_size=32,
        batch_size=8,
        max_iters=20,
        lr=3e-3,
        warmup_iters=2,
        eval_interval=10,
        eval_iters=1,
    )
    return TrainConfig(**{**base, **kw})


def test_a_run_reports_its_events_in_order_with_samples_from_the_current_weights(corpus, tmp_path):
    """The sample at each eval comes from one decoder compiled once; it must be the
    weights of that moment (a stale copy of the tied head would pass unnoticed otherwise):
    each equals what a fresh model loaded from the checkpoint saved right after says."""
    from gpt2core.sampling import Settings
    from gpt2core.specs import load_lm

    out = tmp_path / "run"
    events, fresh = [], {}

    def on_event(e):
        events.append(e)
        if isinstance(e, TrainSaved):
            assert (Path(e.path) / "config.json").is_file()  # complete when announced
            if not e.best and e.iter % 10 == 0 and e.iter < 20:
                lm = load_lm(f"scratch:{e.path}")
                s = Settings(max_new_tokens=200, temperature=0.8, top_k=0, seed=0)
                fresh[e.iter] = lm.generate("\n", s).text

    result = train(tiny(corpus, out), on_event=on_event)
    kinds = [type(e).__name__ for e in events]
    assert kinds[0] == "TrainStarted" and kinds[-1] == "TrainDone"
    started, done = events[0], events[-1]
    assert isinstance(started, TrainStarted) and isinstance(done, TrainDone)
    assert started.out == str(out) and started.max_iters == 20 and started.start_iter == 0
    assert started.model.n_layer == 2 and started.tokenizer == "char" and started.n_params > 0
    assert started.replicas == 1 and started.strategy == "default" and started.is_chief
    assert done.result == result and not result.interrupted

    steps = [e for e in events if isinstance(e, TrainStep)]
    assert [e.iter for e in steps] == list(range(1, 21))
    assert steps[0].tokens_per_s == 0.0 and steps[0].eta_s is None  # the compile step
    assert all(e.tokens_per_s > 0 and e.eta_s is not None for e in steps[2:])
    assert steps[-1].eta_s == 0.0 and steps[-1].elapsed_s > steps[0].elapsed_s
    # each step reports the learning rate it used: warmup over 2 steps, then cosine decay
    from gpt2core.train import lr_at

    cfg = tiny(corpus, out)
    want = [float(lr_at(e.iter - 1, cfg)) for e in steps]
    assert [e.lr for e in steps] == pytest.approx(want, rel=1e-6)
    assert steps[0].lr < steps[1].lr == pytest.approx(3e-3) and steps[-1].lr < steps[2].lr

    evals = [e for e in events if isinstance(e, TrainEval)]
    assert [e.iter for e in evals] == [0, 10] and evals[0].best
    assert all(0 < len(e.sample) <= 200 for e in evals)
    assert evals[0].sample != evals[1].sample  # the model changed in between
    for e in evals:
        assert fresh[e.iter].startswith(e.sample), (e.iter, e.sample, fresh[e.iter])

    saved = [(e.iter, e.best) for e in events if isinstance(e, TrainSaved)]
    assert (0, True) in saved and (0, False) in saved and (10, False) in saved
    assert saved[-1] == (20, False)
    # the eval comes before its saves; every step after the eval that precedes it
    i_eval = kinds.index("TrainEval")
    assert kinds[i_eval + 1 : i_eval + 3] == ["TrainSaved", "TrainSaved"]


def test_should_stop_saves_last_and_ends_with_an_interrupted_result(corpus, tmp_path):
    out = tmp_path / "run"
    events = []
    result = train(
        tiny(corpus, out, max_iters=50),
        on_event=events.append,
        should_stop=lambda: sum(isinstance(e, TrainStep) for e in events) >= 5,
        sample=False,
    )
    assert result.interrupted and result.iters == 5
    assert isinstance(events[-1], TrainDone) and events[-1].result.interrupted
    assert [(e.iter, e.best) for e in events if isinstance(e, TrainSaved)][-1] == (5, False)
    assert all(e.sample == "" for e in events if isinstance(e, TrainEval))
    resumed = train(tiny(corpus, out, max_iters=1), resume=True, sample=False)
    assert resumed.iters == 50 and not resumed.interrupted  # a resumed run keeps its length


def test_samples_never_take_more_than_their_share_of_a_run(corpus, tmp_path, monkeypatch):
    """With evals at every other step, sampling at each would cost more than training:
    past SAMPLE_SHARE of the run's time, an eval's sample is skipped (the end's is not)."""
    from gpt2core import train as train_mod

    monkeypatch.setattr(train_mod, "SAMPLE_SHARE", 0.0)
    events = []
    result = train(
        tiny(corpus, tmp_path / "run", max_iters=8, eval_interval=2), on_event=events.append
    )
    samples = [e.sample for e in events if isinstance(e, TrainEval)]
    assert len(samples) == 4 and samples[0] and samples[1]  # the compile's one is free
    assert samples[2:] == ["", ""] and result.sample


def test_events_are_frozen_and_ui_free():
    step = TrainStep(1, 2, 0.5, 1e-3, 10.0, 1.0, 0.1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        step.loss = 0.0  # type: ignore[misc]


# -- :train's parser ---------------------------------------------------------------------------


def test_train_parser_is_the_cli_parser_and_raises_one_line():
    req = parse_train_args("shakespeare --preset tiny --max-iters 2 --lr 1e-3 --seed 7")
    cfg = req.config
    assert cfg.corpus == ("shakespeare",) and cfg.out == os.path.join("runs", "shakespeare")
    assert (cfg.preset, cfg.max_iters, cfg.lr, cfg.seed) == ("tiny", 2, 1e-3, 7)
    assert cfg.batch_size == TrainConfig.__dataclass_fields__["batch_size"].default
    assert not req.resume and req.progress
    # the same flags as `gpt2 train`, parsed the same way
    args = build_parser().parse_args(
        ["train", "shakespeare", "--preset", "tiny", "--max-iters", "2", "--lr", "1e-3",
         "--seed", "7"]
    )  # fmt: skip
    from repl.train_args import config_from_args

    assert config_from_args(args) == cfg
    assert parse_train_args(["a b.txt", "--out", "d", "--resume"]).config.max_iters == 1
    assert parse_train_args("'a b.txt' --out d").config.corpus == ("a b.txt",)
    for line, needle in [
        ("", "required: CORPUS"),
        ("x.txt --bogus 1", "unrecognized arguments: --bogus"),
        ("x.txt --max-iters many", "invalid int value"),
        ("x.txt --lr nan", "--lr must be a finite number"),
        ("x.txt --strategy cloud", "invalid choice"),
        ("x.txt --preset huge", "unknown preset 'huge'"),
        ("'x.txt", "No closing quotation"),
    ]:
        with pytest.raises(TrainError, match=needle) as e:
            parse_train_args(line)
        assert "\n" not in str(e.value)
    with pytest.raises(TrainHelp) as h:
        parse_train_args("--help")
    assert "--max-iters" in h.value.text and "shakespeare" in h.value.text


# -- the bundled corpus ------------------------------------------------------------------------


def test_shakespeare_is_bundled_and_trains_with_its_default_out(tmp_path, monkeypatch, capsys):
    path = corpus_path("shakespeare")
    assert path == BUNDLED["shakespeare"] and path.parent.name == "assets"
    assert path.read_bytes() == SHAKESPEARE.read_bytes()  # the whole Tiny Shakespeare
    assert read_corpus(["shakespeare"]).startswith("First Citizen:")
    assert corpus_path("shakespeare.txt") == Path("shakespeare.txt")  # other names: paths
    monkeypatch.chdir(tmp_path)
    rc = main(
        ["train", "shakespeare", "--preset", "tiny", "--max-iters", "2", "--block-size",
         "32", "--batch-size", "4", "--eval-iters", "1", "--no-progress"]
    )  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    err = capsys.readouterr().err
    assert "scratch:runs/shakespeare" in err
    from gpt2core.specs import load_lm

    assert load_lm(f"scratch:{tmp_path / 'runs' / 'shakespeare'}").tokenizer.vocab_size == 65


def test_the_default_out_is_a_name_a_person_can_type():
    from gpt2core.train_config import default_out

    assert default_out(("data/shakespeare.txt",)) == "runs/shakespeare"
    assert default_out(("corp/e\x1b[31mvil\nname.txt",)) == "runs/e__31mvil_name"
    assert default_out(("données.txt",)) == "runs/données"
    assert default_out(("a\u202eb.txt",)) == "runs/a_b"  # a bidi override
    assert default_out(("..",)) == default_out(()) == "runs/run"
