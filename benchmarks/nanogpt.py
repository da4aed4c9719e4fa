"""Our shakespeare-cpu run against nanoGPT's, back to back, measured the same way.

    uv run python benchmarks/nanogpt.py --nanogpt /tmp/nanogpt \
        --torch-python /tmp/torchenv/bin/python

``--nanogpt`` is a checkout of karpathy/nanoGPT (train.py, model.py, config/); ``--torch-python``
a Python with PyTorch and numpy (nanoGPT's own dependencies; this project does not need them).
The script

1. prepares nanoGPT's ``data/shakespeare_char`` (train.bin, val.bin, meta.pkl) from our bundled
   Tiny Shakespeare exactly as nanoGPT's ``data/shakespeare_char/prepare.py`` does (sorted
   character vocabulary, first 90% of the characters train), and checks that our own split
   is the same text;
2. runs nanoGPT's documented CPU recipe (README: ``config/train_shakespeare_char.py
   --device=cpu --compile=False --eval_iters=20 --log_interval=1 --block_size=64
   --batch_size=12 --n_layer=4 --n_head=4 --n_embd=128 --max_iters=2000
   --lr_decay_iters=2000 --dropout=0.0``; its seed is fixed at 1337), with
   ``--always_save_checkpoint=True`` so that ckpt.pt holds the weights after 2,000 steps
   (not the one with the best 20-batch estimate), and times it;
3. evaluates that ckpt.pt over the whole validation split: every non-overlapping window of
   block_size tokens, each token predicted once -- the windows come from
   ``gpt2core.data.tiling_windows``, the function our trainer's final val loss uses;
4. runs ours, ``gpt2 train shakespeare --json`` (the shakespeare-cpu preset, seed 1337);
5. prints both whole-split val losses, both wall times and their ratio.

Wall time is the whole process (start to exit: imports, data, model, evals, checkpoints;
ours also compiles and writes a sample at the end). ms/iter is the loop only: nanoGPT's own
per-iteration times without the first step and without the steps whose time includes an
eval and a checkpoint; ours is the trainer's, which likewise leaves out the first
(compiling) step and the evals. nanoGPT's output goes to --work (a temporary directory
outside the repository unless given); nothing here writes into the repository.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

NANOGPT_RECIPE = [
    "config/train_shakespeare_char.py",
    "--device=cpu",
    "--compile=False",
    "--eval_iters=20",
    "--log_interval=1",
    "--block_size=64",
    "--batch_size=12",
    "--n_layer=4",
    "--n_head=4",
    "--n_embd=128",
    "--max_iters=2000",
    "--lr_decay_iters=2000",
    "--dropout=0.0",
]
EVAL_INTERVAL = 250  # config/train_shakespeare_char.py's, and ours
BLOCK = 64

# Runs under --torch-python with the nanoGPT checkout as the working directory.
EVAL_SCRIPT = r"""
import json, sys
import numpy as np, torch
import torch.nn.functional as F
from model import GPT, GPTConfig

ckpt_path, windows_path = sys.argv[1], sys.argv[2]
try:
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
except Exception:
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
model = GPT(GPTConfig(**ckpt["model_args"]))
state = {k.removeprefix("_orig_mod."): v for k, v in ckpt["model"].items()}
model.load_state_dict(state)
model.eval()
w = np.load(windows_path)
x_all, y_all = torch.from_numpy(w["x"]).long(), torch.from_numpy(w["y"]).long()  # (n, T)
total, count = 0.0, 0
with torch.no_grad():
    for i in range(0, len(x_all), 64):
        x, y = x_all[i : i + 64], y_all[i : i + 64]
        logits, _ = model(x, y)  # (b, T, V): with targets, nanoGPT returns every position
        ce = F.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1), reduction="sum")
        total += float(ce)
        count += y.numel()
print(json.dumps({"val_loss": total / count, "tokens": count, "iter": ckpt["iter_num"],
                  "torch": torch.__version__, "threads": torch.get_num_threads()}))
"""


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def prepare_nanogpt_data(checkout: Path) -> tuple[np.ndarray, str]:
    """nanoGPT's data/shakespeare_char/prepare.py, from our bundled corpus (no download).
    Returns nanoGPT's val ids and its val text."""
    from gpt2core.data import build_tokenizer, corpus_path, encode_corpus, read_corpus, split_ids

    src = corpus_path("shakespeare")
    with open(src) as f:  # prepare.py's open(..., 'r').read()
        data = f.read()
    chars = sorted(set(data))
    stoi = {ch: i for i, ch in enumerate(chars)}
    n = len(data)
    train_data, val_data = data[: int(n * 0.9)], data[int(n * 0.9) :]
    train_ids = np.array([stoi[c] for c in train_data], dtype=np.uint16)
    val_ids = np.array([stoi[c] for c in val_data], dtype=np.uint16)
    out = checkout / "data" / "shakespeare_char"
    out.mkdir(parents=True, exist_ok=True)
    train_ids.tofile(out / "train.bin")
    val_ids.tofile(out / "val.bin")
    meta = {"vocab_size": len(chars), "itos": dict(enumerate(chars)), "stoi": stoi}
    with open(out / "meta.pkl", "wb") as f:
        pickle.dump(meta, f)

    # our pipeline must see the same vocabulary and the same split
    text = read_corpus(("shakespeare",))
    tok = build_tokenizer("char", text)
    ours_train, ours_val = split_ids(encode_corpus(tok, text), BLOCK)
    assert tok.chars == chars, "our character vocabulary differs from nanoGPT's"
    assert np.array_equal(ours_train, train_ids) and np.array_equal(ours_val, val_ids), (
        "our train/val split differs from nanoGPT's"
    )
    print(
        f"data: {len(chars)} characters, {len(train_ids):,} train / {len(val_ids):,} val "
        f"(nanoGPT's prepare.py and ours agree)",
        flush=True,
    )
    return val_ids.astype(np.int32), val_data


def timed_lines(cmd: list[str], cwd: Path | None, log: Path, env=None):
    """Run cmd, yield (seconds since start, line) as lines arrive; write them to log."""
    t0 = time.perf_counter()
    with (
        open(log, "w") as f,
        subprocess.Popen(
            cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        ) as p,
    ):
        for line in p.stdout:
            f.write(line)
            yield time.perf_counter() - t0, line.rstrip("\n")
        rc = p.wait()
    wall = time.perf_counter() - t0
    if rc != 0:
        sys.exit(f"{cmd[0]} ... exited with {rc}; see {log}")
    yield wall, None


ITER = re.compile(r"^iter (\d+): loss ([\d.]+), time ([\d.]+)ms")
STEP = re.compile(r"^step (\d+): train loss ([\d.]+), val loss ([\d.]+)")


def run_nanogpt(checkout: Path, python: str, work: Path, max_iters: int) -> dict:
    out_dir = work / "out-nanogpt"
    shutil.rmtree(out_dir, ignore_errors=True)
    recipe = [a for a in NANOGPT_RECIPE if not a.startswith(("--max_iters", "--lr_decay_iters"))]
    cmd = [
        python,
        "-u",
        "train.py",
        *recipe,
        f"--max_iters={max_iters}",
        f"--lr_decay_iters={max_iters}",
        "--always_save_checkpoint=True",
        f"--out_dir={out_dir}",
    ]
    print(f"nanoGPT: load {loadavg()}; {' '.join(cmd[2:])}", flush=True)
    dts: dict[int, float] = {}
    estimates: dict[int, float] = {}
    wall = 0.0
    for t, line in timed_lines(cmd, checkout, work / "nanogpt.log"):
        if line is None:
            wall = t
        elif m := ITER.match(line):
            dts[int(m[1])] = float(m[3])
        elif m := STEP.match(line):
            estimates[int(m[1])] = float(m[3])
            print(f"  {line}", flush=True)
    # iter 0 includes the first eval; iter k*EVAL_INTERVAL includes an eval and a checkpoint
    loop = [dt for i, dt in dts.items() if i > 0 and i % EVAL_INTERVAL]
    ms = float(np.mean(loop))
    evals = sum(dts[i] - ms for i in dts if i % EVAL_INTERVAL == 0) / 1000
    return {
        "wall_s": wall,
        "ms_per_iter": ms,
        "ms_per_iter_median": float(np.median(loop)),
        "steps": len(dts),
        "eval_and_save_s": evals,
        "val_estimate": estimates.get(max_iters),
        "ckpt": out_dir / "ckpt.pt",
    }


def eval_nanogpt(checkout: Path, python: str, work: Path, val_ids: np.ndarray) -> dict:
    from gpt2core.data import tiling_windows

    x, y = tiling_windows(val_ids, BLOCK)  # (n, T), (n, T): what our trainer's eval uses
    windows = work / "val_windows.npz"
    np.savez(windows, x=x, y=y)
    ckpt = work / "out-nanogpt" / "ckpt.pt"
    r = subprocess.run(
        [python, "-c", EVAL_SCRIPT, str(ckpt), str(windows)],
        cwd=checkout,
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        sys.exit(f"evaluating {ckpt} failed:\n{r.stderr}")
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["tokens"] == x.size
    return got


def run_ours(work: Path, max_iters: int) -> dict:
    out = work / "out-ours"
    shutil.rmtree(out, ignore_errors=True)
    gpt2 = shutil.which("gpt2", path=str(Path(sys.executable).parent)) or "gpt2"
    cmd = [gpt2, "train", "shakespeare", "--out", str(out), "--json", "--no-progress"]
    if max_iters != 2000:
        cmd += ["--max-iters", str(max_iters)]
    print(f"ours: load {loadavg()}; gpt2 {' '.join(cmd[1:])}", flush=True)
    summary, wall = None, 0.0
    for t, line in timed_lines(cmd, None, work / "ours.log"):
        if line is None:
            wall = t
        elif line.startswith("{"):
            summary = json.loads(line)
    if summary is None:
        sys.exit(f"no JSON summary from gpt2 train; see {work / 'ours.log'}")
    return {**summary, "process_wall_s": wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nanogpt", required=True, type=Path, help="a karpathy/nanoGPT checkout")
    ap.add_argument("--torch-python", required=True, help="a python with torch and numpy")
    ap.add_argument("--work", type=Path, default=None, help="logs and checkpoints (default: tmp)")
    ap.add_argument("--max-iters", type=int, default=2000)
    ap.add_argument("--order", choices=["nanogpt-first", "ours-first"], default="nanogpt-first")
    args = ap.parse_args()

    work = args.work or Path(tempfile.mkdtemp(prefix="nanogpt-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
        f"work dir {work}",
        flush=True,
    )
    val_ids, _ = prepare_nanogpt_data(args.nanogpt)

    def nano():
        r = run_nanogpt(args.nanogpt, args.torch_python, work, args.max_iters)
        r.update(eval_nanogpt(args.nanogpt, args.torch_python, work, val_ids))
        return r

    if args.order == "nanogpt-first":
        n = nano()
        o = run_ours(work, args.max_iters)
    else:
        o = run_ours(work, args.max_iters)
        n = nano()

    print()
    print(f"torch {n['torch']} ({n['threads']} threads); load after: {loadavg()}")
    print("| run | val loss (whole split) | wall s (process) | ms/iter (loop) |")
    print("|---|---:|---:|---:|")
    print(
        f"| nanoGPT | {n['val_loss']:.4f} | {n['wall_s']:.1f} | {n['ms_per_iter']:.1f} |"
        f"  (20-batch estimate at iter {n['iter']}: {n['val_estimate']}; "
        f"median {n['ms_per_iter_median']:.1f} ms; "
        f"evals+checkpoints ~{n['eval_and_save_s']:.1f} s; "
        f"{n['tokens']:,} val tokens)"
    )
    print(
        f"| ours | {o['val_loss']:.4f} | {o['process_wall_s']:.1f} | {o['ms_per_iter']:.1f} |"
        f"  (trainer's own wall {o['wall_s']:.1f} s)"
    )
    ratio = o["process_wall_s"] / n["wall_s"]
    dv = o["val_loss"] - n["val_loss"]
    print(
        f"ours/nanoGPT: wall {ratio:.2f}x (goal <= 0.85x: {'met' if ratio <= 0.85 else 'missed'}), "
        f"ms/iter {o['ms_per_iter'] / n['ms_per_iter']:.2f}x, val loss {dv:+.4f} "
        f"(goal <= +0.01: {'met' if dv <= 0.01 else 'missed'})"
    )


if __name__ == "__main__":
    main()
