"""`gpt2 train` against absurd flags, foreign directories, full disks, NaNs and crashes
at every step of a save (in-process); real signals and SIGKILLs are in
test_train_signals.py."""

import errno
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from gpt2core import fsutil
from gpt2core import train as train_mod
from gpt2core.train import RUN_NAME, STATE_NAME, TrainConfig, prepare, train
from repl.cli import main
from repl.train_args import parse_train_args
from tests.conftest import SHAKESPEARE


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    p = tmp_path_factory.mktemp("corpus") / "small.txt"
    p.write_text(SHAKESPEARE.read_text(encoding="utf-8")[:30_000], encoding="utf-8")
    return p


def tiny_cfg(corpus, out, **kw):
    base = dict(
        corpus=(str(corpus),),
        out=str(out),
        preset="tiny",
        block_size=32,
        batch_size=4,
        max_iters=4,
        warmup_iters=1,
        eval_interval=2,
        eval_iters=1,
        log_interval=1,
    )
    base.update(kw)
    return TrainConfig(**base)


# tiny_cfg's settings as `gpt2 train` flags
TINY_ARGV = ["--preset", "tiny", "--block-size", "32", "--batch-size", "4", "--max-iters", "4",
             "--eval-interval", "2", "--eval-iters", "1"]  # fmt: skip


def cli(argv, capsys):
    rc = main(["train", *[str(a) for a in argv], "--no-progress"])
    cap = capsys.readouterr()
    return rc, cap.err


def strict_json(line: str):
    def refuse(name):
        raise ValueError(f"{name} is not JSON")

    return json.loads(line, parse_constant=refuse)


def tree(directory: Path) -> dict:
    return {
        str(p.relative_to(directory)): p.read_bytes() if p.is_file() else None
        for p in sorted(directory.rglob("*"))
    }


# -- section 7: absurd settings ------------------------------------------------------------

BAD_FLAGS = [
    (["--lr", "inf"], "--lr must be a finite number"),
    (["--lr", "nan"], "--lr must be a finite number"),
    (["--lr", "-1"], "--lr > 0"),
    (["--min-lr", "inf"], "--min-lr must be a finite number"),
    (["--weight-decay", "inf"], "--weight-decay must be a finite number"),
    (["--weight-decay", "-0.1"], "--weight-decay must be >= 0"),
    (["--grad-clip", "nan"], "--grad-clip must be a finite number"),
    (["--grad-clip=-inf"], "--grad-clip must be a finite number"),
    (["--dropout", "1"], "--dropout must be in [0, 1)"),
    (["--dropout", "nan"], "--dropout must be a finite number"),
    (["--seed", "-1"], "--seed must be between 0 and"),
    (["--seed", str(2**40)], "--seed must be between 0 and"),
    (["--batch-size", "0"], "--batch-size must be between 1 and"),
    (["--batch-size", "100000"], "needs about"),
    (["--block-size", "100000"], "needs about"),
    (["--n-layer", "100000"], "above this tool's limit"),
    (["--n-embd", "1000000"], "above this tool's limit"),
    (["--max-iters", str(2**31)], "--max-iters must be between 1 and"),
    (["--eval-interval", "0"], "--eval-interval must be between 1 and"),
    (["--eval-iters", "-3"], "--eval-iters must be between 1 and"),
    (["--warmup-iters", "-1"], "--warmup-iters must be between 0 and"),
    (["--n-head", "0"], "--n-head must be between 1 and"),
    # the tokenizers library aborted the process (SIGABRT) allocating 70 GB for this one
    (["--tokenizer", "bpe:999999999"], "--tokenizer bpe:N needs N between 258 and"),
    (["--tokenizer", "bpe:10"], "--tokenizer bpe:N needs N between 258 and"),
]


@pytest.mark.parametrize("flags,needle", BAD_FLAGS, ids=[" ".join(f) for f, _ in BAD_FLAGS])
def test_absurd_flags_are_one_line_exit_2_and_write_nothing(
    corpus, tmp_path, capsys, monkeypatch, flags, needle
):
    # a machine with 8 GiB, so the memory refusals do not depend on where the test runs
    monkeypatch.setattr(train_mod, "machine_memory", lambda: 8 * 2**30)
    out = tmp_path / "out"
    rc, err = cli([corpus, "--out", out, "--preset", "tiny", *flags], capsys)
    assert rc == 2, err
    assert needle in err and len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    assert not out.exists()


def test_the_memory_estimate_grows_with_what_a_step_holds():
    from gpt2core.config import PRESETS

    small = PRESETS["shakespeare-cpu"].replace(vocab_size=65)
    need = train_mod.memory_needed(small, 12)
    assert 10 * 2**20 < need < 1 * 2**30  # nanoGPT's CPU recipe: tens of MB, not GB
    assert train_mod.memory_needed(small, 24) > need
    gpt2 = PRESETS["gpt2"]
    # 124M parameters x (weights, grads, two AdamW moments) x 4 bytes ~ 2 GB, plus logits
    assert train_mod.memory_needed(gpt2, 1) > 124e6 * 16


def test_a_diverging_run_stops_in_one_line_keeps_its_last_good_checkpoint(corpus, tmp_path, capsys):
    """A weight decay of 1e30 is finite but blows the weights up within a few steps."""
    from gpt2core.weights import load_model

    out = tmp_path / "run"
    rc, err = cli(
        [corpus, "--out", out, "--preset", "tiny", "--block-size", "32", "--batch-size", "4",
         "--max-iters", "50", "--eval-interval", "1", "--eval-iters", "1",
         "--weight-decay", "1e30"],
        capsys,
    )  # fmt: skip
    assert rc == 2 and "diverged" in err and len(err.strip().splitlines()) == 1, err
    lines = (out / "metrics.jsonl").read_text().splitlines()
    records = [strict_json(line) for line in lines]  # valid JSON: no NaN, no Infinity
    assert records and all(
        np.isfinite(v) for r in records for v in r.values() if isinstance(v, float)
    )
    model, _ = load_model(out / "last")
    assert all(np.isfinite(v.numpy()).all() for v in model.weights)
    load_model(out)
    step = json.loads((out / "last" / RUN_NAME).read_text())["step"]
    assert 0 <= step < 50


# -- section 5: files that are not ours -------------------------------------------------------


def test_a_directory_of_someone_elses_files_is_refused_untouched(corpus, tmp_path, capsys):
    out = tmp_path / "theirs"
    out.mkdir()
    (out / "model.safetensors").write_bytes(b"their weights")
    (out / "char_vocab.json").write_text('{"theirs": true}')
    (out / "metrics.jsonl").write_text('{"their": 1}\n')
    before = tree(out)
    for extra in ([], ["--resume"]):
        rc, err = cli([corpus, "--out", out, "--preset", "tiny", *extra], capsys)
        assert rc == 2 and len(err.strip().splitlines()) == 1, err
        assert "not a gpt2 run directory" in err or "nothing to resume" in err
        assert tree(out) == before


@pytest.mark.parametrize("where", ["/", "file"])
def test_out_root_or_a_file_is_refused(corpus, tmp_path, capsys, where):
    out = "/" if where == "/" else tmp_path / "a-file"
    if where == "file":
        out.write_text("x")
    rc, err = cli([corpus, "--out", out, "--preset", "tiny"], capsys)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "--out" in err, err


# -- section 4: crash safety in process -------------------------------------------------------


def test_a_run_killed_before_its_first_resumable_state_restarts(corpus, tmp_path, capsys):
    """What a kill during the first save leaves (marker, weights without config or a
    config without weights, metrics, no last/) is ours: a fresh run starts over."""
    from gpt2core.weights import load_model

    out = tmp_path / "run"
    out.mkdir()
    (out / train_mod.RUN_MARKER).write_text("{}")
    (out / "config.json").write_text('{"n_layer": 9}')  # no weights beside it
    (out / "metrics.jsonl").write_text('{"iter": 0, "kind": "eval", "val_l')  # torn line
    rc, err = cli([corpus, "--out", out, "--resume"], capsys)
    assert rc == 2 and "nothing to resume" in err
    old_umask = os.umask(0o022)
    try:
        result = train(tiny_cfg(corpus, out, max_iters=2, eval_interval=1), sample=False)
    finally:
        os.umask(old_umask)
    assert result.iters == 2 and not result.interrupted
    load_model(out), load_model(out / "last")
    # a shared checkpoint is readable by others (it was 0600 files in a 0700 last/)
    modes = {str(p.relative_to(out)): p.stat().st_mode & 0o777 for p in out.rglob("*")}
    assert modes.pop("last") == 0o755
    assert set(modes.values()) == {0o644}, modes
    records = [strict_json(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert records[0]["iter"] == 0 and records[0]["kind"] == "eval"  # a fresh log


def test_a_full_disk_is_one_line_and_the_previous_checkpoint_stays(
    corpus, tmp_path, capsys, monkeypatch
):
    from gpt2core.weights import load_model

    out = tmp_path / "run"
    real = fsutil._fsync_path

    def fsync(path, directory=False):
        if (out / "last").is_dir():  # the disk fills up after the first complete save
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(path, directory)

    monkeypatch.setattr(fsutil, "_fsync_path", fsync)
    argv = [corpus, "--out", out, *TINY_ARGV]
    rc, err = cli(argv, capsys)
    assert rc == 2 and "No space left on device" in err and "intact" in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert json.loads((out / "last" / RUN_NAME).read_text())["step"] == 0
    load_model(out), load_model(out / "last")
    leftovers = [p for p in out.rglob("*") if p.name.endswith(".tmp") or ".old-" in p.name]
    assert leftovers == []
    monkeypatch.undo()
    result = train(tiny_cfg(corpus, out, max_iters=4), resume=True, sample=False)
    assert result.iters == 4 and json.loads((out / "last" / RUN_NAME).read_text())["step"] == 4


def test_a_disk_full_from_the_start_says_nothing_was_saved_and_the_run_restarts(
    corpus, tmp_path, capsys, monkeypatch
):
    """It said "the previous checkpoint ... is intact" when there had never been one."""
    out = tmp_path / "run"

    def full(path, directory=False):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(fsutil, "_fsync_path", full)
    argv = [corpus, "--out", out, *TINY_ARGV]
    rc, err = cli(argv, capsys)
    assert rc == 2 and "No space left on device" in err, err
    assert "no checkpoint was saved yet" in err and "intact" not in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    monkeypatch.undo()
    rc, err = cli(argv, capsys)  # the same command, once there is room: it starts over
    assert rc == 0 and json.loads((out / "last" / RUN_NAME).read_text())["step"] == 4, err


def test_a_full_disk_never_truncates_a_gpt2_tokenizer(tmp_path, gpt2_tokenizer, monkeypatch):
    gpt2_tokenizer.save(tmp_path)
    before = tree(tmp_path)
    real = gpt2_tokenizer.hf.save_pretrained

    def half_then_full(directory, *a, **k):
        real(directory, *a, **k)
        path = Path(directory) / "tokenizer.json"
        path.write_bytes(path.read_bytes()[:100])  # what a full disk leaves mid-write
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(gpt2_tokenizer.hf, "save_pretrained", half_then_full)
    with pytest.raises(OSError, match="No space"):
        gpt2_tokenizer.save(tmp_path)
    assert tree(tmp_path) == before


# the calls that change which names exist; what is written between them lands in files
# whose names are not yet published, and is caught by the copy before the next one
_OPS = ("rename", "replace", "unlink", "rmdir")


def _loads(directory: Path, seen: set) -> None:
    """load_model(directory), once per distinct set of files (building a model is slow)."""
    import hashlib

    from gpt2core.weights import load_model

    h = hashlib.sha256()
    for p in sorted(directory.iterdir()):
        if p.is_file():
            h.update(p.name.encode() + b"\0" + p.read_bytes())
    if h.digest() not in seen:
        load_model(directory)
        seen.add(h.digest())


def _newest_state(directory: Path) -> int | None:
    """The step of the newest complete training state anywhere in a run directory."""
    steps = []
    for d in [directory / "last", *directory.glob(".last.*")]:
        complete = d.name == "last" or fsutil.is_complete(d)
        if complete and (d / RUN_NAME).is_file() and (d / STATE_NAME).is_file():
            steps.append(json.loads((d / RUN_NAME).read_text())["step"])
    return max(steps, default=None)


def test_a_crash_at_any_filesystem_step_leaves_a_run_that_loads_and_resumes(
    corpus, tmp_path, monkeypatch
):
    """Copy the run directory before every rename and unlink of a short run: each copy is
    what a SIGKILL at that instant would leave. Every copy must load
    as it is, and the next start must resume from its newest complete state, or restart."""
    from gpt2core.weights import load_model

    out, snaps = tmp_path / "run", tmp_path / "snaps"
    taken: list[Path] = []
    state = {"busy": False, "last": None}

    def snapshot():
        if state["busy"] or not out.is_dir():
            return
        state["busy"] = True
        try:
            sig = [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in out.rglob("*")]
            if sig != state["last"]:
                state["last"] = sig
                dest = snaps / f"{len(taken):04d}"
                shutil.copytree(out, dest, symlinks=True)
                taken.append(dest)
        except FileNotFoundError:  # a file vanished mid-copy: not a state, only our race
            pass
        finally:
            state["busy"] = False

    for name in _OPS:
        real = getattr(os, name)

        def wrapped(*a, _real=real, **k):
            snapshot()
            return _real(*a, **k)

        monkeypatch.setattr(os, name, wrapped)
    train(tiny_cfg(corpus, out, max_iters=2, eval_interval=1), sample=False)
    monkeypatch.undo()
    assert len(taken) > 20
    seen: set = set()

    windows = restarts = 0
    chosen: dict[str, Path] = {}
    for snap in taken:
        newest = _newest_state(snap)
        # keep a copy to really train on: one inside replace_dir's window (last/ gone,
        # complete copies beside it)
        if not (snap / "last").exists() and newest is not None and "window" not in chosen:
            chosen["window"] = shutil.copytree(snap, snaps / "window")
        # what a reader (gpt2 chat --model scratch:DIR) sees right after the kill
        if (snap / "config.json").exists():
            _loads(snap, seen)
        if (snap / "last").exists():
            _loads(snap / "last", seen)
        else:
            windows += any(snap.glob(".last.*"))
        # what the next start does
        if newest is None:
            restarts += 1
            prepare(tiny_cfg(corpus, snap), resume=False)  # a clean restart is allowed
        else:
            p = prepare(tiny_cfg(corpus, snap), resume=True)
            assert p.start == newest, snap.name
            _loads(snap / "last", seen)
        assert not [q for q in snap.iterdir() if q.name.endswith(".tmp") or ".old-" in q.name]
    assert windows > 0 and restarts > 0  # the copies did catch both interesting moments

    # and the run really goes on from inside replace_dir's window (restarts from the
    # moments before the first resumable state: test_a_run_killed_before_its_first_...)
    again = chosen["window"]
    result = train(tiny_cfg(corpus, again, max_iters=3), resume=True, sample=False)
    assert result.iters == 3 and not result.interrupted
    load_model(again), load_model(again / "last")


def test_resume_from_a_run_file_json_cannot_read_is_one_line(corpus, tmp_path, capsys):
    out = tmp_path / "run"
    train(tiny_cfg(corpus, out, max_iters=2), sample=False)
    # nested too deep: json.loads raises RecursionError, not a ValueError
    (out / "last" / RUN_NAME).write_text("[" * 100_000 + "]" * 100_000)
    argv = [corpus, "--out", out, *TINY_ARGV]
    rc, err = cli([*argv, "--resume"], capsys)
    assert rc == 2 and "not a training state" in err and "Traceback" not in err, err


def test_metrics_lines_json_cannot_read_are_skipped(tmp_path):
    """A resume reads metrics.jsonl back: a line torn by a kill, nested too deep
    (RecursionError) or holding a 5000-digit number (ValueError) is skipped, not a crash."""
    from gpt2core.rundir import read_metrics

    path = tmp_path / "metrics.jsonl"
    good = [
        '{"kind": "train", "iter": 1, "loss": 4.0}',
        '{"kind": "train", "iter": 2, "loss": 3.9}',
    ]
    bad = ["[" * 100_000 + "]" * 100_000, '{"iter": ' + "1" * 5000 + "}", '{"kind": "tr']
    path.write_text("\n".join([good[0], *bad, good[1]]) + "\n", encoding="utf-8")
    assert [r["iter"] for r in read_metrics(path)] == [1, 2]


def _set(key, value):
    def damage(last: Path) -> None:
        run = json.loads((last / RUN_NAME).read_text())
        if key in ("step", "best_val"):
            run[key] = value
        else:
            run["config"][key] = value
        (last / RUN_NAME).write_text(json.dumps(run))

    return damage


def _truncate_state(last: Path) -> None:
    state = last / STATE_NAME
    state.write_bytes(state.read_bytes()[:1000])


def _wrong_shapes(last: Path) -> None:
    import numpy as np

    state = last / STATE_NAME
    with np.load(state) as arrays:
        keys = list(arrays.files)
    np.savez(state, **{k: np.zeros((2, 3), np.float32) for k in keys})


def _zero_state(last: Path) -> None:
    state = last / STATE_NAME
    state.write_bytes(bytes(state.stat().st_size))


DAMAGES = {
    "state truncated": (_truncate_state, "cannot read the training state"),
    "state zeroed": (_zero_state, "cannot read the training state"),
    "max_iters a string": (_set("max_iters", "x"), "not a training state"),
    "lr a list": (_set("lr", [1]), "not a training state"),
    "step negative": (_set("step", -5), "not a training state"),
    "step past max_iters": (_set("step", 10**12), "not a training state"),
    "step a string": (_set("step", "3"), "not a training state"),
    "step true": (_set("step", True), "not a training state"),
    "best_val a string": (_set("best_val", "abc"), "not a training state"),
    "best_val a list": (_set("best_val", [1]), "not a training state"),
    "corpus a string": (_set("corpus", "small.txt"), "not a training state"),
    "state of the wrong shapes": (_wrong_shapes, "does not fit this model"),
}


@pytest.fixture(scope="module")
def two_step_run(corpus, tmp_path_factory):
    """A finished 2-step run, copied by each test that damages it."""
    out = tmp_path_factory.mktemp("two_step") / "run"
    train(tiny_cfg(corpus, out, max_iters=2), sample=False)
    return out


@pytest.mark.parametrize("name", list(DAMAGES))
def test_resume_from_a_damaged_last_is_one_line_and_leaves_it(
    corpus, two_step_run, tmp_path, capsys, name
):
    """A hostile probe's finds: each of these printed a traceback (BadZipFile, TypeError,
    numpy's ValueError) or, for a step past the end, ran and reported nonsense."""
    damage, needle = DAMAGES[name]
    out = tmp_path / "run"
    shutil.copytree(two_step_run, out)
    damage(out / "last")
    before = tree(out)
    argv = [corpus, "--out", out, *TINY_ARGV]
    rc, err = cli([*argv, "--resume"], capsys)
    assert rc == 2 and needle in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert tree(out) == before


@pytest.mark.parametrize(
    "change, needle",
    [
        (["--lr", "0.5"], "--lr 0.5 (saved: 0.001)"),
        (["--seed", "7", "--dropout", "0.2"], "--dropout 0.2 (saved: 0.0); --seed 7 (saved: 1337)"),
        (["--preset", "shakespeare-cpu"], "--preset shakespeare-cpu (saved: tiny)"),
        (["--tokenizer", "bpe:300"], "--tokenizer bpe:300 (saved: char)"),
    ],
)
def test_resume_refuses_settings_it_would_ignore(
    corpus, two_step_run, tmp_path, capsys, change, needle
):
    """A resumed run keeps its saved recipe: a setting given with --resume that differs
    from it was silently dropped (the run went on with the old one). Now it is one line,
    before anything is written."""
    out = tmp_path / "run"
    shutil.copytree(two_step_run, out)
    before = tree(out)
    rc, err = cli([corpus, "--out", out, *TINY_ARGV, *change, "--resume"], capsys)
    assert rc == 2 and needle in err and "another --out" in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert tree(out) == before


def test_resume_refuses_another_corpus_but_not_another_spelling(
    corpus, two_step_run, tmp_path, capsys, monkeypatch
):
    out = tmp_path / "run"
    shutil.copytree(two_step_run, out)
    other = tmp_path / "other.txt"
    other.write_text(corpus.read_text(encoding="utf-8"), encoding="utf-8")  # same text, not it
    before = tree(out)
    rc, err = cli([other, "--out", out, *TINY_ARGV, "--resume"], capsys)
    assert rc == 2 and f"CORPUS {other} (saved: {corpus})" in err, err
    assert tree(out) == before
    # the saved corpus through a link and a relative path is the same file: it resumes
    link = tmp_path / "link.txt"
    link.symlink_to(corpus)
    monkeypatch.chdir(corpus.parent)
    for spelling in (str(link), f"./{corpus.name}"):
        request = parse_train_args([spelling, "--out", str(out), *TINY_ARGV, "--resume"])
        p = prepare(request.config, resume=True, given=request.given)
        assert p.start == 2 and p.cfg.corpus == (str(corpus),)


def test_resume_with_the_saved_settings_or_none_goes_on(corpus, two_step_run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(two_step_run, out)
    for flags in (TINY_ARGV, ["--lr", "0.001", "--seed", "1337"], ["--max-iters", "9"], []):
        request = parse_train_args([str(corpus), "--out", str(out), *flags, "--resume"])
        p = prepare(request.config, resume=True, given=request.given)
        assert p.start == 2 and p.cfg.preset == "tiny" and p.cfg.batch_size == 4
    assert request.given == frozenset() and p.cfg.max_iters == 2  # its own length


def test_the_request_knows_which_settings_were_given():
    request = parse_train_args("f.txt --lr 1e-3 --preset tiny --max-iters 5")
    assert request.given == {"lr", "preset", "max_iters"}
    assert parse_train_args("f.txt").given == frozenset()
