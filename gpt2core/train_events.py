"""What a training run tells its front ends: one callback, five frozen event types.

``gpt2core.train.train(cfg, on_event=...)`` calls ``on_event`` with these, synchronously,
on the thread that called ``train`` (a worker thread in the app: post a message from the
callback, never touch widgets there). An exception raised by the callback propagates out
of ``train``, except ``KeyboardInterrupt``, which stops the run and saves ``last/`` like
Ctrl-C. Order of one run::

    TrainStarted
    TrainEval, TrainSaved(best=True) if val improved, TrainSaved(best=False)
                                       at iter 0, eval_interval, 2 * eval_interval, ...
    TrainStep                          after every optimizer step (iter 1 .. max_iters)
    ...
    TrainSaved(best=True)?, TrainSaved(best=False)    at the end, after the whole-split
                                                      val loss (or when stopped: last/)
    TrainDone

TrainStep comes at every step (hundreds per second for a tiny model): a UI should keep
the latest and redraw on a timer. ``TrainEval.sample`` is "" when sampling is off or would
cost too much (see gpt2core.train.Sampler).

No TensorFlow here (and no UI): a front end imports this module at no cost. On a
multi-worker run only the chief writes, so the other workers emit no ``TrainSaved``.
"""

from __future__ import annotations

from dataclasses import dataclass

from gpt2core.config import GPT2Config


@dataclass(frozen=True)
class TrainResult:
    """How a run ended. ``val_loss`` is over the whole validation split (NaN when the run
    was stopped before its final evaluation)."""

    out: str
    iters: int
    train_loss: float
    val_loss: float
    wall_s: float
    tokens_per_s: float
    ms_per_iter: float
    interrupted: bool = False
    sample: str = ""
    replicas: int = 1
    strategy: str = "default"
    is_chief: bool = True  # False: a multi-worker run's other worker, which wrote nothing

    @property
    def model_dir(self) -> str:
        """The checkpoint to chat with: ``out`` (the best evaluated weights) after a run
        that finished; ``out/last`` (the weights at the step it stopped) after one that was
        stopped, whose best evaluation may be its untrained start."""
        return f"{self.out}/last" if self.interrupted else self.out


@dataclass(frozen=True)
class TrainStarted:
    """Everything is checked and the model is built; the first XLA compile comes next
    (several seconds on a CPU: show "compiling" until the first TrainEval or TrainStep)."""

    out: str  # the run directory
    corpus: tuple[str, ...]  # as given (e.g. "shakespeare" for the bundled corpus)
    preset: str
    model: GPT2Config  # the model being trained (vocab_size set by the tokenizer)
    tokenizer: str  # "char", "gpt2" or "bpe"
    n_params: int
    start_iter: int  # 0, or where a resumed run continues
    max_iters: int
    batch_size: int  # the global batch, split over the replicas
    tokens_per_iter: int  # batch_size * block_size
    eval_interval: int
    train_tokens: int
    val_tokens: int
    replicas: int  # tf.distribute's num_replicas_in_sync
    strategy: str  # "default", "mirrored" or "multiworker"
    is_chief: bool  # False on a multi-worker run's other workers: they write nothing
    resumed: bool


@dataclass(frozen=True)
class TrainStep:
    """One optimizer step done; ``iter`` steps are complete (1 .. max_iters)."""

    iter: int
    max_iters: int
    loss: float  # this step's training loss (one batch)
    lr: float  # the learning rate this step used
    tokens_per_s: float  # over recent steps; 0.0 until one step past the compile
    eta_s: float | None  # seconds to max_iters at the pace so far (evals included)
    elapsed_s: float  # since TrainStarted


@dataclass(frozen=True)
class TrainEval:
    """Losses estimated at ``iter`` (nanoGPT's estimate_loss: eval_iters random batches of
    each split) and a short sample from the model as it is now."""

    iter: int
    train_loss: float
    val_loss: float
    best: bool  # the lowest val loss so far: the top of the run directory is now this model
    sample: str  # up to ~200 characters; "" when sampling is off or would be too slow


@dataclass(frozen=True)
class TrainSaved:
    """A checkpoint is complete on disk (it loads from ``path`` from now on)."""

    path: str  # the run directory (best=True) or its last/ (best=False)
    iter: int
    best: bool


@dataclass(frozen=True)
class TrainDone:
    """The run returned (finished, or stopped and saved); the last event of a run. A run
    that fails (a TrainError) raises instead and sends no TrainDone."""

    result: TrainResult


TrainEvent = TrainStarted | TrainStep | TrainEval | TrainSaved | TrainDone

__all__ = [
    "TrainEvent",
    "TrainStarted",
    "TrainStep",
    "TrainEval",
    "TrainSaved",
    "TrainDone",
    "TrainResult",
]
