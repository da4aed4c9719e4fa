"""`gpt2 train`'s terminal front end: flags -> TrainConfig, a progress bar, signals, exit
codes. The loop itself is gpt2core.train, which knows nothing of terminals.

Signals: SIGINT, SIGTERM and SIGHUP only set a stop flag that the loop polls after each
step, so the run saves ``last/`` and exits however many of them arrive (a second Ctrl-C
does not abort a save half-way). The exit code is 128 + the first signal's number.
"""

from __future__ import annotations

import dataclasses
import math
import signal
import sys
import time

from gpt2core.config import PRESETS
from gpt2core.train import RECIPES, TrainConfig, TrainError, train
from repl.terminal import json_line, safe

STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)


def config_from_args(args) -> TrainConfig:
    preset = args.preset or "shakespeare-cpu"
    if preset not in PRESETS:
        raise TrainError(f"unknown preset {preset!r} (choose from {', '.join(PRESETS)})")
    values = dict(RECIPES.get(preset, {}))
    for f in dataclasses.fields(TrainConfig):
        v = getattr(args, f.name, None)
        if v is not None and f.name not in ("corpus", "out", "preset", "strategy"):
            values[f.name] = v
    if args.resume and getattr(args, "max_iters", None) is None:
        values["max_iters"] = 1  # a resumed run keeps its own length unless told otherwise
    return TrainConfig(
        corpus=tuple(args.corpus), out=args.out, preset=preset, strategy=args.strategy, **values
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
        for sig, old in self._old.items():
            signal.signal(sig, old)


def _progress_bar(cfg: TrainConfig, enabled: bool):
    """A rich progress bar on stderr and the on_step callback that drives it."""
    progress = None
    if enabled:
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
    state = {"task": None, "t_last": time.perf_counter(), "progress": progress}

    def on_step(info: dict) -> None:
        bar = state["progress"]
        if bar is None:
            return
        try:
            _draw(bar, state, info, cfg)
        except OSError:  # the terminal went away (SIGHUP): keep training, stop drawing
            state["progress"] = None

    return progress, on_step


def _draw(progress, state: dict, info: dict, cfg: TrainConfig) -> None:
    if state["task"] is None:
        state["task"] = progress.add_task(
            "train", total=info.get("max_iters", cfg.max_iters), info="compiling..."
        )
        progress.update(
            state["task"], completed=info["iter"] - 1 if "loss" in info else info["iter"]
        )
    if info.get("eval"):
        progress.console.print(
            f"iter {info['iter']}: train loss {info['train_loss']:.4f}, "
            f"val loss {info['val_loss']:.4f}"
        )
        return
    now = time.perf_counter()
    tps = info["tokens"] / max(now - state["t_last"], 1e-9)
    state["t_last"] = now
    progress.update(
        state["task"],
        completed=info["iter"],
        info=f"loss {info['loss']:.4f}  lr {info['lr']:.2e}  {tps:,.0f} tok/s",
    )


def main_from_args(args) -> int:
    cfg = config_from_args(args)
    progress, on_step = _progress_bar(cfg, enabled=not args.no_progress)
    with StopFlag() as stop:
        if progress:
            progress.start()
        try:
            result = train(cfg, resume=args.resume, on_step=on_step, should_stop=stop)
        finally:
            if progress:
                try:
                    progress.stop()
                except OSError:
                    pass
    err = sys.stderr
    resume_cmd = f"gpt2 train {' '.join(cfg.corpus)} --out {result.out} --resume"
    try:
        if result.interrupted:
            why = signal.Signals(stop.signals[0]).name if stop.signals else "interrupted"
            print(
                safe(
                    f"{why}: stopped at iter {result.iters}, saved {result.out}/last; "
                    f"continue with {resume_cmd}"
                ),
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
            print(safe(f"chat with it: gpt2 chat --model scratch:{result.out}"), file=err)
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
    }


__all__ = ["config_from_args", "main_from_args", "StopFlag"]
