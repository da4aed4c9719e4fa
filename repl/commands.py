"""The one command table: name, arguments, help. Both front ends, `:help`, completion and
Textual's command palette read it; the session dispatches on it."""

from __future__ import annotations

from dataclasses import dataclass

from gpt2core.sampling import USER_SETTINGS


@dataclass(frozen=True)
class CommandSpec:
    name: str
    usage: str  # the argument part, '' when it takes none
    help: str
    completions: tuple[str, ...] = ()  # argument words offered by completers

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
    CommandSpec("clear", "", "clear the chat (the transcript for :save is kept)"),
    CommandSpec("save", "FILE", "save the session as JSON (or Markdown for a .md FILE)"),
    CommandSpec("help", "", "list the commands"),
    CommandSpec("quit", "", "leave"),
)

BY_NAME = {c.name: c for c in COMMANDS}


def help_text() -> str:
    width = max(len(c.full_usage) for c in COMMANDS)
    lines = [f"{c.full_usage.ljust(width)}  {c.help}" for c in COMMANDS]
    lines.append("Anything else is a prompt. Esc or Ctrl-C stops a generation.")
    return "\n".join(lines)
