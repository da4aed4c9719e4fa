"""`gpt2 train`: loss falls, resume is exact, checkpoints load, bad input is refused cleanly."""

import json
from pathlib import Path

import numpy as np
import pytest

from gpt2core.train import TrainConfig, TrainError, train
from gpt2core.train_events import TrainStep
from repl.cli import main
from tests.conftest import SHAKESPEARE

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    p = tmp_path_factory.mktemp("corpus") / "small.txt"
    p.write_text(SHAKESPEARE.read_text(encoding="utf-8")[:60_000], encoding="utf-8")
    return p


def tiny_cfg(corpus, out, **kw):
    base = dict(
        corpus=(str(corpus),),
        out=str(out),
        preset="shakespeare-cpu",
        n_layer=2,
        n_embd=32,
        n_head=2,
        block_size=32,
        batch_size=8,
        max_iters=40,
        lr=3e-3,
        min_lr=3e-4,
        warmup_iters=5,
        eval_interval=20,
        eval_iters=2,
        log_interval=1,
    )
    base.update(kw)
    return TrainConfig(**base)


def _losses(out):
    lines = [json.loads(x) for x in (Path(out) / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in lines if r["kind"] == "train"]


def test_loss_falls_and_checkpoints_load(corpus, tmp_path):
    out = tmp_path / "run"
    result = train(tiny_cfg(corpus, out))
    losses = _losses(out)
    assert len(losses) == 40
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.5
    assert np.isfinite(result.val_loss) and result.val_loss < losses[0]
    from gpt2core.specs import load_lm

    lm = load_lm(f"scratch:{out}")  # the best checkpoint at the top of DIR
    assert lm.tokenizer.kind == "char" and lm.generate("ROMEO:").new_tokens > 0
    from transformers import TFGPT2LMHeadModel

    from gpt2core.weights import load_model, patch_transformers_safetensors

    patch_transformers_safetensors()
    hf = TFGPT2LMHeadModel.from_pretrained(out)
    ours, _ = load_model(out)
    ids = np.array([lm.encode("ROMEO: hello there")], np.int32)
    assert np.abs(hf(ids).logits.numpy() - ours(ids).numpy()).max() <= 1e-4


def test_resume_after_interruption_matches_an_uninterrupted_run(corpus, tmp_path):
    full = tmp_path / "full"
    train(tiny_cfg(corpus, full, max_iters=24, dropout=0.1, eval_interval=10))

    part = tmp_path / "part"

    def interrupt(event):
        if isinstance(event, TrainStep) and event.iter == 11:
            raise KeyboardInterrupt  # what Ctrl-C does mid-run

    stopped = train(
        tiny_cfg(corpus, part, max_iters=24, dropout=0.1, eval_interval=10), on_event=interrupt
    )
    assert stopped.interrupted and stopped.iters == 11
    resumed = train(tiny_cfg(corpus, part, max_iters=24), resume=True)
    assert resumed.iters == 24
    from safetensors.numpy import load_file

    a = load_file(str(full / "last" / "model.safetensors"))
    b = load_file(str(part / "last" / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(a[k], b[k], atol=1e-6, err_msg=k)
    assert _losses(part)[-13:] == pytest.approx(_losses(full)[-13:], abs=1e-6)


def _cli(argv, capsys):
    rc = main(["train", *argv, "--no-progress"])
    return rc, capsys.readouterr().err


@pytest.mark.parametrize(
    "content,needle",
    [
        (None, "no such file"),
        (b"", "empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" * 10, "binary"),
        ("caf\xe9 latin-1 text ".encode("latin-1") * 10, "not UTF-8"),
        (b"too short", "too short"),
    ],
)
def test_bad_corpus_is_one_line_and_writes_nothing(tmp_path, capsys, content, needle):
    src = tmp_path / "corpus.txt"
    if content is not None:
        src.write_bytes(content)
    out = tmp_path / "out"
    rc, err = _cli([str(src), "--out", str(out), "--max-iters", "2"], capsys)
    assert rc == 2 and needle in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_out_dir_with_another_model_and_resume_with_nothing(corpus, tmp_path, capsys):
    out = tmp_path / "run"
    train(tiny_cfg(corpus, out, max_iters=3))
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    rc, err = _cli([str(corpus), "--out", str(out), "--n-layer", "3", "--max-iters", "2"], capsys)
    assert rc == 2 and "already holds a different model" in err
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before  # nothing touched
    rc, err = _cli([str(corpus), "--out", str(tmp_path / "empty"), "--resume"], capsys)
    assert rc == 2 and "nothing to resume" in err and not (tmp_path / "empty").exists()
    rc, err = _cli([str(corpus), "--out", str(tmp_path / "x"), "--tokenizer", "bpe:abc"], capsys)
    assert rc == 2 and "bpe:N" in err


def test_train_cli_json_and_bpe_tokenizer(corpus, tmp_path, capsys):
    out = tmp_path / "bpe"
    rc = main(
        [
            "train",
            str(corpus),
            "--out",
            str(out),
            "--tokenizer",
            "bpe:400",
            "--n-layer",
            "1",
            "--n-embd",
            "32",
            "--n-head",
            "2",
            "--block-size",
            "32",
            "--max-iters",
            "5",
            "--eval-interval",
            "5",
            "--eval-iters",
            "1",
            "--json",
            "--no-progress",
        ]
    )
    assert rc == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["iters"] == 5 and summary["out"] == str(out)
    assert set(summary) >= {"out", "iters", "train_loss", "val_loss", "wall_s", "tokens_per_s"}
    assert summary["replicas"] == 1 and summary["strategy"] == "default"
    assert (out / "vocab.json").exists() and (out / "merges.txt").exists()


def test_bad_settings_are_train_errors(corpus, tmp_path):
    with pytest.raises(TrainError, match="batch-size"):
        train(tiny_cfg(corpus, tmp_path / "o", batch_size=0))
    assert not (tmp_path / "o").exists()
