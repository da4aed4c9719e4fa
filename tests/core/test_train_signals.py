"""`gpt2 train` as a real process under real signals: SIGTERM and a double Ctrl-C save
`last/` and resume; SIGKILL at random instants (many of them inside saves) always leaves
a directory that loads and resumes.

Each process pays TensorFlow's import and XLA compiles (10-20 s on a loaded 2-core
machine), so the fast suite runs two processes and the SIGKILL storm is `slow`
(GPT2_KILLS=40 for a longer one). Every instant *inside* a save is also covered,
deterministically and in one process, by test_train_safety's crash-at-every-step test.
"""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import SHAKESPEARE
from tests.core.test_train_safety import _newest_state, strict_json

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    p = tmp_path_factory.mktemp("corpus") / "small.txt"
    p.write_text(SHAKESPEARE.read_text(encoding="utf-8")[:30_000], encoding="utf-8")
    return p


def launch(corpus, out: Path, *flags) -> subprocess.Popen:
    log = open(out.parent / f"{out.name}.{time.monotonic_ns()}.log", "w+")  # noqa: SIM115
    cmd = [sys.executable, "-m", "repl.cli", "train", str(corpus), "--out", str(out)]
    cmd += ["--preset", "tiny", "--block-size", "32", "--batch-size", "4", "--eval-iters", "1"]
    proc = subprocess.Popen(
        [*cmd, *map(str, flags), "--no-progress"],
        cwd=ROOT,
        env=ENV,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    proc.log = log
    return proc


def output(proc) -> str:
    proc.log.seek(0)
    return proc.log.read()


def wait_until(pred, proc, timeout=240.0) -> None:
    end = time.monotonic() + timeout
    while not pred():
        if proc.poll() is not None:
            pytest.fail(f"the run ended (rc {proc.returncode}) too soon:\n{output(proc)[-2000:]}")
        if time.monotonic() > end:
            proc.kill()
            pytest.fail(f"timed out:\n{output(proc)[-2000:]}")
        time.sleep(0.01)


def train_iters(out: Path) -> list[int]:
    try:
        lines = (out / "metrics.jsonl").read_text().splitlines()
    except FileNotFoundError:
        return []
    iters = []
    for line in lines:
        try:
            r = json.loads(line)
        except ValueError:
            continue  # the line being written right now
        if r.get("kind") == "train":
            iters.append(r["iter"])
    return iters


def saved_step(out: Path) -> int | None:
    try:
        return json.loads((out / "last" / "train_run.json").read_text())["step"]
    except (FileNotFoundError, ValueError):
        return None


def assert_loads(out: Path) -> None:
    """What `gpt2 chat --model scratch:DIR` (or DIR/last) sees, with no repair first."""
    from gpt2core.weights import load_model

    if (out / "config.json").exists():
        load_model(out)
    if (out / "last").exists():
        load_model(out / "last")


def test_sigterm_and_two_quick_sigints_save_last_and_resume(corpus, tmp_path):
    out = tmp_path / "run"
    # evals (and so saves) only at step 0: whatever last/ holds later was saved on a signal
    flags = ["--max-iters", "60", "--eval-interval", "1000"]
    proc = launch(corpus, out, *flags)
    wait_until(lambda: max(train_iters(out), default=0) >= 10, proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(120) == 128 + signal.SIGTERM, output(proc)
    text = output(proc)
    step = saved_step(out)
    assert step is not None and step >= 10 and f"SIGTERM: stopped at iter {step}" in text, text
    # the weights it stopped with, not out/'s best evaluation (here the untrained step 0)
    assert f"chat with it: gpt2 chat --model scratch:{out}/last" in text, text
    assert "Traceback" not in text
    assert_loads(out)

    proc = launch(corpus, out, *flags, "--resume")
    wait_until(lambda: max(train_iters(out), default=0) >= 20, proc)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.05)
    proc.send_signal(signal.SIGINT)  # a second Ctrl-C must not abort the save
    assert proc.wait(120) == 128 + signal.SIGINT, output(proc)
    text = output(proc)
    step2 = saved_step(out)
    assert step2 is not None and step2 >= 20 and f"SIGINT: stopped at iter {step2}" in text
    assert "Traceback" not in text
    assert_loads(out)

    records = [strict_json(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    # the resumed run took up exactly where the first stopped: each logged step once
    assert [r["iter"] for r in records if r["kind"] == "train"] == list(range(10, step2 + 1, 10))
    from gpt2core.train import TrainConfig, prepare

    cfg = TrainConfig(corpus=(str(corpus),), out=str(out), max_iters=1)
    assert prepare(cfg, resume=True).start == step2  # and a third run would go on from here


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_a_stop_signal_during_line_mode_train_saves_where_it_stopped(corpus, tmp_path, sig):
    """`:train` in line mode under a SIGTERM or SIGHUP: the run saves last/ at the step it
    stopped, as `gpt2 train` does, and the session ends with 128 + the signal. It died at
    once before, losing every step since the last eval (a hostile probe's find)."""
    out = tmp_path / "run"
    log = open(tmp_path / "chat.log", "w+")  # noqa: SIM115
    line = (
        f":train {corpus} --out {out} --preset tiny --block-size 32 --batch-size 4 "
        "--eval-iters 1 --max-iters 100000 --eval-interval 100000\nnever runs\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "repl.cli", "chat", "--plain", "--model", "scratch"],
        cwd=ROOT, env=ENV, stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    proc.log = log
    proc.stdin.write(line.encode())
    proc.stdin.flush()
    wait_until(lambda: max(train_iters(out), default=0) >= 10, proc)
    proc.send_signal(sig)
    assert proc.wait(120) == 128 + sig, output(proc)
    text = output(proc)
    step = saved_step(out)
    name = signal.Signals(sig).name
    assert step is not None and step >= 10 and f"{name}: stopped at iter {step}" in text, text
    assert "Traceback" not in text and "[scratch]" not in text  # the next line did not run
    assert_loads(out)


@pytest.mark.slow
def test_sigkill_at_random_instants_always_loads_and_resumes(corpus, tmp_path):
    kills = int(os.environ.get("GPT2_KILLS", "6"))  # 6 keeps the suite under 15 min
    rng = random.Random(int(os.environ.get("GPT2_KILL_SEED", "0")))
    out = tmp_path / "run"
    # a save at every step; long enough that the kills never meet a finished run (a
    # start from bytecode takes ~3 s, so a run trains for most of a 15 s wait)
    flags = ["--max-iters", "1000", "--eval-interval", "1"]
    mid_save = restarts = 0
    for k in range(kills):
        before = _newest_state(out) if out.exists() else None
        proc = launch(corpus, out, *flags, *(["--resume"] if before is not None else []))
        restarts += before is None
        if k % 4 == 0:  # anywhere from the start: imports, the first save, restarts
            time.sleep(rng.uniform(0, 8))
        else:  # once it has saved something new: mostly inside a save
            floor = -1 if before is None else before
            wait_until(lambda f=floor: (saved_step(out) or -1) > f, proc)
            time.sleep(rng.uniform(0, 0.5))
        if proc.poll() is not None:
            pytest.fail(f"the run ended before kill {k}:\n{output(proc)[-2000:]}")
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        if out.exists():
            debris = [p for p in out.rglob("*") if p.name.endswith(".tmp") or ".old-" in p.name]
            mid_save += bool(debris)
            assert_loads(out)
            newest = _newest_state(out)
            assert newest is None or before is None or newest >= before
    resumed_from = _newest_state(out)
    proc = launch(corpus, out, *flags, *(["--resume"] if resumed_from is not None else []))
    assert proc.wait(600) == 0, output(proc)
    assert saved_step(out) == 1000
    assert_loads(out)
    iters = [r["iter"] for r in map(strict_json, (out / "metrics.jsonl").read_text().splitlines())
             if r["kind"] == "train"]  # fmt: skip
    assert iters == sorted(set(iters)) and iters[-1] == 1000
    print(f"{kills} kills: {mid_save} left a save half-done, {restarts} started afresh, "
          f"the last resume went on from iter {resumed_from}")  # fmt: skip
    # How many kills land inside a save depends on the machine's timing (a busy machine
    # saves slowly, a quiet one quickly), so it is reported, not asserted: every instant
    # inside a save is covered deterministically by test_train_safety's crash-at-every-step.
