"""`gpt2 generate` with a bad checkpoint: one line on stderr, exit 2, never a traceback;
and the command line prints no TensorFlow/absl native log lines (they go to native.log)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from repl.cli import main

ROOT = Path(__file__).resolve().parents[2]
# What TensorFlow's C++ logging (absl) and its start-up chatter look like on fd 2.
NATIVE_LOG = re.compile(
    r"^[IWEF]\d{4} |absl::|oneDNN|cpu_feature_guard|cudart_stub|cuda_|"
    r"All log messages before|This TensorFlow binary|rebuild TensorFlow",
    re.M,
)


def _bad(kind: str, src: Path, tmp_path: Path) -> Path:
    d = tmp_path / kind
    shutil.copytree(src, d)
    cfg_path = d / "config.json"
    cfg = json.loads(cfg_path.read_text())
    weights = d / ("model.safetensors" if (d / "model.safetensors").exists() else "tf_model.h5")
    if kind == "truncated":
        data = weights.read_bytes()
        weights.write_bytes(data[: len(data) // 2])
    elif kind == "string_size":
        cfg["n_embd"] = "32"
    elif kind == "huge":
        cfg["n_positions"] = 1_000_000_000
    elif kind == "four_layers":
        cfg["n_layer"] = 4
    elif kind == "nan":
        from safetensors.numpy import load_file, save_file

        tensors = load_file(str(weights))
        tensors["wte.weight"][7, 0] = np.nan
        save_file(tensors, str(weights), metadata={"format": "pt"})
    cfg_path.write_text(json.dumps(cfg))
    return d


CASES = [
    ("pretrained", "truncated", "h5", "tf_model.h5: truncated"),
    ("pretrained", "truncated", "safetensors", "model.safetensors: truncated"),
    ("scratch", "string_size", "safetensors", "n_embd must be an integer, got '32'"),
    ("pretrained", "string_size", "h5", "n_embd must be an integer, got '32'"),
    ("pretrained", "huge", "safetensors", "n_positions is 1000000000, above"),
    ("pretrained", "four_layers", "h5", "config.json says n_layer=4 but the file holds 2"),
    ("pretrained", "four_layers", "safetensors", "config.json says n_layer=4"),
    ("scratch", "nan", "safetensors", "tensor wte.weight holds NaN"),
    ("pretrained", "nan", "safetensors", "tensor wte.weight holds NaN"),
]


@pytest.mark.parametrize("kind, bad, fmt, match", CASES)
def test_generate_with_a_bad_checkpoint_is_one_line(
    kind, bad, fmt, match, tmp_path, capsys, scratch_tiny_dir, hf_tiny_dir
):
    d = _bad(bad, scratch_tiny_dir if fmt == "safetensors" else hf_tiny_dir, tmp_path)
    assert main(["generate", "--model", f"{kind}:{d}", "--max-new-tokens", "2", "hi"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"gpt2: {d}") and err.count("\n") == 1, err
    assert match in err


def _run(args: list[str], home: Path, verbose: bool = False) -> subprocess.CompletedProcess:
    env = {**os.environ, "GPT2_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # as a user runs it: TF at its default verbosity
    if verbose:  # TF logs at INFO too (XLA compiles after the import log): there is output
        env["TF_CPP_MIN_LOG_LEVEL"] = "0"
    return subprocess.run(
        [sys.executable, "-m", "repl.cli", *args],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
        env=env,
    )


def test_generate_prints_no_native_log_lines(tmp_path, scratch_tiny_dir, hf_tiny_dir):
    """A real process: TensorFlow and transformers import, build, run; stderr stays clean
    and the lines are in native.log instead. A bad checkpoint's one-line error still
    reaches the real stderr."""
    args = ["generate", "--model", f"scratch:{scratch_tiny_dir}", "--max-new-tokens", "3", "hi"]
    ok = _run(args, tmp_path, verbose=True)
    assert ok.returncode == 0, ok.stderr
    assert "generated_text:" in ok.stdout
    assert NATIVE_LOG.search(ok.stderr) is None, ok.stderr
    assert ok.stderr.strip() == ""
    # TensorFlow did log (so this test can fail): into the file, not onto the terminal
    assert NATIVE_LOG.search((tmp_path / "native.log").read_text(errors="replace"))

    bad = _bad("four_layers", hf_tiny_dir, tmp_path)
    failed = _run(["generate", "--model", f"pretrained:{bad}", "hi"], tmp_path)
    assert failed.returncode == 2
    assert failed.stderr.startswith("gpt2: ") and failed.stderr.count("\n") == 1, failed.stderr
    assert NATIVE_LOG.search(failed.stderr) is None
