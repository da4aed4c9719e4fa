"""`gpt2 train`'s front end: what it prints is safe for a terminal, and the core stays
free of it."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

import repl.train_cli as train_cli
from gpt2core.train import TrainResult
from repl.cli import main
from repl.terminal import is_safe

ROOT = Path(__file__).resolve().parents[2]
DANGEROUS = "\x1b[2J\x1b]52;c;aGk=\x07\x9b31m\u202eevil\r\x08\x7f"


def fake_train(sample: str, interrupted: bool = False):
    def train(cfg, resume=False, on_event=None, should_stop=None, eval_samples=True, given=()):
        return TrainResult(
            out=cfg.out,
            iters=7,
            train_loss=1.5,
            val_loss=float("nan") if interrupted else 1.25,
            wall_s=1.0,
            tokens_per_s=10.0,
            ms_per_iter=3.0,
            interrupted=interrupted,
            sample=sample,
        )

    return train


@pytest.mark.parametrize("interrupted", [False, True])
def test_the_end_of_run_sample_and_paths_reach_the_terminal_neutralised(
    tmp_path, capsys, monkeypatch, interrupted
):
    monkeypatch.setattr(train_cli, "train", fake_train(f"ROMEO:{DANGEROUS}", interrupted))
    out = tmp_path / f"run{DANGEROUS}"
    rc = main(["train", "corpus.txt", "--out", str(out), "--no-progress", "--json"])
    cap = capsys.readouterr()
    assert rc == (130 if interrupted else 0)
    for stream in (cap.out, cap.err):
        raw = sorted({c for c in stream if not is_safe(c)})
        assert raw == [], (raw, stream)
    if not interrupted:
        assert "ROMEO:\\x1b[2J" in cap.err  # shown, not acted on
    summary = json.loads(cap.out.strip().splitlines()[-1])
    assert summary["out"] == str(out) and summary["iters"] == 7
    assert summary["val_loss"] is None if interrupted else summary["val_loss"] == 1.25


def test_a_resume_keeps_its_length_unless_told():
    from repl.cli import build_parser

    args = build_parser().parse_args(["train", "c.txt", "--out", "d", "--resume"])
    assert train_cli.config_from_args(args).max_iters == 1  # max(1, saved) = saved
    args = build_parser().parse_args(["train", "c.txt", "--out", "d", "--max-iters", "500"])
    assert train_cli.config_from_args(args).max_iters == 500


def test_gpt2core_imports_no_front_end():
    code = (
        "import sys, gpt2core.train, gpt2core.weights, gpt2core.fsutil, gpt2core.tokenizer, "
        "gpt2core.data, gpt2core.distribute, gpt2core.rundir, gpt2core.train_config, "
        "gpt2core.train_events; "
        "print([m for m in ('argparse', 'rich', 'repl', 'textual', 'prompt_toolkit') "
        "if m in sys.modules])"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stderr
