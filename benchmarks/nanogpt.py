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

Before any run it writes the bytecode of both Pythons' installed packages (``compileall``),
so neither process compiles its libraries' sources at start (see ``precompile``).

``--seeds 1337,1,2`` repeats steps 2-4 for each seed (one run at a time, in the order given
and in --order within a seed) and then prints, per seed, both whole-split val losses and
their difference, and the means over the seeds. nanoGPT's train.py fixes its seed
(``torch.manual_seed(1337 + seed_offset)``), so for this the script writes a copy of it into
--work that reads the seed from the environment variable NANOGPT_SEED (1337 when unset:
otherwise the copy is identical) and runs that copy with the checkout as the working
directory and on PYTHONPATH; the checkout's own train.py is not touched. Every nanoGPT run,
1337 included, goes through the copy when --seeds is given. Ours gets ``--seed S``.

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


SEED_LINE = "torch.manual_seed(1337 + seed_offset)"


def seeded_train_py(checkout: Path, work: Path) -> Path:
    """A copy of nanoGPT's train.py, in work, whose seed is $NANOGPT_SEED (default 1337)."""
    src = (checkout / "train.py").read_text()
    assert src.count(SEED_LINE) == 1, f"{checkout / 'train.py'}: expected one {SEED_LINE!r}"
    dst = work / "train_seeded.py"
    seeded = "torch.manual_seed(int(os.environ.get('NANOGPT_SEED', '1337')) + seed_offset)"
    dst.write_text(src.replace(SEED_LINE, seeded))
    return dst


def run_nanogpt(
    checkout: Path, python: str, work: Path, max_iters: int, seed: int | None = None
) -> dict:
    out_dir = work / "out-nanogpt"
    shutil.rmtree(out_dir, ignore_errors=True)
    recipe = [a for a in NANOGPT_RECIPE if not a.startswith(("--max_iters", "--lr_decay_iters"))]
    env = None
    train_py = "train.py"
    if seed is not None:
        train_py = str(seeded_train_py(checkout, work))
        env = {
            **os.environ,
            "NANOGPT_SEED": str(seed),
            "PYTHONPATH": os.pathsep.join(
                filter(None, [str(checkout.resolve()), os.environ.get("PYTHONPATH")])
            ),
        }
    cmd = [
        python,
        "-u",
        train_py,
        *recipe,
        f"--max_iters={max_iters}",
        f"--lr_decay_iters={max_iters}",
        "--always_save_checkpoint=True",
        f"--out_dir={out_dir}",
    ]
    tag = "" if seed is None else f" seed {seed} (NANOGPT_SEED)"
    print(f"nanoGPT{tag}: load {loadavg()}; {' '.join(cmd[2:])}", flush=True)
    load_before = loadavg()
    dts: dict[int, float] = {}
    estimates: dict[int, float] = {}
    wall = 0.0
    log = work / ("nanogpt.log" if seed is None else f"nanogpt-seed{seed}.log")
    for t, line in timed_lines(cmd, checkout, log, env=env):
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
        "load_before": load_before,
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


def precompile(python: str, label: str) -> None:
    """Write the bytecode of ``python``'s installed packages, as a first import would on
    most machines. Where PYTHONDONTWRITEBYTECODE is set (this VM) nothing is cached, and
    every process compiles its libraries' sources again: 4.6 s of TensorFlow's import,
    seconds of PyTorch's. Both sides get the same treatment (idempotent: quick once done)."""
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True)
    site = site.stdout.strip()
    t = time.perf_counter()
    subprocess.run(
        [python, "-m", "compileall", "-q", "-j", "0", site],
        check=False,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    print(f"bytecode for {label} ({site}): {time.perf_counter() - t:.1f}s", flush=True)


def run_ours(work: Path, max_iters: int, seed: int | None = None) -> dict:
    out = work / "out-ours"
    shutil.rmtree(out, ignore_errors=True)
    gpt2 = shutil.which("gpt2", path=str(Path(sys.executable).parent)) or "gpt2"
    cmd = [gpt2, "train", "shakespeare", "--out", str(out), "--json", "--no-progress"]
    if max_iters != 2000:
        cmd += ["--max-iters", str(max_iters)]
    if seed is not None:
        cmd += ["--seed", str(seed)]
    load_before = loadavg()
    print(f"ours: load {load_before}; gpt2 {' '.join(cmd[1:])}", flush=True)
    summary, wall = None, 0.0
    log = work / ("ours.log" if seed is None else f"ours-seed{seed}.log")
    for t, line in timed_lines(cmd, None, log):
        if line is None:
            wall = t
        elif line.startswith("{"):
            summary = json.loads(line)
    if summary is None:
        sys.exit(f"no JSON summary from gpt2 train; see {log}")
    return {**summary, "process_wall_s": wall, "load_before": load_before}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nanogpt", required=True, type=Path, help="a karpathy/nanoGPT checkout")
    ap.add_argument("--torch-python", required=True, help="a python with torch and numpy")
    ap.add_argument("--work", type=Path, default=None, help="logs and checkpoints (default: tmp)")
    ap.add_argument("--max-iters", type=int, default=2000)
    ap.add_argument("--order", choices=["nanogpt-first", "ours-first"], default="nanogpt-first")
    ap.add_argument(
        "--seeds",
        default=None,
        help="comma-separated seeds, e.g. 1337,1,2: one nanoGPT run and one of ours per seed",
    )
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else None

    work = args.work or Path(tempfile.mkdtemp(prefix="nanogpt-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
        f"work dir {work}",
        flush=True,
    )
    val_ids, _ = prepare_nanogpt_data(args.nanogpt)
    precompile(args.torch_python, "nanoGPT")
    precompile(sys.executable, "ours")

    def nano(seed=None):
        r = run_nanogpt(args.nanogpt, args.torch_python, work, args.max_iters, seed)
        r.update(eval_nanogpt(args.nanogpt, args.torch_python, work, val_ids))
        return r

    if seeds:
        print(f"load at start: {loadavg()}", flush=True)
        rows = []
        for seed in seeds:
            if args.order == "nanogpt-first":
                n = nano(seed)
                o = run_ours(work, args.max_iters, seed)
            else:
                o = run_ours(work, args.max_iters, seed)
                n = nano(seed)
            rows.append((seed, n, o))
            print(
                f"seed {seed}: nanoGPT {n['val_loss']:.4f}, ours {o['val_loss']:.4f}, "
                f"ours - nanoGPT {o['val_loss'] - n['val_loss']:+.4f}",
                flush=True,
            )
        report_seeds(rows, loadavg())
        return

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


def report_seeds(rows: list, load_after: str) -> None:
    """Per-seed whole-split val losses of both, their difference, and the means."""
    n0 = rows[0][1]
    print()
    print(f"torch {n0['torch']} ({n0['threads']} threads); load after: {load_after}")
    print(
        "| seed | nanoGPT val loss | ours val loss | ours - nanoGPT | nanoGPT 20-batch estimate "
        "| nanoGPT wall s (ms/iter mean, median; load at start) "
        "| ours wall s (ms/iter; load at start) |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for seed, n, o in rows:
        print(
            f"| {seed} | {n['val_loss']:.4f} | {o['val_loss']:.4f} "
            f"| {o['val_loss'] - n['val_loss']:+.4f} | {n['val_estimate']} "
            f"| {n['wall_s']:.1f} ({n['ms_per_iter']:.1f}, {n['ms_per_iter_median']:.1f}; "
            f"{n['load_before']}) "
            f"| {o['process_wall_s']:.1f} ({o['ms_per_iter']:.1f}; {o['load_before']}) |"
        )
    nv = [n["val_loss"] for _, n, _ in rows]
    ov = [o["val_loss"] for _, _, o in rows]
    dv = [b - a for a, b in zip(nv, ov, strict=True)]
    mn, mo, md = float(np.mean(nv)), float(np.mean(ov)), float(np.mean(dv))

    def sd(v: list[float]) -> float:
        return float(np.std(v, ddof=1)) if len(v) > 1 else float("nan")

    print(f"| mean ({len(rows)} seeds) | {mn:.4f} | {mo:.4f} | {md:+.4f} | | | |")
    print(
        f"sample std over seeds: nanoGPT {sd(nv):.4f}, ours {sd(ov):.4f}, difference {sd(dv):.4f}"
    )
    wn = float(np.mean([n["wall_s"] for _, n, _ in rows]))
    wo = float(np.mean([o["process_wall_s"] for _, _, o in rows]))
    print(
        f"mean over seeds: ours - nanoGPT val loss {md:+.4f} "
        f"(goal <= +0.01: {'met' if md <= 0.01 else 'missed'}); "
        f"mean wall ours/nanoGPT {wo / wn:.2f}x"
    )


if __name__ == "__main__":
    main()
