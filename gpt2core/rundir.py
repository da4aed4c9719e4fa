"""A run directory: what a training run writes, how it is recognised, how a killed run's
leftovers are repaired, and the one way its checkpoints are written.

    DIR/config.json, model.safetensors, tokenizer files   the best model (by val loss)
    DIR/last/                                             the latest model + train_state.npz
    DIR/metrics.jsonl                                     one JSON object per log line
    DIR/.gpt2-run                                         marks DIR as a run of this tool

Every file goes through gpt2core.fsutil (temporary sibling, fsync, rename). ``last/`` is
published whole by renames (never half there); the best model's files are moved in one
by one, config.json last, so DIR loads whenever it has a config.json.
"""

from __future__ import annotations

import os
from pathlib import Path

from gpt2core import jsontext
from gpt2core.config import CONFIG_NAME
from gpt2core.train_config import TrainError

STATE_NAME = "train_state.npz"
RUN_NAME = "train_run.json"
METRICS_NAME = "metrics.jsonl"

# A run directory is recognised as ours by this marker (or, for runs from before it, by
# last/train_run.json); anything else that is not empty is refused as --out.
RUN_MARKER = ".gpt2-run"
# What a run writes at the top of its directory, besides last/ and the marker: removed
# when a run that never reached a resumable state is restarted.
RUN_FILES = (
    CONFIG_NAME,
    "model.safetensors",
    "char_vocab.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    METRICS_NAME,
)


def is_ours(out: Path) -> bool:
    return (out / RUN_MARKER).is_file() or (out / "last" / RUN_NAME).is_file()


def has_state(out: Path) -> bool:
    """A resumable state: last/ complete (published whole, so present means complete)."""
    last = out / "last"
    return (last / RUN_NAME).is_file() and (last / STATE_NAME).is_file()


def check_out(out: Path) -> bool:
    """Refuse an --out that is not ours to write; True if it is a run directory of ours."""
    from gpt2core import fsutil

    if out.resolve() == Path(out.resolve().anchor):
        raise TrainError(f"--out {out}: refusing to write a run into the filesystem root")
    if os.path.lexists(out) and not out.is_dir():
        raise TrainError(f"--out {out}: exists and is not a directory")
    if not out.is_dir():
        return False
    try:
        entries = sorted(p.name for p in out.iterdir())
    except OSError as e:
        raise TrainError(f"--out {out}: cannot read the directory ({e.strerror or e})") from None
    if not entries:
        return False
    if all(fsutil.is_temp_of(e, RUN_MARKER) for e in entries):
        return True  # a run was killed while writing its marker: ours, nothing else here
    if not is_ours(out):
        more = f" and {len(entries) - 3} more" if len(entries) > 3 else ""
        shown = ", ".join(entries[:3]) + more
        raise TrainError(
            f"--out {out}: not empty and not a gpt2 run directory (holds {shown}); "
            f"give a new or empty directory"
        )
    return True


def recover(out: Path) -> None:
    """Finish or clean up what a killed run left: a last/ caught between its two renames,
    staging directories and temporary files."""
    from gpt2core import fsutil

    fsutil.recover_dir(out / "last")
    fsutil.recover_dir(out / "staging", restore=False)
    fsutil.clean_temp_files(out)


def read_metrics(path: Path) -> list[dict]:
    """The records of metrics.jsonl; a line torn by a kill mid-append is skipped."""
    records = []
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return []
    for line in lines:
        try:
            r = jsontext.loads(line)
        except ValueError:  # torn, a number too long, nested too deep
            continue
        if isinstance(r, dict) and isinstance(r.get("iter"), int):
            records.append(r)
    return records


def save(model, directory: Path, tokenizer, extra=None, beside: bool = False) -> None:
    """The one checkpoint writer for a run: ``last/`` (published whole, with ``extra``
    files such as the optimizer state) and the best model (``beside=True``: its files
    moved in one by one into the run directory, config.json last)."""
    from gpt2core.weights import save_checkpoint

    save_checkpoint(model, directory, tokenizer=tokenizer, extra=extra, beside=beside)


__all__ = [
    "STATE_NAME",
    "RUN_NAME",
    "METRICS_NAME",
    "RUN_MARKER",
    "RUN_FILES",
    "is_ours",
    "has_state",
    "check_out",
    "recover",
    "read_metrics",
    "save",
]
