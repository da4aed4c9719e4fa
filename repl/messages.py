"""Messages from worker threads to the Textual app. Workers never touch widgets: they
post these, and handlers on the UI thread update the screen."""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message

from gpt2core.generate import GenerationSummary
from repl.loads import LoadEvent
from repl.session import CompareResult


@dataclass
class GenerationStarted(Message):
    turn: int
    input_ids: list[int]
    tokenizer: object


@dataclass
class TokensReady(Message):
    """New tokens wait in the app's token buffer (one message however many arrived)."""

    turn: int


@dataclass
class GenerationFinished(Message):
    turn: int
    summary: GenerationSummary


@dataclass
class GenerationFailed(Message):
    turn: int
    error: str


@dataclass
class LoadReport(Message):
    event: LoadEvent


@dataclass
class CompareFinished(Message):
    result: CompareResult


@dataclass
class StepUpdate(Message):
    """Step mode moved (or could not: ``error``); the app redraws from the stepper."""

    stepper: object
    error: str | None = None


@dataclass
class TrainReport(Message):
    """An event of the run training in the app (gpt2core.train_events), or its failure."""

    event: object | None
    error: str | None = None


@dataclass
class Notice(Message):
    text: str
    level: str = "info"
    follows_turn: bool = False  # the running :compare's progress: shown in its place
