"""`gpt2 train`'s flags, and the same flags for `:train` inside the app and line mode.

One parser builds both: ``add_train_parser`` hangs it under `gpt2`, and
``parse_train_args("shakespeare --max-iters 200")`` parses a command's argument string
into a checked ``TrainRequest``, raising a one-line ``TrainError`` (or ``TrainHelp`` for
``--help``) instead of exiting the process as argparse would.
"""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from gpt2core.distribute import STRATEGIES
from gpt2core.train_config import TrainConfig, TrainError, default_out

# flag -> (type, help); each maps to the TrainConfig field of the same name
SETTINGS = [
    ("--n-layer", int, None),
    ("--n-head", int, None),
    ("--n-embd", int, None),
    ("--block-size", int, "context length"),
    ("--batch-size", int, None),
    ("--max-iters", int, None),
    ("--lr", float, "peak learning rate"),
    ("--min-lr", float, None),
    ("--warmup-iters", int, None),
    ("--weight-decay", float, None),
    ("--grad-clip", float, None),
    ("--dropout", float, None),
    ("--eval-interval", int, None),
    ("--eval-iters", int, None),
    ("--log-interval", int, argparse.SUPPRESS),
    ("--seed", int, None),
]


class TrainHelp(Exception):
    """``--help`` was asked for; ``text`` is the usage to show."""

    def __init__(self, text: str):
        super().__init__(text)
        self.text = text


@dataclass(frozen=True)
class TrainRequest:
    config: TrainConfig
    resume: bool = False
    json: bool = False
    progress: bool = True
    given: frozenset[str] = frozenset()  # the settings the command line set (for --resume)


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "corpus",
        nargs="+",
        metavar="CORPUS",
        help="UTF-8 text file(s), or 'shakespeare' for the bundled Tiny Shakespeare",
    )
    p.add_argument(
        "--out", default=None, metavar="DIR", help="run directory (default: runs/<corpus name>)"
    )
    p.add_argument("--preset", default=None, help="shakespeare-cpu (default) | tiny | gpt2 | ...")
    p.add_argument("--tokenizer", default=None, help="char (default) | gpt2 (or dir) | bpe:N")
    for name, kind, help_ in SETTINGS:
        p.add_argument(name, type=kind, default=None, help=help_)
    p.add_argument(
        "--strategy",
        default=None,
        choices=list(STRATEGIES),
        help="tf.distribute strategy: one device, all local devices, or TF_CONFIG's cluster",
    )
    p.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    p.add_argument("--json", action="store_true", help="print a JSON summary as the last line")
    p.add_argument("--no-progress", action="store_true", help=argparse.SUPPRESS)


def add_train_parser(sub, func) -> None:
    """`gpt2 train` under the `gpt2` command's subparsers."""
    p = sub.add_parser("train", help="train the scratch GPT-2 on text files")
    _add_arguments(p)
    p.set_defaults(func=func)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig a parsed command line asks for: flags not given keep the recipe's
    defaults (TrainConfig's own), --out defaults to runs/<corpus name>."""
    options = {
        name.lstrip("-").replace("-", "_"): getattr(args, name.lstrip("-").replace("-", "_"))
        for name, _, _ in SETTINGS
    }
    if args.resume and options["max_iters"] is None:
        options["max_iters"] = 1  # a resumed run keeps its own length unless told otherwise
    return TrainConfig.from_options(
        args.corpus,
        args.out or default_out(args.corpus),
        preset=args.preset,
        tokenizer=args.tokenizer,
        strategy=args.strategy,
        **options,
    )


def given_settings(args: argparse.Namespace) -> frozenset[str]:
    """The TrainConfig fields a parsed command line set: flags not given parse as None."""
    names = [name.lstrip("-").replace("-", "_") for name, _, _ in SETTINGS]
    return frozenset(n for n in [*names, "preset", "tokenizer"] if getattr(args, n) is not None)


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing and exiting (for `:train` in the app)."""

    def error(self, message: str):
        raise TrainError(f":train: {message} (see :train --help)")

    def print_help(self, file=None) -> None:
        pass  # --help raises TrainHelp from exit() below

    def exit(self, status: int = 0, message: str | None = None):
        if status == 0:
            raise TrainHelp(self.format_help())
        raise TrainError((message or ":train: bad arguments").strip())


def parse_train_args(argv: str | Sequence[str]) -> TrainRequest:
    """Parse `:train`'s arguments (a string, split like a shell would, or a list) into a
    checked request. Raises TrainError (one line) or TrainHelp; reads and writes nothing."""
    if isinstance(argv, str):
        try:
            argv = shlex.split(argv)
        except ValueError as e:
            raise TrainError(f":train: {e}") from None
    parser = _Parser(prog=":train", description="train the scratch GPT-2 on text files")
    _add_arguments(parser)
    args = parser.parse_args(list(argv))
    cfg = config_from_args(args)
    cfg.check()
    return TrainRequest(
        cfg,
        resume=args.resume,
        json=args.json,
        progress=not args.no_progress,
        given=given_settings(args),
    )


__all__ = [
    "add_train_parser",
    "config_from_args",
    "given_settings",
    "parse_train_args",
    "TrainRequest",
    "TrainHelp",
]
