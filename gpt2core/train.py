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

from gpt2core.config import PRESETS, ConfigError, GPT2Config
from gpt2core.errors import UserError
from gpt2core.fsutil import atomic_write
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
        if self.preset not in PRESETS:
            raise TrainError(f"unknown preset {self.preset!r} (choose from {', '.join(PRESETS)})")
        positive = ("batch_size", "max_iters", "eval_interval", "eval_iters", "log_interval")
        for name in positive:
            if getattr(self, name) < 1:
                raise TrainError(
                    f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}"
                )
        for name in ("n_layer", "n_head", "n_embd", "block_size"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise TrainError(f"--{name.replace('_', '-')} must be >= 1, got {v}")
        if not (self.lr > 0 and 0 <= self.min_lr <= self.lr):
            raise TrainError(
                f"need --lr > 0 and 0 <= --min-lr <= --lr (got {self.lr}, {self.min_lr})"
            )
        if self.warmup_iters < 0 or self.weight_decay < 0 or self.grad_clip < 0:
            raise TrainError("--warmup-iters, --weight-decay and --grad-clip must be >= 0")
        if not 0 <= self.dropout < 1:
            raise TrainError(f"--dropout must be in [0, 1), got {self.dropout}")
        if self.strategy not in ("default", "mirrored", "multiworker"):
            raise TrainError(f"unknown --strategy {self.strategy!r}")
        tok = self.tokenizer
        if tok.startswith("bpe:"):
            try:
                int(tok[4:])
            except ValueError:
                raise TrainError(f"--tokenizer bpe:N needs an integer N, got {tok!r}") from None


# Recipes carried by presets (nanoGPT's shakespeare_char CPU run for shakespeare-cpu).
RECIPES: dict[str, dict] = {
    "shakespeare-cpu": dict(
        batch_size=12,
        max_iters=2000,
        lr=1e-3,
        min_lr=1e-4,
        warmup_iters=100,
        beta2=0.99,
        weight_decay=0.1,
        grad_clip=1.0,
        dropout=0.0,
        eval_interval=250,
        eval_iters=20,
        tokenizer="char",
    ),
}


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


def _existing_checkpoint(out: Path) -> bool:
    return (out / "config.json").exists() or (out / "last").exists()


def prepare(cfg: TrainConfig, resume: bool):
    """Everything that can fail on user input, before anything is written."""
    cfg.check()
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise TrainError(f"--out {cfg.out}: exists and is not a directory")
    start, state, saved = 0, None, None
    if resume:
        run_file = out / "last" / RUN_NAME
        if not run_file.is_file():
            raise TrainError(f"--resume: nothing to resume in {cfg.out} (no last/{RUN_NAME})")
        saved = json.loads(run_file.read_text(encoding="utf-8"))
        old = TrainConfig(**{**saved["config"], "corpus": tuple(saved["config"]["corpus"])})
        # a resumed run keeps its recipe; only the length and the output may change
        cfg = dataclasses.replace(
            old, max_iters=max(cfg.max_iters, old.max_iters), out=cfg.out, strategy=cfg.strategy
        )
        start = int(saved["step"])
    elif out.is_dir() and _existing_checkpoint(out):
        what = "a different model" if _differs(out, cfg) else "a checkpoint"
        raise TrainError(
            f"--out {cfg.out} already holds {what}: pass --resume to continue it, "
            f"or choose another --out"
        )
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
    train_ids, val_ids = split_ids(ids, model_config.n_positions)
    if resume:
        state = out / "last" / STATE_NAME
        if not state.is_file():
            raise TrainError(f"--resume: {state} is missing")
    return cfg, tokenizer, model_config, train_ids, val_ids, start, state, saved


def _differs(out: Path, cfg: TrainConfig) -> bool:
    try:
        old = GPT2Config.load(out)
    except ConfigError:
        return True
    return (cfg.n_layer or PRESETS[cfg.preset].n_layer) != old.n_layer or (
        cfg.n_embd or PRESETS[cfg.preset].n_embd
    ) != old.n_embd


def train(
    cfg: TrainConfig, resume: bool = False, on_step: Callable[[dict], None] | None = None
) -> TrainResult:
    """Run (or resume) training. ``on_step`` gets a dict per iteration (for progress bars);
    a KeyboardInterrupt raised anywhere in the loop saves ``last`` and returns."""
    cfg, tokenizer, mcfg, train_ids, val_ids, start, state, saved = prepare(cfg, resume)
    out = Path(cfg.out)
    trainer = Trainer(cfg, mcfg, tokenizer, train_ids, val_ids)
    best_val = float("inf")
    if state is not None:
        with np.load(state) as arrays:
            trainer.load_state_arrays(dict(arrays), state)
        best_val = float(saved.get("best_val", best_val))
    out.mkdir(parents=True, exist_ok=True)
    metrics = out / METRICS_NAME

    def log(record: dict) -> None:
        with open(metrics, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def save_last(step: int) -> None:
        from gpt2core.weights import save_checkpoint

        def extra(tmp: Path) -> None:
            np.savez(tmp / STATE_NAME, **trainer.state_arrays())
            run = {"config": dataclasses.asdict(cfg), "step": step, "best_val": best_val}
            (tmp / RUN_NAME).write_text(json.dumps(run, indent=1), encoding="utf-8")

        save_checkpoint(trainer.model, out / "last", tokenizer=tokenizer, extra=extra)

    def save_best() -> None:
        from safetensors.numpy import save_file

        from gpt2core.weights import SAFETENSORS_NAME, model_tensors

        if not (out / "config.json").exists():
            tokenizer.save(out)
            mcfg.save(out)
        tensors = model_tensors(trainer.model)
        atomic_write(
            out / SAFETENSORS_NAME, lambda tmp: save_file(tensors, tmp, metadata={"format": "pt"})
        )

    tokens_per_iter = cfg.batch_size * mcfg.n_positions
    step = start
    loss = float("nan")
    interrupted = False
    t_train, t0 = 0.0, time.perf_counter()
    try:
        it = iter(trainer.dataset(start))
        while step < cfg.max_iters:
            if step % cfg.eval_interval == 0:
                tr, va = trainer.estimate_loss(step)
                log({"iter": step, "train_loss": tr, "val_loss": va, "kind": "eval"})
                if va < best_val:
                    best_val = va
                    save_best()
                if on_step:
                    on_step({"iter": step, "eval": True, "train_loss": tr, "val_loss": va})
            x, y = next(it)
            ts = time.perf_counter()
            loss = float(trainer._train_step(x, y))
            if step > start:  # the first step includes XLA compilation
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
    except KeyboardInterrupt:
        interrupted = True
    save_last(step)
    timed = max(step - start - 1, 0)
    wall = time.perf_counter() - t0
    if interrupted:
        return TrainResult(str(out), step, loss, float("nan"), wall, 0.0, 0.0, interrupted=True)
    val = trainer.full_val_loss()
    if val < best_val:  # the final weights are the best seen
        best_val = val
        save_best()
    ms = 1000 * t_train / timed if timed else 0.0
    return TrainResult(
        out=str(out),
        iters=step,
        train_loss=loss,
        val_loss=val,
        wall_s=wall,
        tokens_per_s=tokens_per_iter * timed / t_train if t_train else 0.0,
        ms_per_iter=ms,
        sample=_sample(trainer.model, tokenizer),
    )


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


# -- CLI glue ------------------------------------------------------------------------------


def config_from_args(args) -> TrainConfig:
    preset = args.preset or "shakespeare-cpu"
    if preset not in PRESETS:
        raise TrainError(f"unknown preset {preset!r} (choose from {', '.join(PRESETS)})")
    values = dict(RECIPES.get(preset, {}))
    for f in dataclasses.fields(TrainConfig):
        v = getattr(args, f.name, None)
        if v is not None and f.name not in ("corpus", "out", "preset", "strategy"):
            values[f.name] = v
    return TrainConfig(
        corpus=tuple(args.corpus), out=args.out, preset=preset, strategy=args.strategy, **values
    )


def main_from_args(args) -> int:
    import sys

    cfg = config_from_args(args)
    progress = None
    if not args.no_progress:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        progress = Progress(
            TextColumn("[bold]train"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=False,
        )
    task = None
    t_last = [time.perf_counter()]

    def on_step(info: dict) -> None:
        nonlocal task
        if progress is None:
            return
        if task is None:
            task = progress.add_task(
                "train", total=info.get("max_iters", cfg.max_iters), info="compiling..."
            )
            progress.update(task, completed=info["iter"] - 1 if "loss" in info else info["iter"])
        if info.get("eval"):
            progress.console.print(
                f"iter {info['iter']}: train loss {info['train_loss']:.4f}, "
                f"val loss {info['val_loss']:.4f}"
            )
            return
        now = time.perf_counter()
        tps = info["tokens"] / max(now - t_last[0], 1e-9)
        t_last[0] = now
        progress.update(
            task,
            completed=info["iter"],
            info=f"loss {info['loss']:.4f}  lr {info['lr']:.2e}  {tps:,.0f} tok/s",
        )

    if progress:
        progress.start()
    try:
        result = train(cfg, resume=args.resume, on_step=on_step)
    finally:
        if progress:
            progress.stop()
    err = sys.stderr
    if result.interrupted:
        print(
            f"interrupted at iter {result.iters}: saved {result.out}/last; continue with "
            f"gpt2 train {' '.join(cfg.corpus)} --out {result.out} --resume",
            file=err,
        )
    else:
        print(
            f"done: {result.iters} iters, val loss {result.val_loss:.4f} (whole split), "
            f"{result.ms_per_iter:.1f} ms/iter, {result.tokens_per_s:,.0f} tok/s, "
            f"{result.wall_s:.0f}s",
            file=err,
        )
        if result.sample:
            print(f"sample:\n{result.sample}\n", file=err)
        print(f"chat with it: gpt2 chat --model scratch:{result.out}", file=err)
    if args.json:
        print(
            json.dumps(
                {
                    "out": result.out,
                    "iters": result.iters,
                    "train_loss": round(result.train_loss, 4),
                    "val_loss": None if math.isnan(result.val_loss) else round(result.val_loss, 4),
                    "wall_s": round(result.wall_s, 2),
                    "tokens_per_s": round(result.tokens_per_s, 1),
                    "ms_per_iter": round(result.ms_per_iter, 2),
                    "interrupted": result.interrupted,
                }
            )
        )
    return 130 if result.interrupted else 0


__all__ = ["TrainConfig", "TrainError", "TrainResult", "train", "read_corpus"]
