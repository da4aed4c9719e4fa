"""`gpt2 train`'s terminal front end: flags -> TrainConfig, a progress bar, signals, exit
codes. The loop itself is gpt2core.train, which knows nothing of terminals.

Signals: SIGINT, SIGTERM and SIGHUP only set a stop flag that the loop polls after each
step, so the run saves ``last/`` and exits however many of them arrive (a second Ctrl-C
does not abort a save half-way). The exit code is 128 + the first signal's number.
"""

from __future__ import annotations

import math
import signal
import sys

from gpt2core.train import train
from gpt2core.train_events import TrainDone, TrainEval, TrainEvent, TrainStarted, TrainStep
from repl.terminal import json_line, safe
from repl.train_args import config_from_args, given_settings

STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)


class StopFlag:
    """Set by the stop signals; polled by the training loop. Handlers only record."""

    def __init__(self) -> None:
        self.signals: list[int] = []
        self._old: dict[int, object] = {}

    def __call__(self) -> bool:
        return bool(self.signals)

    def _handle(self, signum, frame) -> None:
        self.signals.append(signum)

    def __enter__(self) -> StopFlag:
        for sig in STOP_SIGNALS:
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except (ValueError, OSError):  # not the main thread: leave the defaults
                pass
        return self

    def __exit__(self, *exc) -> None:
        if self.signals:
            # stopping: a late Ctrl-C must not kill the report or the exit code. Ignored,
            # not handled: Python resets its own handlers to the default at exit, so a
            # signal landing during shutdown would otherwise kill the process after all.
            for sig in self._old:
                signal.signal(sig, signal.SIG_IGN)
            return
        for sig, old in self._old.items():
            signal.signal(sig, old)


class TrainProgress:
    """Draws a run's events on a terminal stream: a header line, a rich progress bar
    (``bar=True``) or nothing between evals, and at each eval the losses and the sample.
    Used as ``train(..., on_event=progress)``; line mode uses it with ``bar=False``.
    A terminal that goes away (SIGHUP) stops the drawing, never the run."""

    def __init__(self, file=None, bar: bool = True, evals: bool = True):
        self.file = file if file is not None else sys.stderr
        self.want_bar, self.evals = bar, evals
        self.progress = None
        self.task = None
        self.dead = False

    def __call__(self, event: TrainEvent) -> None:
        if self.dead:
            return
        try:
            self._draw(event)
        except OSError:  # the terminal went away: keep training, stop drawing
            self.dead = True

    def _print(self, text: str) -> None:
        if self.progress is not None:
            self.progress.console.print(text, markup=False, highlight=False, soft_wrap=True)
        else:
            print(text, file=self.file, flush=True)

    def _draw(self, e: TrainEvent) -> None:
        if isinstance(e, TrainStarted):
            if self.evals:
                self._print(safe(describe_start(e)))
            if self.want_bar:
                self._start_bar(e)
        elif isinstance(e, TrainStep):
            if self.progress is not None:
                eta = "" if e.eta_s is None else f"  eta {_duration(e.eta_s)}"
                rate = f"  {e.tokens_per_s:,.0f} tok/s" if e.tokens_per_s else ""
                self.progress.update(
                    self.task,
                    completed=e.iter,
                    info=f"loss {e.loss:.4f}  lr {e.lr:.2e}{rate}{eta}",
                )
        elif isinstance(e, TrainEval):
            if self.evals:
                best = "  (best so far)" if e.best else ""
                self._print(
                    f"iter {e.iter}: train loss {e.train_loss:.4f}, val loss {e.val_loss:.4f}{best}"
                )
                if e.sample:
                    # a model trained on a corpus with escape bytes writes escape bytes
                    self._print(_indent(safe(e.sample)))
        elif isinstance(e, TrainDone):
            self.close()

    def _start_bar(self, e: TrainStarted) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self.progress = Progress(
            TextColumn("[bold]train"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            console=Console(file=self.file),
            transient=False,
        )
        self.task = self.progress.add_task(
            "train", total=e.max_iters, completed=e.start_iter, info="compiling..."
        )
        self.progress.start()

    def close(self) -> None:
        if self.progress is not None:
            try:
                self.progress.stop()
            except OSError:
                pass
            self.progress = None


def describe_start(e: TrainStarted) -> str:
    """One line on what is about to train, and where it goes."""
    m = e.model
    what = "resuming" if e.resumed else "training"
    replicas = f"{e.replicas} replicas ({e.strategy})" if e.replicas > 1 else "1 device"
    return (
        f"{what} {e.preset} ({m.n_layer} layers, {m.n_embd} wide, context {m.n_positions}, "
        f"{e.n_params / 1e6:.2f}M params, {e.tokenizer} tokenizer of {m.vocab_size}) on "
        f"{', '.join(e.corpus)}: {e.train_tokens:,} train / {e.val_tokens:,} val tokens, "
        f"iters {e.start_iter}->{e.max_iters}, {replicas} -> {e.out}"
    )


def _indent(text: str, width: int = 100) -> str:
    lines = text.splitlines() or [""]
    return "\n".join("    " + line[:width] for line in lines[:6])


def _duration(seconds: float) -> str:
    s = int(seconds)
    return (
        f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"
    )


def main_from_args(args) -> int:
    cfg = config_from_args(args)
    progress = TrainProgress(bar=not args.no_progress, evals=not args.no_progress)
    with StopFlag() as stop:
        try:
            result = train(
                cfg,
                resume=args.resume,
                on_event=progress,
                should_stop=stop,
                eval_samples=progress.evals,  # nobody would see them
                given=given_settings(args),
            )
        finally:
            progress.close()
    err = sys.stderr
    resume_cmd = f"gpt2 train {' '.join(cfg.corpus)} --out {result.out} --resume"
    try:
        if result.interrupted:
            why = signal.Signals(stop.signals[0]).name if stop.signals else "interrupted"
            if not stop.signals and result.strategy == "multiworker":
                why = "another worker stopped"
            saved = f"saved {result.out}/last" if result.is_chief else "the chief saved last/"
            print(
                safe(f"{why}: stopped at iter {result.iters}, {saved}; continue with {resume_cmd}"),
                file=err,
            )
            if result.is_chief:
                print(safe(f"chat with it: gpt2 chat --model scratch:{result.model_dir}"), file=err)
        elif not result.is_chief:
            print(
                f"worker done: {result.iters} iters, val loss {result.val_loss:.4f}; "
                f"the chief wrote the checkpoint",
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
                # a model trained on a corpus with escape bytes writes escape bytes
                print(f"sample:\n{safe(result.sample)}\n", file=err)
            print(safe(f"chat with it: gpt2 chat --model scratch:{result.model_dir}"), file=err)
        if args.json:
            print(json_line(_summary(result)))
    except OSError:  # no terminal left to tell (SIGHUP); the checkpoint is saved
        pass
    if result.interrupted:
        return 128 + stop.signals[0] if stop.signals else 130
    return 0


def _summary(result) -> dict:
    def num(x: float, digits: int):
        return round(x, digits) if math.isfinite(x) else None

    return {
        "out": result.out,
        "iters": result.iters,
        "train_loss": num(result.train_loss, 4),
        "val_loss": num(result.val_loss, 4),
        "wall_s": round(result.wall_s, 2),
        "tokens_per_s": round(result.tokens_per_s, 1),
        "ms_per_iter": round(result.ms_per_iter, 2),
        "interrupted": result.interrupted,
        "replicas": result.replicas,
        "strategy": result.strategy,
    }


__all__ = ["config_from_args", "main_from_args", "StopFlag", "TrainProgress", "describe_start"]
