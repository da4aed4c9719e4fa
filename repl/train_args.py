"""The `gpt2 train` argument parser (kept apart so cli.py stays short)."""

from __future__ import annotations

import argparse


def add_train_parser(sub, func) -> None:
    p = sub.add_parser("train", help="train the scratch GPT-2 on text files")
    p.add_argument("corpus", nargs="+", metavar="CORPUS", help="UTF-8 text file(s)")
    p.add_argument("--out", required=True, metavar="DIR", help="checkpoint directory")
    p.add_argument("--preset", default=None, help="tiny | shakespeare-cpu | gpt2 | ...")
    p.add_argument("--tokenizer", default=None, help="char | gpt2 (or hub id/dir) | bpe:N")
    for name, kind, help_ in [
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
        ("--seed", int, None),
    ]:
        p.add_argument(name, type=kind, default=None, help=help_)
    p.add_argument(
        "--strategy",
        default="default",
        choices=["default", "mirrored", "multiworker"],
        help="tf.distribute strategy: one device, all local devices, or TF_CONFIG",
    )
    p.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    p.add_argument("--json", action="store_true", help="print a JSON summary as the last line")
    p.add_argument("--no-progress", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=func)
