"""A training run's settings: one frozen dataclass whose defaults are the recipe.

No TensorFlow and no UI here: front ends build and check a config before anything heavy.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from gpt2core.config import MAX_SIZES, PRESETS, ConfigError, GPT2Config
from gpt2core.distribute import STRATEGIES
from gpt2core.errors import UserError


class TrainError(UserError):
    """Bad input to training (one line, exit code 2, nothing written)."""


@dataclass(frozen=True)
class TrainConfig:
    """One run's settings. The defaults *are* the recipe: nanoGPT's shakespeare_char run
    scaled for a CPU (config/train_shakespeare_char.py with its "on a macbook" overrides),
    with the model's shape from ``PRESETS[preset]`` unless n_layer/n_head/n_embd/block_size
    override it. Front ends build one with ``from_options``, which leaves every setting the
    user did not give at this default: there is no second table of recipe values.
    """

    corpus: tuple[str, ...]
    out: str
    preset: str = "shakespeare-cpu"
    tokenizer: str = "char"
    n_layer: int | None = None
    n_head: int | None = None
    n_embd: int | None = None
    block_size: int | None = None
    batch_size: int = 12
    max_iters: int = 2000
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_iters: int = 100
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    dropout: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.99
    eval_interval: int = 250
    eval_iters: int = 20
    seed: int = 1337
    strategy: str = "default"
    log_interval: int = 10

    @classmethod
    def from_options(cls, corpus: tuple[str, ...] | list[str], out: str, **options) -> TrainConfig:
        """A config from front-end options: None means "not given" (the recipe's value);
        an unknown option is a bug in the front end (TypeError)."""
        given = {k: v for k, v in options.items() if v is not None}
        return cls(corpus=tuple(corpus), out=out, **given)

    def model_config(self, vocab_size: int) -> GPT2Config:
        base = PRESETS[self.preset]
        try:
            return base.replace(
                n_layer=self.n_layer or base.n_layer,
                n_head=self.n_head or base.n_head,
                n_embd=self.n_embd or base.n_embd,
                n_positions=self.block_size or base.n_positions,
                vocab_size=vocab_size,
                dropout=self.dropout,
            )
        except ConfigError as e:
            raise TrainError(f"bad model size: {e}") from None

    def check(self) -> None:
        """Every setting's type, finiteness and range, before any work (one line each)."""
        if self.preset not in PRESETS:
            raise TrainError(f"unknown preset {self.preset!r} (choose from {', '.join(PRESETS)})")
        ints = {
            "batch_size": 1,
            "max_iters": 1,
            "eval_interval": 1,
            "eval_iters": 1,
            "log_interval": 1,
            "warmup_iters": 0,
            "n_layer": 1,
            "n_head": 1,
            "n_embd": 1,
            "block_size": 1,
        }
        for name, low in ints.items():
            v = getattr(self, name)
            if v is None and name in ("n_layer", "n_head", "n_embd", "block_size"):
                continue
            if isinstance(v, bool) or not isinstance(v, int):
                raise TrainError(f"{_flag(name)} must be an integer, got {v!r}")
            if not low <= v <= _INT_MAX:
                raise TrainError(f"{_flag(name)} must be between {low} and {_INT_MAX}, got {v}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise TrainError(f"--seed must be an integer, got {self.seed!r}")
        if not 0 <= self.seed <= _SEED_MAX:
            raise TrainError(f"--seed must be between 0 and {_SEED_MAX}, got {self.seed}")
        floats = ("lr", "min_lr", "weight_decay", "grad_clip", "dropout", "beta1", "beta2")
        for name in floats:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                raise TrainError(f"{_flag(name)} must be a finite number, got {v!r}")
        if not (self.lr > 0 and 0 <= self.min_lr <= self.lr):
            raise TrainError(
                f"need --lr > 0 and 0 <= --min-lr <= --lr (got {self.lr}, {self.min_lr})"
            )
        for name in ("weight_decay", "grad_clip"):
            if getattr(self, name) < 0:
                raise TrainError(f"{_flag(name)} must be >= 0, got {getattr(self, name)}")
        for name in ("dropout", "beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise TrainError(f"{_flag(name)} must be in [0, 1), got {getattr(self, name)}")
        if self.strategy not in STRATEGIES:
            raise TrainError(
                f"unknown --strategy {self.strategy!r} (choose from {', '.join(STRATEGIES)})"
            )
        tok = self.tokenizer
        if tok.startswith("bpe:"):
            try:
                n = int(tok[4:])
            except ValueError:
                raise TrainError(f"--tokenizer bpe:N needs an integer N, got {tok!r}") from None
            # 256 bytes + EOT at least; at most what a model can hold (the tokenizers
            # library aborts the process when it cannot allocate for a huge N)
            if not 258 <= n <= MAX_SIZES["vocab_size"]:
                raise TrainError(
                    f"--tokenizer bpe:N needs N between 258 and {MAX_SIZES['vocab_size']}, got {n}"
                )


_INT_MAX = 2**31 - 1  # TensorFlow's int32 steps and shapes
_SEED_MAX = 2**32 - 1  # what numpy's and Keras' seeding accept


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


# what a resumed run may change: its length, where it goes, and how it is spread over devices
RESUME_MAY_CHANGE = ("max_iters", "out", "strategy")


def resume_conflicts(saved: TrainConfig, asked: TrainConfig, given: Iterable[str]) -> str | None:
    """What ``--resume`` would otherwise ignore without a word: the settings the user gave
    (``given``: TrainConfig field names) that differ from the saved run's, and a corpus
    that is not the saved one (compared as real paths). None when there is nothing."""
    import os

    from gpt2core.data import BUNDLED

    def where(name: str) -> str:
        return name if name in BUNDLED else os.path.realpath(name)

    found = []
    if [where(c) for c in asked.corpus] != [where(c) for c in saved.corpus]:
        found.append(f"CORPUS {' '.join(asked.corpus)} (saved: {' '.join(saved.corpus)})")
    for name in sorted(set(given) - set(RESUME_MAY_CHANGE) - {"corpus"}):
        mine, theirs = getattr(asked, name), getattr(saved, name)
        if mine != theirs:
            found.append(f"{_flag(name)} {mine} (saved: {theirs})")
    if not found:
        return None
    return (
        f"--resume continues the saved run as it was set up, but {'; '.join(found)}: drop "
        f"{'it' if len(found) == 1 else 'them'} to continue it, or start a new run in another --out"
    )


def default_out(corpus: tuple[str, ...] | list[str]) -> str:
    """Where a run goes when no --out is given: runs/<name of the first corpus>, with
    anything but letters, digits, '.', '_' and '-' made '_' (a corpus named with an escape
    sequence or a newline made a directory name no one could type or paste)."""
    import re
    from pathlib import Path

    stem = Path(corpus[0]).stem if corpus else ""
    stem = re.sub(r"[^\w.-]", "_", stem).lstrip(".")
    return str(Path("runs") / (stem or "run"))


__all__ = ["TrainConfig", "TrainError", "default_out", "resume_conflicts"]
