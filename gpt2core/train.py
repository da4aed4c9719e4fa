"""Training the scratch GPT-2 on text files (nanoGPT's recipe, in TensorFlow): the loop.

The parts, as nanoGPT keeps them apart:
    train_config.py  the settings, whose defaults are the recipe (TrainConfig)
    data.py          text files -> tokenizer -> ids -> split -> reproducible batches
    distribute.py    one device, the local devices, or a TF_CONFIG cluster
    rundir.py        the run directory and its one checkpoint writer
    train_events.py  what the loop tells its front ends (TrainStarted, TrainStep, ...)
    optim.py         AdamW: one flat update on one device, Keras' over many replicas
    train.py         the step, the loop (this file)

Step: cross-entropy -> gradients (XLA-compiled) -> all-reduce over replicas -> clip by
global norm -> AdamW (decay on weight matrices only) with linear warmup and cosine decay.

Crash safety: ``last/`` is saved at every eval and when the run is stopped, so a run
killed at any instant resumes from its newest complete state after ``prepare`` repairs
the directory. A run killed before its first ``last/`` starts over. --out must be new,
empty, or a run directory of ours. On a multi-worker cluster only the chief writes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import time
import zipfile
import zlib
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gpt2core import jsontext, rundir
from gpt2core.config import PRESETS, ConfigError, GPT2Config
from gpt2core.data import (
    build_tokenizer,
    encode_corpus,
    random_windows,
    read_corpus,
    split_ids,
    tiling_windows,
    val_windows,
)
from gpt2core.distribute import is_chief, make_strategy
from gpt2core.errors import UserError
from gpt2core.optim import FlatAdamW, KerasAdamW
from gpt2core.rundir import METRICS_NAME, RUN_MARKER, RUN_NAME, STATE_NAME
from gpt2core.train_config import TrainConfig, TrainError, default_out, resume_conflicts
from gpt2core.train_events import (
    TrainDone,
    TrainEval,
    TrainEvent,
    TrainResult,
    TrainSaved,
    TrainStarted,
    TrainStep,
)

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


EVAL_CALL_BYTES = 64 << 20  # an eval call's widest activation (unless one batch needs more)


# -- the trainer ---------------------------------------------------------------------------


class Trainer:
    def __init__(self, cfg: TrainConfig, model_config: GPT2Config, tokenizer, train_ids, val_ids):
        # first: a multi-worker cluster must form before TensorFlow initialises its devices
        self.strategy = make_strategy(cfg.strategy)
        from gpt2core._tf import graph_function, keras, tf
        from gpt2core.model import GPT2

        self.cfg, self.tokenizer = cfg, tokenizer
        n_rep = self.replicas = self.strategy.num_replicas_in_sync
        if cfg.batch_size % n_rep:
            raise TrainError(
                f"--batch-size {cfg.batch_size} must divide evenly over {n_rep} replicas"
            )
        self.block = model_config.n_positions
        self.train_ids = tf.constant(train_ids, tf.int32)  # (N_train,)
        self.val_ids = val_ids
        self.distributed = not (n_rep == 1 and cfg.strategy == "default")
        with self.strategy.scope():
            keras.utils.set_random_seed(cfg.seed)
            self.model = GPT2(model_config).build_weights()
            adamw = dict(
                learning_rate=lambda: lr_at(self.optimizer.iterations, cfg),
                beta_1=cfg.beta1,
                beta_2=cfg.beta2,
                weight_decay=cfg.weight_decay,
                epsilon=1e-8,  # PyTorch's (and nanoGPT's) Adam epsilon; Keras defaults to 1e-7
            )
            # one device: one update over all the weights at once (see optim.py); many
            # replicas: Keras' AdamW, which knows how to update mirrored variables
            adam = KerasAdamW if self.distributed else FlatAdamW
            self.optimizer = adam(self.model.trainable_variables, **adamw)
        self._grads = graph_function(self._loss_and_grads)
        self._eval = graph_function(self._eval_rows)
        # rows per eval call: a whole estimate at once (bigger matrices run faster than
        # eval_iters small calls), with the largest activation held to EVAL_CALL_BYTES
        mc = model_config
        widest = max(mc.vocab_size, 4 * mc.n_embd, mc.n_head * self.block)  # logits, MLP, scores
        per_row = self.block * widest * 4  # bytes of one window's widest activation
        rows = max(cfg.batch_size, EVAL_CALL_BYTES // per_row)
        self.eval_rows = min(cfg.eval_iters * cfg.batch_size, rows)
        if self.distributed:
            self._step_fn = graph_function(self._distributed_step, jit_compile=False)
        else:
            # one device: gradients, clipping and the AdamW update compile as one XLA program
            step_spec = [tf.TensorSpec([], tf.int64)]  # the step number: one trace
            self._step_fn = graph_function(self._single_step, input_signature=step_spec)

    # batches ------------------------------------------------------------------------------
    def batch(self, step, stream: int = 0):
        """The global batch of ``step``: inputs (B, T) and targets (B, T)."""
        c = self.cfg
        return random_windows(self.train_ids, self.block, c.batch_size, c.seed, step, stream)

    def steps(self, start: int):
        """An iterator of ``train_step`` inputs from ``start``: the step numbers. The step
        cuts its own batch inside the compiled program (``batch`` is TensorFlow ops), so
        there is no input pipeline to feed, to distribute, or to wait for (a tf.data
        pipeline cost 1.4 ms of a 40 ms step on 2 cores)."""
        from gpt2core._tf import tf

        return (tf.constant(s, tf.int64) for s in range(start, self.cfg.max_iters))

    def train_step(self, item, stop: bool = False) -> tuple[float, float, bool]:
        """One optimizer step: the global batch's mean loss, the learning rate it used (from
        the compiled step: computing it again on the host took 0.5 ms a step), and whether
        any worker asked to stop (``stop`` is this one's vote). On many replicas the votes
        travel with the step's all-reduce, so every worker stops after the same step: a
        worker that left alone would leave the others waiting for it in the next all-reduce
        forever."""
        if not self.distributed:
            loss, lr = self._step_fn(item)
            return float(loss), float(lr), stop
        loss, lr, votes = self._step_fn(item, 1.0 if stop else 0.0)
        return float(loss), float(lr), float(votes) > 0

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

    def _single_step(self, step):
        from gpt2core._tf import tf

        x, y = self.batch(step)  # (B, T), (B, T)
        loss, grads = self._loss_and_grads(x, y)
        if self.cfg.grad_clip > 0:
            grads, _ = tf.clip_by_global_norm(grads, self.cfg.grad_clip)
        lr = lr_at(self.optimizer.iterations, self.cfg)  # () what apply is about to use
        self.optimizer.apply(grads)
        return loss, lr

    def _replica_step(self, step, stop):
        from gpt2core._tf import tf

        ctx = tf.distribute.get_replica_context()
        votes = ctx.all_reduce(tf.distribute.ReduceOp.SUM, stop)  # () stop requests
        b = self.cfg.batch_size // self.replicas
        r = ctx.replica_id_in_sync_group  # global over workers
        x, y = self.batch(step)  # (B, T), (B, T)
        x, y = x[r * b : (r + 1) * b], y[r * b : (r + 1) * b]  # (b, T): this replica's share
        loss, grads = self._grads(x, y)
        grads = ctx.all_reduce(tf.distribute.ReduceOp.SUM, grads)  # the global-batch gradient
        if self.cfg.grad_clip > 0:
            grads, _ = tf.clip_by_global_norm(grads, self.cfg.grad_clip)
        # Keras' optimizer all-reduces (sums) again across replicas: hand it equal shares
        n = float(self.replicas)
        self.optimizer.apply([g / n for g in grads])
        return loss, votes

    def _distributed_step(self, step, stop):
        from gpt2core._tf import tf

        lr = lr_at(self.optimizer.iterations, self.cfg)  # () what this step's apply uses
        loss, votes = self.strategy.run(self._replica_step, args=(step, stop))
        loss = self.strategy.reduce(tf.distribute.ReduceOp.SUM, loss, axis=None)
        return loss, lr, self.strategy.experimental_local_results(votes)[0]

    def _eval_rows(self, x, y):
        from gpt2core._tf import tf

        logits = self.model(x, training=False)  # (R, T, V)
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)  # (R, T)
        return tf.reduce_sum(ce, axis=1)  # (R,)

    def _loss_sum(self, x: np.ndarray, y: np.ndarray) -> float:
        """Summed cross-entropy of the windows x, y (n, T), in calls of ``eval_rows`` rows:
        one compiled shape serves the estimates and the whole-split loss (the last call is
        padded with windows whose losses are left out)."""
        n, T = x.shape
        R = self.eval_rows
        total = 0.0
        for i in range(0, n, R):
            xb, yb = x[i : i + R], y[i : i + R]  # (r, T), r <= R
            r = len(xb)
            if r < R:
                pad = np.zeros((R - r, T), np.int32)
                xb, yb = np.concatenate([xb, pad]), np.concatenate([yb, pad])  # (R, T)
            total += float(np.sum(self._eval(xb, yb).numpy()[:r], dtype=np.float64))
        return total

    def estimate_loss(self, step: int) -> tuple[float, float]:
        """Mean loss over eval_iters random batches of each split (nanoGPT's estimate_loss),
        evaluated together rather than batch by batch."""
        c = self.cfg
        out = []
        for split in ("train", "val"):
            xs, ys = [], []
            for k in range(c.eval_iters):
                key = step * 1000 + k
                if split == "train":
                    x, y = (t.numpy() for t in self.batch(key, stream=1))
                else:
                    x, y = val_windows(self.val_ids, self.block, c.batch_size, c.seed, key)
                xs.append(x)
                ys.append(y)
            x, y = np.concatenate(xs), np.concatenate(ys)  # (eval_iters * B, T)
            out.append(self._loss_sum(x, y) / x.size)
        return out[0], out[1]

    def full_val_loss(self) -> float:
        """Loss over the whole validation split: every non-overlapping window, each token once."""
        x, y = tiling_windows(self.val_ids, self.block)  # (n, T), (n, T)
        return self._loss_sum(x, y) / x.size

    # state -------------------------------------------------------------------------------
    def state_arrays(self) -> dict[str, np.ndarray]:
        # model.variables, not .weights: it includes the dropout seed-generator states
        arrays = {f"model/{i}": v.numpy() for i, v in enumerate(self.model.variables)}
        # the optimizer in Keras AdamW's layout, whichever runs: saved on one device, resumed
        # on many, and back
        arrays.update({f"opt/{i}": a for i, a in enumerate(self.optimizer.state())})
        return arrays

    def load_state_arrays(self, arrays, source) -> None:
        try:
            for i, v in enumerate(self.model.variables):
                v.assign(arrays[f"model/{i}"])
            n = sum(1 for key in arrays if key.startswith("opt/"))
            self.optimizer.load_state([arrays[f"opt/{i}"] for i in range(n)])
        except (KeyError, ValueError) as e:  # Keras' shape message goes on to print arrays
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise TrainError(
                f"{source}: training state does not fit this model ({first})"
            ) from None


# -- samples -----------------------------------------------------------------------------------


SAMPLE_SHARE = 0.1  # the most of a run's time that samples may take


class Sampler:
    """Short samples from the model as it trains: one KV-cache decoder, compiled once at
    the first sample and reused (it reads the model's own variables, tied head included,
    so each sample is from the weights of that moment).

    Samples are for watching, never a cost to training: a sample stops at ``budget_s``
    after its first token; an eval's sample is skipped ("") while samples have taken more
    than SAMPLE_SHARE of the run's time so far (frequent evals, a slow model); and if the
    first sample's compile alone takes longer than ``compile_budget_s`` (a big model on a
    CPU), sampling is switched off."""

    def __init__(self, model, tokenizer, max_chars: int = 200, compile_budget_s: float = 15.0):
        self.model, self.tokenizer = model, tokenizer
        self.max_chars, self.compile_budget_s = max_chars, compile_budget_s
        self.lm = None
        self.off = False
        self.t0 = time.perf_counter()
        self.spent = 0.0  # seconds in samples, the first one's compile excluded
        chars = getattr(tokenizer, "chars", None) or []
        self.prompt = "\n" if tokenizer.kind == "char" and "\n" in chars else ""
        self.tokens = max_chars if tokenizer.kind == "char" else max(16, max_chars // 3)

    def __call__(self, budget_s: float = 1.0, always: bool = False) -> str:
        if self.off:
            return ""
        t0 = time.perf_counter()
        if self.lm is not None and not always and self.spent > SAMPLE_SHARE * (t0 - self.t0):
            return ""
        first = self.lm is None
        text = self._sample(budget_s)
        if not first:  # the first sample's time is mostly the decoder's one-off compile
            self.spent += time.perf_counter() - t0
        return text

    def _sample(self, budget_s: float) -> str:
        from gpt2core.generate import ScratchLM, TokenEvent
        from gpt2core.sampling import Settings

        first = self.lm is None
        if first:  # it reads the model's own variables, so later samples see new weights
            self.lm = ScratchLM(self.model, self.tokenizer, name="sample")
        settings = Settings(max_new_tokens=self.tokens, temperature=0.8, top_k=0, seed=0)
        pieces: list[str] = []
        t0, t_first = time.perf_counter(), None
        try:
            with contextlib.closing(self.lm.stream(self.prompt, settings)) as events:
                for ev in events:
                    if not isinstance(ev, TokenEvent):
                        continue
                    pieces.append(ev.text)
                    now = time.perf_counter()
                    if t_first is None:
                        t_first = now
                        if first and now - t0 > self.compile_budget_s:
                            self.off = True
                    elif now - t_first > budget_s:
                        break
        except UserError:  # e.g. a character vocabulary without "\n" and no end token
            self.off = True
            return ""
        return "".join(pieces)[: self.max_chars]


# -- preparing a run ---------------------------------------------------------------------------


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
    """Bytes a training step needs, roughly: float32 weights, their gradients, AdamW's
    two moments and the flat AdamW's concatenated gradient (5 copies of the parameters), the
    activations kept for backprop (about 16
    floats per embedding channel per token per layer, plus the (B, nh, T, T) attention
    scores and probabilities), and the (B, T, V) logits with their softmax and gradient."""
    L, d, T, V, nh = mcfg.n_layer, mcfg.n_embd, mcfg.n_positions, mcfg.vocab_size, mcfg.n_head
    B = batch_size
    params = V * d + T * d + L * (12 * d * d + 13 * d) + 2 * d
    activations = L * B * T * (16 * d + 2 * nh * T)
    logits = 3 * B * T * V + 64 * T * V  # training step + the 64-window validation batches
    return 4 * (5 * params + activations + logits)


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


def prepare(
    cfg: TrainConfig, resume: bool, writer: bool = True, given: Collection[str] = ()
) -> Prepared:
    """Everything that can fail on user input, before anything is written (except that a
    run directory of ours is first repaired from an interrupted save, by the ``writer``:
    a multi-worker run's other workers only read). ``given`` names the settings the user
    set (TrainConfig fields): a resumed run refuses any that differ from its saved ones."""
    cfg.check()
    out = Path(cfg.out)
    ours = rundir.check_out(out)
    if ours and writer:
        try:
            rundir.recover(out)
        except OSError as e:
            raise TrainError(f"--out {out}: cannot repair it ({e.strerror or e})") from None
    start, state, saved, restart = 0, None, None, False
    if resume:
        if not rundir.has_state(out):
            raise TrainError(f"--resume: nothing to resume in {cfg.out} (no last/{RUN_NAME})")
        run_file = out / "last" / RUN_NAME
        try:
            saved = jsontext.loads(run_file.read_text(encoding="utf-8"))
            corpus = saved["config"]["corpus"]
            if not isinstance(corpus, list) or not all(isinstance(c, str) for c in corpus):
                raise ValueError(f"corpus must be a list of file names, got {corpus!r:.80}")
            old = TrainConfig(**{**saved["config"], "corpus": tuple(corpus)})
            start = saved["step"]
            old.check()  # a hand-edited or damaged file: its types and ranges, as for flags
            if isinstance(start, bool) or not isinstance(start, int):
                raise ValueError(f"step must be an integer, got {start!r:.80}")
            if not 0 <= start <= old.max_iters:
                raise ValueError(f"step {start} is outside 0..{old.max_iters} (its --max-iters)")
            best = saved.get("best_val")
            if best is not None and (
                isinstance(best, bool)
                or not isinstance(best, int | float)
                or not math.isfinite(best)
            ):
                raise ValueError(f"best_val must be a finite number or null, got {best!r:.80}")
        except (OSError, ValueError, KeyError, TypeError, TrainError) as e:
            raise TrainError(f"{run_file}: not a training state ({e})") from None
        conflict = resume_conflicts(old, cfg, given)
        if conflict:
            raise TrainError(conflict)
        # a resumed run keeps its recipe; only the length and the output may change
        cfg = dataclasses.replace(
            old, max_iters=max(cfg.max_iters, old.max_iters), out=cfg.out, strategy=cfg.strategy
        )
        cfg.check()
    elif rundir.has_state(out):
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
    ids = encode_corpus(tokenizer, text)  # (N,)
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


class _WriteErrors:
    """Turns a failed write (a full disk, a read-only directory) into one TrainError line;
    the writer has already removed its temporaries, so the previous checkpoint stands (and
    if there is none yet, the line says so)."""

    def __init__(self, what: str, out: Path):
        self.what, self.out = what, out

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if exc is None or isinstance(exc, UserError) or not isinstance(exc, OSError):
            return False
        if rundir.has_state(self.out):
            kept = f"the previous checkpoint in {self.out} is intact"
        else:
            kept = f"no checkpoint was saved yet (run it again to start over in {self.out})"
        raise TrainError(
            f"cannot write {self.what}: {exc.strerror or exc}; stopped, {kept}"
        ) from None


def _savez(path: str, arrays: dict[str, np.ndarray]) -> None:
    with open(path, "wb") as f:  # a file object: np.savez would append ".npz" to a name
        np.savez(f, **arrays)


# -- the loop ----------------------------------------------------------------------------------


class _Pace:
    """Tokens/s over recent steps and the time left, from the steps after the compile."""

    def __init__(self, start: int, tokens_per_iter: int):
        self.start, self.tokens = start, tokens_per_iter
        self.ema: float | None = None  # seconds per step, recent steps weighted most
        self.t_ref: float | None = None  # when the first (compiling) step finished
        self.train_s, self.timed = 0.0, 0

    def step(self, step: int, dt: float, now: float) -> tuple[float, float | None]:
        """Record a step (``step`` now complete) that took ``dt`` seconds."""
        if step == self.start + 1:  # the first step includes XLA compilation
            self.t_ref = now
            return 0.0, None
        self.train_s += dt
        self.timed += 1
        self.ema = dt if self.ema is None else 0.9 * self.ema + 0.1 * dt
        per_iter = (now - self.t_ref) / (step - self.start - 1)  # evals and saves included
        return self.tokens / max(self.ema, 1e-9), per_iter

    def tokens_per_s(self) -> float:
        return self.tokens * self.timed / self.train_s if self.train_s else 0.0

    def ms_per_iter(self) -> float:
        return 1000 * self.train_s / self.timed if self.timed else 0.0


def train(
    cfg: TrainConfig,
    resume: bool = False,
    on_event: Callable[[TrainEvent], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    sample: bool = True,
    eval_samples: bool = True,
    given: Collection[str] = (),
) -> TrainResult:
    """Run (or resume) training; see gpt2core.train_events for what ``on_event`` gets.

    ``should_stop`` is polled before and after every step (a front end's signal handlers,
    or the app's Esc, set it): the run saves ``last`` and returns a result with
    ``interrupted=True`` (on many replicas, after the next step, which carries the vote
    to every worker). A KeyboardInterrupt raised in the loop (or by ``on_event``) does
    the same. ``last/`` is saved at every eval, so a run killed outright loses at most
    one eval interval; a loss that becomes NaN or infinite stops the run (TrainError),
    keeping the last good checkpoint. ``sample=False`` skips the samples (their decoder
    costs a few seconds of compiling); ``eval_samples=False`` keeps only the end's (for a
    front end that shows no evals). ``given``: the settings the user set, for ``prepare``.
    User errors raise TrainError (one line).
    """
    from gpt2core import fsutil

    emit = on_event or (lambda event: None)
    cfg.check()
    try:
        chief = is_chief(cfg.strategy)  # checks TF_CONFIG before any work
    except UserError as e:
        raise TrainError(str(e)) from None
    p = prepare(cfg, resume, writer=chief, given=given)
    cfg, tokenizer, mcfg = p.cfg, p.tokenizer, p.model_config
    out = Path(cfg.out)
    metrics = out / METRICS_NAME

    def io(what: str):
        return _WriteErrors(what, out)

    try:
        trainer = Trainer(cfg, mcfg, tokenizer, p.train_ids, p.val_ids)
    except UserError as e:  # a cluster that cannot form, a batch that does not divide
        raise TrainError(str(e)) from None

    if chief:
        with io("the run directory"):
            _open_run_dir(out, p, cfg, resume, metrics)

    best_val = float("inf")
    skip_eval = False
    if p.state is not None:
        try:
            with np.load(p.state) as arrays:
                trainer.load_state_arrays(dict(arrays), p.state)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
            # a truncated or damaged .npz (a zip): numpy passes zipfile's and zlib's errors on
            raise TrainError(f"{p.state}: cannot read the training state ({e})") from None
        if p.saved.get("best_val") is not None:
            best_val = float(p.saved["best_val"])
        skip_eval = bool(p.saved.get("evaluated", False))

    def log(record: dict) -> None:
        if chief:
            with io(str(metrics)):
                fsutil.append_line(metrics, json.dumps(record, allow_nan=False))

    def save_last(step: int, evaluated: bool) -> None:
        if not chief:
            return

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
            rundir.save(trainer.model, out / "last", tokenizer, extra=extra)
        emit(TrainSaved(str(out / "last"), step, best=False))

    def save_best(step: int) -> None:
        if not chief:
            return
        with io(str(out)):
            rundir.save(trainer.model, out, tokenizer, beside=True)
        emit(TrainSaved(str(out), step, best=True))

    def finite(value: float, what: str, step: int) -> float:
        if not math.isfinite(value):
            raise TrainError(
                f"the {what} became {value} at iter {step}: training diverged (try a lower "
                f"--lr); stopped, keeping the last good checkpoint in {out / 'last'}"
            )
        return value

    tokens_per_iter = cfg.batch_size * mcfg.n_positions
    sampler = Sampler(trainer.model, tokenizer) if sample and chief else None
    t0 = time.perf_counter()
    emit(
        TrainStarted(
            out=str(out),
            corpus=tuple(cfg.corpus),
            preset=cfg.preset,
            model=mcfg,
            tokenizer=tokenizer.kind,
            n_params=mcfg.num_params(),
            start_iter=p.start,
            max_iters=cfg.max_iters,
            batch_size=cfg.batch_size,
            tokens_per_iter=tokens_per_iter,
            eval_interval=cfg.eval_interval,
            train_tokens=len(p.train_ids),
            val_tokens=len(p.val_ids),
            replicas=trainer.replicas,
            strategy=cfg.strategy,
            is_chief=chief,
            resumed=resume,
        )
    )
    step = saved_step = p.start
    loss = float("nan")
    interrupted = False
    stop = should_stop or (lambda: False)
    pace = _Pace(p.start, tokens_per_iter)
    try:
        items = trainer.steps(p.start)
        while step < cfg.max_iters:
            if step % cfg.eval_interval == 0 and not skip_eval:
                tr, va = trainer.estimate_loss(step)
                finite(tr, "train loss", step)
                finite(va, "validation loss", step)
                log({"iter": step, "train_loss": tr, "val_loss": va, "kind": "eval"})
                better = va < best_val
                text = sampler() if sampler is not None and eval_samples else ""
                emit(TrainEval(step, tr, va, best=better, sample=text))
                if better:
                    best_val = va
                    save_best(step)
                save_last(step, evaluated=True)
                saved_step = step
            skip_eval = False
            want = stop()
            if want and not trainer.distributed:
                interrupted = True
                break
            item = next(items)
            ts = time.perf_counter()
            loss, lr, anyone = trainer.train_step(item, want)
            loss = finite(loss, "loss", step + 1)
            now = time.perf_counter()
            step += 1
            if step % cfg.log_interval == 0 or step == cfg.max_iters:
                log({"iter": step, "loss": loss, "lr": lr, "kind": "train"})
            rate, per_iter = pace.step(step, now - ts, now)
            eta = None if per_iter is None else per_iter * (cfg.max_iters - step)
            emit(TrainStep(step, cfg.max_iters, loss, lr, rate, eta, now - t0))
            # many replicas stop together, after the step that carried a stop vote
            if anyone if trainer.distributed else stop():
                interrupted = True
                break
    except KeyboardInterrupt:
        interrupted = True
    if interrupted:
        if chief and (saved_step != step or not (out / "last").is_dir()):
            save_last(step, evaluated=False)
        result = TrainResult(
            str(out),
            step,
            loss,
            float("nan"),
            time.perf_counter() - t0,
            pace.tokens_per_s(),
            pace.ms_per_iter(),
            interrupted=True,
            replicas=trainer.replicas,
            strategy=cfg.strategy,
            is_chief=chief,
        )
        emit(TrainDone(result))
        return result
    val = finite(trainer.full_val_loss(), "validation loss", step)
    if val < best_val:  # the final weights are the best seen
        best_val = val
        save_best(step)
    save_last(step, evaluated=False)
    result = TrainResult(
        out=str(out),
        iters=step,
        train_loss=loss,
        val_loss=val,
        wall_s=time.perf_counter() - t0,
        tokens_per_s=pace.tokens_per_s(),
        ms_per_iter=pace.ms_per_iter(),
        sample=sampler(budget_s=3.0, always=True) if sampler is not None else "",
        replicas=trainer.replicas,
        strategy=cfg.strategy,
        is_chief=chief,
    )
    emit(TrainDone(result))
    return result


def _open_run_dir(out: Path, p: Prepared, cfg: TrainConfig, resume: bool, metrics: Path) -> None:
    from gpt2core import fsutil

    fsutil.make_dir(out)
    if p.restart:  # ours, but killed before its first resumable state: start over
        for name in rundir.RUN_FILES:  # config.json first: from then on, no checkpoint here
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
            for r in rundir.read_metrics(metrics)
            if r["iter"] < p.start
            or (r["iter"] == p.start and (r.get("kind") == "train" or evaluated))
        ]
        fsutil.atomic_write_text(metrics, "".join(json.dumps(r) + "\n" for r in kept))


__all__ = [
    "TrainConfig",
    "TrainError",
    "TrainResult",
    "TrainEvent",
    "TrainStarted",
    "TrainStep",
    "TrainEval",
    "TrainSaved",
    "TrainDone",
    "Trainer",
    "train",
    "prepare",
    "read_corpus",
    "build_tokenizer",
    "split_ids",
    "default_out",
    "memory_needed",
]
