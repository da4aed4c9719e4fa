"""Training the scratch GPT-2 on text files (nanoGPT's recipe, in TensorFlow).

Pipeline: UTF-8 files -> tokenizer (char, GPT-2 BPE, or a BPE trained here) -> one id
array -> 90/10 train/val split -> random windows of block_size + 1 tokens (inputs and
the same shifted by one as targets), drawn by a stateless RNG keyed on (seed, step), so
the batch of step k is the same whether or not the run was interrupted before it.

Step: cross-entropy -> gradients (XLA-compiled) -> all-reduce over replicas -> clip by
global norm -> AdamW (decay on weight matrices only) with linear warmup and cosine decay.

Output directory:
    DIR/config.json, model.safetensors, tokenizer files   the best model (by val loss)
    DIR/last/                                             the latest model + train_state.npz
    DIR/metrics.jsonl                                     one JSON object per log line
    DIR/.gpt2-run                                         marks DIR as a run of this tool

Crash safety: every file goes through gpt2core.fsutil (temporary sibling, fsync, rename).
``last/`` is saved at every eval and when the run is stopped, published whole by renames
(never half there), so a run killed at any instant resumes from its newest complete state
after ``prepare`` repairs the directory; the best model's files are moved in one by one,
config.json last, so DIR loads whenever it has a config.json. A run killed before its
first ``last/`` starts over. --out must be new, empty, or a run directory of ours.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gpt2core.config import CONFIG_NAME, PRESETS, ConfigError, GPT2Config
from gpt2core.errors import UserError
from gpt2core.tokenizer import TokenizerError

STATE_NAME = "train_state.npz"
RUN_NAME = "train_run.json"
METRICS_NAME = "metrics.jsonl"


class TrainError(UserError):
    """Bad input to training (one line, exit code 2, nothing written)."""


@dataclass(frozen=True)
class TrainConfig:
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
        if self.strategy not in ("default", "mirrored", "multiworker"):
            raise TrainError(f"unknown --strategy {self.strategy!r}")
        tok = self.tokenizer
        if tok.startswith("bpe:"):
            try:
                int(tok[4:])
            except ValueError:
                raise TrainError(f"--tokenizer bpe:N needs an integer N, got {tok!r}") from None


_INT_MAX = 2**31 - 1  # TensorFlow's int32 steps and shapes
_SEED_MAX = 2**32 - 1  # what numpy's and Keras' seeding accept


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


# What a preset's recipe changes from TrainConfig's defaults, which are nanoGPT's
# shakespeare_char CPU run (the shakespeare-cpu preset): nothing, for now.
RECIPES: dict[str, dict] = {"shakespeare-cpu": {}}


# -- data --------------------------------------------------------------------------------


def read_corpus(paths: tuple[str, ...] | list[str]) -> str:
    """Read and check each file; any problem is one TrainError naming the file."""
    texts = []
    for p in paths:
        path = Path(p)
        if not path.exists():
            raise TrainError(f"{p}: no such file")
        if not path.is_file():
            raise TrainError(f"{p}: not a file")
        data = path.read_bytes()
        if not data.strip():
            raise TrainError(f"{p}: the file is empty")
        if b"\x00" in data[:65536]:
            raise TrainError(f"{p}: looks like a binary file (it contains NUL bytes), not text")
        try:
            texts.append(data.decode("utf-8"))
        except UnicodeDecodeError as e:
            raise TrainError(
                f"{p}: not UTF-8 text (invalid byte 0x{data[e.start]:02x} at offset {e.start})"
            ) from None
    return "\n".join(texts)


def build_tokenizer(spec: str, text: str):
    from gpt2core.tokenizer import CharTokenizer, load_tokenizer, train_bpe

    if spec == "char":
        return CharTokenizer.from_text(text)
    if spec.startswith("bpe:"):
        try:
            return train_bpe([text], int(spec[4:]))
        except TokenizerError as e:
            raise TrainError(str(e)) from None
    try:
        return load_tokenizer(spec)
    except TokenizerError as e:
        raise TrainError(f"--tokenizer: {e}") from None


def split_ids(ids: np.ndarray, block_size: int) -> tuple[np.ndarray, np.ndarray]:
    n = int(len(ids) * 0.9)
    train, val = ids[:n], ids[n:]
    need = block_size + 1
    if len(train) < need or len(val) < need:
        raise TrainError(
            f"the corpus is too short: {len(ids)} tokens give {len(train)} train / {len(val)} "
            f"val, and each split needs at least block_size + 1 = {need} tokens"
        )
    return train, val


# -- learning rate ---------------------------------------------------------------------------


def lr_at(step, cfg: TrainConfig):
    """Linear warmup to lr, then cosine decay to min_lr at max_iters (nanoGPT's get_lr)."""
    from gpt2core._tf import tf

    step = tf.cast(step, tf.float32)
    warm = cfg.lr * (step + 1) / max(cfg.warmup_iters, 1)
    ratio = (step - cfg.warmup_iters) / max(cfg.max_iters - cfg.warmup_iters, 1)
    ratio = tf.clip_by_value(ratio, 0.0, 1.0)
    cosine = cfg.min_lr + 0.5 * (1.0 + tf.cos(math.pi * ratio)) * (cfg.lr - cfg.min_lr)
    return tf.where(step < cfg.warmup_iters, warm, cosine)


# -- the trainer ---------------------------------------------------------------------------


def make_strategy(name: str):
    from gpt2core._tf import tf

    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        return tf.distribute.MirroredStrategy(devices=devices)
    if name == "multiworker":
        if "TF_CONFIG" not in os.environ:
            raise TrainError(
                "--strategy multiworker reads the cluster from TF_CONFIG, which is not set"
            )
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


class Trainer:
    def __init__(self, cfg: TrainConfig, model_config: GPT2Config, tokenizer, train_ids, val_ids):
        from gpt2core._tf import keras, tf
        from gpt2core.model import GPT2

        self.cfg, self.tokenizer = cfg, tokenizer
        self.strategy = make_strategy(cfg.strategy)
        n_rep = self.strategy.num_replicas_in_sync
        if cfg.batch_size % n_rep:
            raise TrainError(
                f"--batch-size {cfg.batch_size} must divide evenly over {n_rep} replicas"
            )
        self.block = model_config.n_positions
        self.train_ids = tf.constant(train_ids, tf.int32)  # (N_train,)
        self.val_ids = val_ids
        with self.strategy.scope():
            keras.utils.set_random_seed(cfg.seed)
            self.model = GPT2(model_config).build_weights()
            self.optimizer = keras.optimizers.AdamW(
                learning_rate=lambda: lr_at(self.optimizer.iterations, cfg),
                beta_1=cfg.beta1,
                beta_2=cfg.beta2,
                weight_decay=cfg.weight_decay,
                epsilon=1e-8,  # PyTorch's (and nanoGPT's) Adam epsilon; Keras defaults to 1e-7
            )
            # decay weight matrices only: not biases, LayerNorm gains/offsets, embeddings
            self.optimizer.exclude_from_weight_decay(
                var_names=["bias", "gamma", "beta", "embeddings"]
            )
            self.optimizer.build(self.model.trainable_variables)
        self._grads = tf.function(self._loss_and_grads, jit_compile=True)
        self._eval = tf.function(self._eval_loss, jit_compile=True)
        if n_rep == 1 and cfg.strategy == "default":
            # one device: gradients, clipping and the AdamW update compile as one XLA program
            self._train_step = tf.function(self._single_step, jit_compile=True)
        else:
            self._train_step = tf.function(self._distributed_step)

    # one batch ----------------------------------------------------------------------------
    def batch(self, step: int, stream: int = 0):
        """Random windows for `step`: inputs (B, T) and targets (B, T), reproducible."""
        from gpt2core._tf import tf

        n = tf.shape(self.train_ids)[0] - self.block - 1
        seed = tf.stack(
            [tf.constant(self.cfg.seed + 1_000_003 * stream, tf.int64), tf.cast(step, tf.int64)]
        )
        starts = tf.random.stateless_uniform(
            [self.cfg.batch_size], seed, 0, n + 1, tf.int32
        )  # (B,)
        idx = starts[:, None] + tf.range(self.block + 1)[None, :]  # (B, T+1)
        windows = tf.gather(self.train_ids, idx)  # (B, T+1)
        return windows[:, :-1], windows[:, 1:]  # (B, T), (B, T)

    def dataset(self, start: int):
        from gpt2core._tf import tf

        ds = tf.data.Dataset.range(start, self.cfg.max_iters).map(self.batch)
        ds = ds.prefetch(2)
        return self.strategy.experimental_distribute_dataset(ds)

    # steps -------------------------------------------------------------------------------
    def _loss_and_grads(self, x, y):
        from gpt2core._tf import tf

        with tf.GradientTape() as tape:
            logits = self.model(x, training=True)  # (b, T, V)
            ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)  # (b, T)
            # average over the *global* batch, so summing replicas gives the mean
            loss = tf.reduce_sum(ce) / float(self.cfg.batch_size * self.block)
        grads = tape.gradient(loss, self.model.trainable_variables)
        # embedding gradients come as IndexedSlices; dense ones all-reduce and clip simply
        return loss, [tf.convert_to_tensor(g) for g in grads]

    def _single_step(self, x, y):
        from gpt2core._tf import tf

        loss, grads = self._loss_and_grads(x, y)
        if self.cfg.grad_clip > 0:
            grads, _ = tf.clip_by_global_norm(grads, self.cfg.grad_clip)
        self.optimizer.apply(grads, self.model.trainable_variables)
        return loss

    def _replica_step(self, x, y):
        from gpt2core._tf import tf

        loss, grads = self._grads(x, y)
        ctx = tf.distribute.get_replica_context()
        grads = ctx.all_reduce(tf.distribute.ReduceOp.SUM, grads)  # the global-batch gradient
        if self.cfg.grad_clip > 0:
            grads, _ = tf.clip_by_global_norm(grads, self.cfg.grad_clip)
        # Keras' optimizer all-reduces (sums) again across replicas: hand it equal shares
        n = float(self.strategy.num_replicas_in_sync)
        self.optimizer.apply([g / n for g in grads], self.model.trainable_variables)
        return loss

    def _distributed_step(self, x, y):
        from gpt2core._tf import tf

        per_replica = self.strategy.run(self._replica_step, args=(x, y))
        return self.strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

    def _eval_loss(self, x, y):
        from gpt2core._tf import tf

        logits = self.model(x, training=False)  # (B, T, V)
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)  # (B, T)
        return tf.reduce_mean(ce)

    def estimate_loss(self, step: int) -> tuple[float, float]:
        """Mean loss over eval_iters random batches of each split (nanoGPT's estimate_loss)."""
        out = []
        for ids, stream in ((None, 1), (self.val_ids, 2)):
            losses = []
            for k in range(self.cfg.eval_iters):
                if ids is None:
                    x, y = self.batch(step * 1000 + k, stream)
                else:
                    x, y = self._val_batch(step * 1000 + k)
                losses.append(float(self._eval(x, y)))
            out.append(float(np.mean(losses)))
        return out[0], out[1]

    def _val_batch(self, key: int):
        rng = np.random.default_rng([self.cfg.seed, 2, key])
        starts = rng.integers(0, len(self.val_ids) - self.block, self.cfg.batch_size)
        w = np.stack([self.val_ids[s : s + self.block + 1] for s in starts]).astype(np.int32)
        return w[:, :-1], w[:, 1:]  # (B, T), (B, T)

    def full_val_loss(self) -> float:
        """Loss over the whole validation split: every non-overlapping window, each token once."""
        ids, T = self.val_ids, self.block
        n = (len(ids) - 1) // T
        x_all = ids[: n * T].reshape(n, T).astype(np.int32)  # (n, T)
        y_all = ids[1 : n * T + 1].reshape(n, T).astype(np.int32)  # (n, T)
        total, count, B = 0.0, 0, 64
        for i in range(0, n, B):
            x, y = x_all[i : i + B], y_all[i : i + B]
            if len(x) < B:  # pad the last batch to the compiled shape, then weight it
                pad = B - len(x)
                x = np.concatenate([x, np.zeros((pad, T), np.int32)])
                y = np.concatenate([y, np.zeros((pad, T), np.int32)])
                loss = self._masked_eval(x, y, len(x) - pad)
            else:
                loss = float(self._eval(x, y)) * B * T
            total += loss
            count += min(B, n - i) * T
        return total / count

    def _masked_eval(self, x, y, rows: int) -> float:
        from gpt2core._tf import tf

        logits = self.model(x, training=False)  # (B, T, V)
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)  # (B, T)
        return float(tf.reduce_sum(ce[:rows]))

    # state -------------------------------------------------------------------------------
    def state_arrays(self) -> dict[str, np.ndarray]:
        # model.variables, not .weights: it includes the dropout seed-generator states
        arrays = {f"model/{i}": v.numpy() for i, v in enumerate(self.model.variables)}
        arrays.update({f"opt/{i}": v.numpy() for i, v in enumerate(self.optimizer.variables)})
        return arrays

    def load_state_arrays(self, arrays, source) -> None:
        try:
            for i, v in enumerate(self.model.variables):
                v.assign(arrays[f"model/{i}"])
            for i, v in enumerate(self.optimizer.variables):
                v.assign(arrays[f"opt/{i}"])
        except (KeyError, ValueError) as e:
            raise TrainError(f"{source}: training state does not fit this model ({e})") from None


# -- the run directory -----------------------------------------------------------------------

# A run directory is recognised as ours by this marker (or, for runs from before it, by
# last/train_run.json); anything else that is not empty is refused as --out.
RUN_MARKER = ".gpt2-run"
# What a run writes at the top of its directory, besides last/ and the marker: removed
# when a run that never reached a resumable state is restarted.
_RUN_FILES = (
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


def _is_ours(out: Path) -> bool:
    return (out / RUN_MARKER).is_file() or (out / "last" / RUN_NAME).is_file()


def _has_state(out: Path) -> bool:
    """A resumable state: last/ complete (published whole, so present means complete)."""
    last = out / "last"
    return (last / RUN_NAME).is_file() and (last / STATE_NAME).is_file()


def _check_out(out: Path) -> bool:
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
    if not _is_ours(out):
        more = f" and {len(entries) - 3} more" if len(entries) > 3 else ""
        shown = ", ".join(entries[:3]) + more
        raise TrainError(
            f"--out {out}: not empty and not a gpt2 run directory (holds {shown}); "
            f"give a new or empty directory"
        )
    return True


def _recover(out: Path) -> None:
    """Finish or clean up what a killed run left: a last/ caught between its two renames,
    staging directories and temporary files."""
    from gpt2core import fsutil

    fsutil.recover_dir(out / "last")
    fsutil.recover_dir(out / "staging", restore=False)
    fsutil.clean_temp_files(out)


def _read_metrics(path: Path) -> list[dict]:
    """The records of metrics.jsonl; a line torn by a kill mid-append is skipped."""
    records = []
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return []
    for line in lines:
        try:
            r = json.loads(line)
        except ValueError:
            continue
        if isinstance(r, dict) and isinstance(r.get("iter"), int):
            records.append(r)
    return records


# -- the command -------------------------------------------------------------------------------


@dataclass
class TrainResult:
    out: str
    iters: int
    train_loss: float
    val_loss: float
    wall_s: float
    tokens_per_s: float
    ms_per_iter: float
    interrupted: bool = False
    sample: str = ""


@dataclass
class Prepared:
    cfg: TrainConfig
    tokenizer: object
    model_config: GPT2Config
    train_ids: np.ndarray
    val_ids: np.ndarray
    start: int = 0
    state: Path | None = None
    saved: dict | None = None
    restart: bool = False  # a run of ours that never reached a resumable state


def memory_needed(mcfg: GPT2Config, batch_size: int) -> int:
    """Bytes a training step needs, roughly: float32 weights, their gradients and AdamW's
    two moments (4 copies of the parameters), the activations kept for backprop (about 16
    floats per embedding channel per token per layer, plus the (B, nh, T, T) attention
    scores and probabilities), and the (B, T, V) logits with their softmax and gradient."""
    L, d, T, V, nh = mcfg.n_layer, mcfg.n_embd, mcfg.n_positions, mcfg.vocab_size, mcfg.n_head
    B = batch_size
    params = V * d + T * d + L * (12 * d * d + 13 * d) + 2 * d
    activations = L * B * T * (16 * d + 2 * nh * T)
    logits = 3 * B * T * V + 64 * T * V  # training step + the 64-window validation batches
    return 4 * (4 * params + activations + logits)


def machine_memory() -> int | None:
    """Physical memory in bytes (None where the OS does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _check_memory(mcfg: GPT2Config, batch_size: int) -> None:
    need, have = memory_needed(mcfg, batch_size), machine_memory()
    if have is not None and need > have:
        gib = 2**30
        raise TrainError(
            f"this model with --batch-size {batch_size} and --block-size {mcfg.n_positions} "
            f"needs about {need / gib:,.1f} GiB of memory, more than this machine's "
            f"{have / gib:,.1f} GiB: lower --batch-size, --block-size or the model size"
        )


def prepare(cfg: TrainConfig, resume: bool) -> Prepared:
    """Everything that can fail on user input, before anything is written (except that a
    run directory of ours is first repaired from an interrupted save)."""
    cfg.check()
    out = Path(cfg.out)
    ours = _check_out(out)
    if ours:
        try:
            _recover(out)
        except OSError as e:
            raise TrainError(f"--out {out}: cannot repair it ({e.strerror or e})") from None
    start, state, saved, restart = 0, None, None, False
    if resume:
        if not _has_state(out):
            raise TrainError(f"--resume: nothing to resume in {cfg.out} (no last/{RUN_NAME})")
        run_file = out / "last" / RUN_NAME
        try:
            saved = json.loads(run_file.read_text(encoding="utf-8"))
            old = TrainConfig(**{**saved["config"], "corpus": tuple(saved["config"]["corpus"])})
            start = int(saved["step"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise TrainError(f"{run_file}: not a training state ({e})") from None
        # a resumed run keeps its recipe; only the length and the output may change
        cfg = dataclasses.replace(
            old, max_iters=max(cfg.max_iters, old.max_iters), out=cfg.out, strategy=cfg.strategy
        )
        cfg.check()
    elif _has_state(out):
        what = "a different model" if _differs(out, cfg) else "a checkpoint"
        raise TrainError(
            f"--out {cfg.out} already holds {what}: pass --resume to continue it, "
            f"or choose another --out"
        )
    else:
        restart = ours
    text = read_corpus(cfg.corpus)
    if resume:
        from gpt2core.tokenizer import load_tokenizer

        tokenizer = load_tokenizer(out / "last")
    else:
        tokenizer = build_tokenizer(cfg.tokenizer, text)
    try:
        ids = np.asarray(tokenizer.encode(text), dtype=np.int32)
    except TokenizerError as e:
        raise TrainError(f"the corpus does not fit the tokenizer: {e}") from None
    model_config = cfg.model_config(tokenizer.vocab_size)
    _check_memory(model_config, cfg.batch_size)
    train_ids, val_ids = split_ids(ids, model_config.n_positions)
    if resume:
        state = out / "last" / STATE_NAME
    return Prepared(cfg, tokenizer, model_config, train_ids, val_ids, start, state, saved, restart)


def _differs(out: Path, cfg: TrainConfig) -> bool:
    try:
        old = GPT2Config.load(out / "last")
    except ConfigError:
        return True
    return (cfg.n_layer or PRESETS[cfg.preset].n_layer) != old.n_layer or (
        cfg.n_embd or PRESETS[cfg.preset].n_embd
    ) != old.n_embd


class _Diverged(Exception):
    pass


def train(
    cfg: TrainConfig,
    resume: bool = False,
    on_step: Callable[[dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    sample: bool = True,
) -> TrainResult:
    """Run (or resume) training.

    ``on_step`` gets a dict per iteration (for progress bars). ``should_stop`` is polled
    after every step (a front end's signal handlers set it): the run saves ``last`` and
    returns. A KeyboardInterrupt raised in the loop does the same. ``last/`` is saved at
    every eval, so a run killed outright loses at most one eval interval; a loss that
    becomes NaN or infinite stops the run (TrainError), keeping the last good checkpoint.
    ``sample=False`` skips the end-of-run sample (a few seconds of compiling).
    """
    from gpt2core import fsutil

    p = prepare(cfg, resume)
    cfg, tokenizer, mcfg = p.cfg, p.tokenizer, p.model_config
    out = Path(cfg.out)
    metrics = out / METRICS_NAME

    def io(what: str):
        return _WriteErrors(what, out)

    with io("the run directory"):
        fsutil.make_dir(out)
        if p.restart:  # ours, but killed before its first resumable state: start over
            for name in _RUN_FILES:  # config.json first: from then on, no checkpoint here
                (out / name).unlink(missing_ok=True)
            fsutil.remove_dir(out / "last")
        if not resume:
            fsutil.atomic_write_text(
                out / RUN_MARKER, json.dumps({"tool": "gpt2 train", "corpus": list(cfg.corpus)})
            )
            fsutil.atomic_write_text(metrics, "")
        else:  # drop records past the resumed state (and a line torn by a kill)
            evaluated = bool(p.saved.get("evaluated", False))
            kept = [
                r
                for r in _read_metrics(metrics)
                if r["iter"] < p.start
                or (r["iter"] == p.start and (r.get("kind") == "train" or evaluated))
            ]
            fsutil.atomic_write_text(metrics, "".join(json.dumps(r) + "\n" for r in kept))

    trainer = Trainer(cfg, mcfg, tokenizer, p.train_ids, p.val_ids)
    best_val = float("inf")
    skip_eval = False
    if p.state is not None:
        try:
            with np.load(p.state) as arrays:
                trainer.load_state_arrays(dict(arrays), p.state)
        except (OSError, ValueError) as e:
            raise TrainError(f"{p.state}: cannot read the training state ({e})") from None
        if p.saved.get("best_val") is not None:
            best_val = float(p.saved["best_val"])
        skip_eval = bool(p.saved.get("evaluated", False))

    def log(record: dict) -> None:
        with io(str(metrics)):
            fsutil.append_line(metrics, json.dumps(record, allow_nan=False))

    def save_last(step: int, evaluated: bool) -> None:
        from gpt2core.weights import save_checkpoint

        def extra(tmp: Path) -> None:
            fsutil.atomic_write(tmp / STATE_NAME, lambda f: _savez(f, trainer.state_arrays()))
            run = {
                "config": dataclasses.asdict(cfg),
                "step": step,
                "evaluated": evaluated,
                "best_val": best_val if math.isfinite(best_val) else None,
            }
            fsutil.atomic_write_text(tmp / RUN_NAME, json.dumps(run, indent=1, allow_nan=False))

        with io(str(out / "last")):
            save_checkpoint(trainer.model, out / "last", tokenizer=tokenizer, extra=extra)

    def save_best() -> None:
        from gpt2core.weights import save_checkpoint

        with io(str(out)):
            save_checkpoint(trainer.model, out, tokenizer=tokenizer, beside=True)

    def finite(value: float, what: str, step: int) -> float:
        if not math.isfinite(value):
            raise TrainError(
                f"the {what} became {value} at iter {step}: training diverged (try a lower "
                f"--lr); stopped, keeping the last good checkpoint in {out / 'last'}"
            )
        return value

    tokens_per_iter = cfg.batch_size * mcfg.n_positions
    step = saved_step = p.start
    loss = float("nan")
    interrupted = False
    stop = should_stop or (lambda: False)
    t_train, t0 = 0.0, time.perf_counter()
    try:
        it = iter(trainer.dataset(p.start))
        while step < cfg.max_iters:
            if step % cfg.eval_interval == 0 and not skip_eval:
                tr, va = trainer.estimate_loss(step)
                finite(tr, "train loss", step)
                finite(va, "validation loss", step)
                log({"iter": step, "train_loss": tr, "val_loss": va, "kind": "eval"})
                if va < best_val:
                    best_val = va
                    save_best()
                save_last(step, evaluated=True)
                saved_step = step
                if on_step:
                    on_step({"iter": step, "eval": True, "train_loss": tr, "val_loss": va})
            skip_eval = False
            if stop():
                interrupted = True
                break
            x, y = next(it)
            ts = time.perf_counter()
            loss = finite(float(trainer._train_step(x, y)), "loss", step + 1)
            if step > p.start:  # the first step includes XLA compilation
                t_train += time.perf_counter() - ts
            lr = float(lr_at(step, cfg))
            step += 1
            if step % cfg.log_interval == 0 or step == cfg.max_iters:
                log({"iter": step, "loss": loss, "lr": lr, "kind": "train"})
            if on_step:
                on_step(
                    {
                        "iter": step,
                        "loss": loss,
                        "lr": lr,
                        "max_iters": cfg.max_iters,
                        "tokens": tokens_per_iter,
                    }
                )
            if stop():
                interrupted = True
                break
    except KeyboardInterrupt:
        interrupted = True
    timed = max(step - p.start - 1, 0)
    if interrupted:
        if saved_step != step or not (out / "last").is_dir():
            save_last(step, evaluated=False)
        wall = time.perf_counter() - t0
        return TrainResult(str(out), step, loss, float("nan"), wall, 0.0, 0.0, interrupted=True)
    val = finite(trainer.full_val_loss(), "validation loss", step)
    if val < best_val:  # the final weights are the best seen
        best_val = val
        save_best()
    save_last(step, evaluated=False)
    wall = time.perf_counter() - t0
    ms = 1000 * t_train / timed if timed else 0.0
    return TrainResult(
        out=str(out),
        iters=step,
        train_loss=loss,
        val_loss=val,
        wall_s=wall,
        tokens_per_s=tokens_per_iter * timed / t_train if t_train else 0.0,
        ms_per_iter=ms,
        sample=_sample(trainer.model, tokenizer) if sample else "",
    )


def _savez(path: str, arrays: dict[str, np.ndarray]) -> None:
    with open(path, "wb") as f:  # a file object: np.savez would append ".npz" to a name
        np.savez(f, **arrays)


class _WriteErrors:
    """Turns a failed write (a full disk, a read-only directory) into one TrainError line;
    the writer has already removed its temporaries, so the previous checkpoint stands."""

    def __init__(self, what: str, out: Path):
        self.what, self.out = what, out

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if exc is None or isinstance(exc, UserError) or not isinstance(exc, OSError):
            return False
        raise TrainError(
            f"cannot write {self.what}: {exc.strerror or exc}; stopped, the previous "
            f"checkpoint in {self.out} is intact"
        ) from None


def _sample(model, tokenizer, n: int = 120) -> str:
    from gpt2core.generate import ScratchLM
    from gpt2core.sampling import Settings

    lm = ScratchLM(model, tokenizer, name="sample")
    prompt = "\n" if tokenizer.kind == "char" and "\n" in getattr(tokenizer, "chars", []) else ""
    try:
        return lm.generate(
            prompt, Settings(max_new_tokens=n, temperature=0.8, top_k=0, seed=0)
        ).text
    except UserError:  # e.g. a character vocabulary without "\n": no sample, no crash
        return ""


__all__ = [
    "TrainConfig",
    "TrainError",
    "TrainResult",
    "train",
    "read_corpus",
    "memory_needed",
    "RECIPES",
]
