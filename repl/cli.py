"""`gpt2` entry point: chat (default), generate, tokenize, train.

Nothing heavy is imported at module level: `gpt2 --help` answers at once, and
TensorFlow loads only inside the subcommand that needs it.
"""

from __future__ import annotations

import argparse
import contextlib
import sys

from gpt2core import __version__
from gpt2core.errors import UserError

USER_ERROR = 2
# Subcommands that print to the terminal while TensorFlow runs: its native log lines go to
# the log file (repl.logs), as in the app (which sets up its own); line mode too.
QUIET_COMMANDS = frozenset({"generate", "train", "tokenize", "inspect"})


# -- subcommands ---------------------------------------------------------------------------


def _text_arg(text: str) -> str:
    """A command-line argument as text: bytes that are not UTF-8 (Python keeps them as lone
    surrogates, which no tokenizer accepts) become U+FFFD, as line mode's input does."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _clip(text: str, n: int = 40) -> str:
    """What a one-line error quotes of a user's input: at most n characters."""
    return text if len(text) <= n else text[:n] + "..."


def cmd_tokenize(args: argparse.Namespace) -> int:
    from gpt2core.tokenizer import load_tokenizer, piece
    from repl.terminal import json_line, safe

    tok = load_tokenizer(args.tokenizer)
    if args.decode is not None:
        try:
            ids = [int(x) for x in args.decode.replace(" ", "").split(",") if x]
        except ValueError:
            raise UserError(
                f"--decode takes comma-separated token ids, got {_clip(args.decode)!r}"
            ) from None
        bad = [i for i in ids if not 0 <= i < tok.vocab_size]
        if bad:
            raise UserError(
                f"token id {_clip(str(bad[0]))} is outside the vocabulary (0..{tok.vocab_size - 1})"
            )
        sys.stdout.write(safe(tok.decode(ids)) + "\n")
        return 0
    if args.text is None:
        raise UserError("give TEXT to tokenize, or --decode IDS")
    ids = tok.encode(_text_arg(args.text))
    pieces = [piece(tok, i) for i in ids]
    if args.json:
        print(json_line({"ids": ids, "pieces": pieces}))
        return 0
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"{len(ids)} tokens", title_justify="left")
    table.add_column("#", justify="right", style="dim")
    table.add_column("id", justify="right", style="cyan")
    table.add_column("piece")
    for n, (i, p) in enumerate(zip(ids, pieces, strict=True)):
        table.add_row(str(n), str(i), Text(safe(repr(p))))  # Text: no [markup]
    Console().print(table)
    return 0


def _settings_from(args: argparse.Namespace):
    """The settings the sampling flags gave (one flag per user setting: _add_sampling)."""
    from gpt2core.sampling import USER_SETTINGS, Settings

    given = {k: getattr(args, k) for k in USER_SETTINGS}
    changes = {k: str(v) for k, v in given.items() if v not in (None, False)}
    return Settings().parsed(changes)


def cmd_inspect(args: argparse.Namespace) -> int:
    from gpt2core.inspect import inspect
    from gpt2core.specs import load_lm
    from repl.inspect_text import inspection_text
    from repl.terminal import json_line

    if not 1 <= args.top <= 10:
        raise UserError(f"--top must be from 1 to 10, got {args.top}")
    prompt = _text_arg(args.prompt)
    lm = load_lm(args.model)
    ins = inspect(lm, prompt, top=args.top)
    if args.json:
        print(json_line(ins.as_json()))
    else:
        print(inspection_text(ins, lm.tokenizer))
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    settings = _settings_from(args)  # bad settings fail before the model loads
    from gpt2core.generate import GenerationSummary, PromptEvent, TokenEvent
    from gpt2core.specs import load_lm
    from repl.session import tensor_text
    from repl.terminal import json_line, safe

    prompt = _text_arg(args.prompt)
    lm = load_lm(args.model)
    lm.compile_for(prompt, settings)  # so ttft and tok/s below are the model's, not XLA's
    summary = None
    out = sys.stdout
    if not args.json:
        out.write(f"model: {safe(lm.description)}\n")
    for event in lm.stream(prompt, settings):
        if isinstance(event, PromptEvent) and not args.json:
            out.write(f"input_text: {safe(prompt)}\n")
            out.write(f"input_ids: {tensor_text(event.input_ids)}\ngenerated: ")
            out.flush()
        elif isinstance(event, TokenEvent) and not args.json:
            out.write(safe(event.text))
            out.flush()
        elif isinstance(event, GenerationSummary):
            summary = event
    assert summary is not None
    if args.json:
        print(
            json_line(
                {
                    "model": summary.model,
                    "input_ids": summary.input_ids,
                    "output_ids": summary.output_ids,
                    "text": summary.text,
                    "stop_reason": summary.stop_reason,
                    "ttft_s": round(summary.ttft_s, 4),
                    "tokens_per_s": round(summary.tokens_per_s, 2),
                    "dropped_tokens": summary.dropped_tokens,
                }
            )
        )
        return 0
    out.write("\n")
    if summary.dropped_tokens:
        out.write(
            f"(prompt cut: {summary.dropped_tokens} tokens dropped from the left to fit "
            f"the {lm.n_positions}-token context)\n"
        )
    out.write(f"output_ids: {tensor_text(summary.output_ids)}\n")
    out.write(f"generated_text: {safe(summary.text)}\n")
    out.write(
        f"stop: {summary.stop_reason} | {summary.new_tokens} new tokens | ttft "
        f"{summary.ttft_s:.2f}s | {summary.tokens_per_s:.1f} tok/s\n"
    )
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from repl.train_cli import main_from_args

    return main_from_args(args)


def _terminal() -> bool:
    """Whether stdin and stdout are both a terminal: the TUI needs one to read keys from and
    draw on. With a pipe or a file on either side, chat runs in line mode, which reads
    lines (a TUI on a pipe drew escape codes into it and waited for keys forever)."""
    try:
        return sys.stdin.isatty() and sys.stdout.isatty()
    except (AttributeError, ValueError):  # closed or replaced streams
        return False


def cmd_chat(args: argparse.Namespace) -> int:
    if args.replay is not None:  # line mode: the models are the file's
        from repl.plain import run_replay

        return run_replay(args.replay)
    if args.plain:
        from repl.plain import run_plain

        return run_plain(model=args.model)
    from repl.app import run_app

    return run_app(model=args.model)


# -- parser --------------------------------------------------------------------------------


def _add_sampling(p: argparse.ArgumentParser) -> None:
    """One flag per user setting, as declared on gpt2core.sampling.Settings: a new setting
    gets its flag (and its range in --help) with no change here. Values stay strings, so
    Settings.parsed gives the same one-line errors as :set."""
    from gpt2core.sampling import USER_SETTINGS, Settings, setting_range

    defaults, fields = Settings(), Settings.__dataclass_fields__
    for name in USER_SETTINGS:
        flag, default = "--" + name.replace("_", "-"), getattr(defaults, name)
        if isinstance(default, bool):  # a switch: the flag sets it to true
            p.add_argument(flag, action="store_true", help=f"sets {name}=true")
        else:
            metavar = "X" if "float" in str(fields[name].type) else "N"
            shown = "none" if default is None else default
            p.add_argument(flag, type=str, default=None, metavar=metavar,
                           help=f"{setting_range(name)} (default {shown})")  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gpt2",
        description="A terminal REPL for GPT-2: a from-scratch TensorFlow GPT-2 beside "
        "transformers' own, streaming tokens and showing the tensors.",
    )
    parser.add_argument("--version", action="version", version=f"gpt2 {__version__}")
    sub = parser.add_subparsers(dest="command")

    chat = sub.add_parser("chat", help="the chat REPL (default)")
    chat.add_argument(
        "--model",
        default="pretrained",
        metavar="SPEC",
        help="scratch | scratch:DIR_OR_HUB_ID | pretrained | pretrained:NAME_OR_DIR",
    )
    chat.add_argument(
        "--plain",
        action="store_true",
        help="line mode (prompt_toolkit), no TUI; the default when stdin or stdout is not a "
        "terminal",
    )
    chat.add_argument(
        "--replay",
        metavar="FILE",
        help="rerun a session saved by :save (JSON), line mode: exit 0 if every turn "
        "reproduces its output_ids, 1 if any differs, 2 for a bad file",
    )
    chat.set_defaults(func=cmd_chat)

    gen = sub.add_parser("generate", help="generate once and show the tensors")
    gen.add_argument("--model", default="pretrained", metavar="SPEC")
    _add_sampling(gen)
    gen.add_argument("--json", action="store_true", help="print one JSON object")
    gen.add_argument("prompt", metavar="PROMPT")
    gen.set_defaults(func=cmd_generate)

    ins = sub.add_parser(
        "inspect", help="one forward pass: next-token candidates, logit lens, attention"
    )
    ins.add_argument("--model", default="pretrained", metavar="SPEC")
    ins.add_argument("--top", type=int, default=5, metavar="K", help="tokens per row (1-10)")
    ins.add_argument("--json", action="store_true", help="print one JSON object")
    ins.add_argument("prompt", metavar="PROMPT")
    ins.set_defaults(func=cmd_inspect)

    tok = sub.add_parser("tokenize", help="show how text becomes token ids")
    tok.add_argument("--tokenizer", default="gpt2", metavar="SPEC", help="hub id or directory")
    tok.add_argument("--json", action="store_true")
    tok.add_argument("--decode", metavar="IDS", help="comma-separated ids to turn back into text")
    tok.add_argument("text", nargs="?", metavar="TEXT")
    tok.set_defaults(func=cmd_tokenize)

    from repl.train_args import add_train_parser

    add_train_parser(sub, cmd_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version"):
        argv = ["chat", *argv]  # chat is the default command, flags included: gpt2 --plain
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args(["chat", *argv])
    if args.command == "chat" and not _terminal():
        args.plain = True  # line mode on a pipe (see _terminal)
    quiet = contextlib.nullcontext()
    if args.command in QUIET_COMMANDS or getattr(args, "plain", False):
        from repl.logs import native_logs_to_file

        quiet = native_logs_to_file()
    with quiet:
        try:
            return args.func(args)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
        except UserError as e:
            from repl.terminal import clip_error, safe

            print(f"gpt2: {safe(clip_error(str(e)))}", file=sys.stderr)
            return USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
