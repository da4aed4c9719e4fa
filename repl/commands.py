"""The one command table: name, arguments, help, handler. Both front ends, `:help`,
completion and Textual's command palette read it; the session dispatches on it. A new
command is one row here and one ``Session.cmd_<name>(arg)`` method."""

from __future__ import annotations

from dataclasses import dataclass

from gpt2core.sampling import USER_SETTINGS


@dataclass(frozen=True)
class CommandSpec:
    name: str
    usage: str  # the argument part, '' when it takes none
    help: str
    completions: tuple[str, ...] = ()  # argument words offered by completers
    handler: str = ""  # the Session method that runs it; default ``cmd_<name>``
    # whether it acts on the last turn: "always", "bare" (only with no argument) or "".
    # Typed while turns are running or queued, such a line waits for them.
    last_turn: str = ""

    def reads_last_turn(self, arg: str) -> bool:
        return self.last_turn == "always" or (self.last_turn == "bare" and not arg)

    @property
    def method(self) -> str:
        return self.handler or f"cmd_{self.name}"

    @property
    def needs_arg(self) -> bool:
        """A usage like ``TEXT`` must be given; ``[...]`` is optional."""
        return bool(self.usage) and not self.usage.startswith("[")

    @property
    def full_usage(self) -> str:
        return f":{self.name} {self.usage}".rstrip()


SETTING_KEYS = USER_SETTINGS  # declared once, on gpt2core.sampling.Settings

COMMANDS: tuple[CommandSpec, ...] = (
    CommandSpec(
        "model",
        "[scratch|pretrained][:SPEC]",
        "switch model (loads in the background); alone, show the current one",
        ("scratch", "pretrained", "scratch:", "pretrained:", "scratch:gpt2"),
    ),
    CommandSpec(
        "set",
        "key=value ...",
        f"change settings: {', '.join(SETTING_KEYS)}",
        tuple(f"{k}=" for k in SETTING_KEYS),
    ),
    CommandSpec("settings", "", "show the current settings"),
    CommandSpec("tokens", "TEXT", "show how TEXT becomes token ids (id and piece per token)"),
    CommandSpec(
        "compare", "PROMPT", "the same prompt to the scratch and the pretrained model, side by side"
    ),
    CommandSpec(
        "again",
        "[same]",
        "run the last prompt again with a new seed (same: with the same seed, the same tokens)",
        ("same",),
        last_turn="always",
    ),
    CommandSpec(
        "inspect",
        "[PROMPT]",
        "look inside for the next token: candidates, logit lens, attention (last turn if none)",
        last_turn="bare",
    ),
    CommandSpec(
        "step",
        "[PROMPT]",
        "step mode: take the model's pick or force another candidate, one token at a time "
        "(continues the last turn if no PROMPT)",
        last_turn="bare",
    ),
    CommandSpec("branches", "", "the branches of the open (or last) step-mode turn"),
    CommandSpec("branch", "N", "in step mode: switch to branch N"),
    CommandSpec(
        "train",
        "FILE|shakespeare [--preset P] [--max-iters N] [--out DIR] ... | stop",
        "train the scratch GPT-2 (the flags of gpt2 train; :train --help lists them)",
        ("shakespeare", "stop", "--preset", "--max-iters", "--out", "--tokenizer", "--resume"),
    ),
    CommandSpec("clear", "", "clear the chat (the transcript for :save is kept)"),
    CommandSpec(
        "save",
        "FILE",
        "save the session as JSON (gpt2 chat --plain --replay FILE reruns it), or Markdown "
        "for a .md FILE",
    ),
    CommandSpec("help", "", "list the commands"),
    CommandSpec("quit", "", "leave"),
)

BY_NAME = {c.name: c for c in COMMANDS}


def help_text() -> str:
    width = max(len(c.full_usage) for c in COMMANDS)
    lines = [f"{c.full_usage.ljust(width)}  {c.help}" for c in COMMANDS]
    lines.append("Anything else is a prompt. Esc or Ctrl-C stops a generation.")
    return "\n".join(lines)
