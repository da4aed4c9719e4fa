"""Messages from worker threads to the Textual app. Workers never touch widgets: they
post these, and handlers on the UI thread update the screen."""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message

from gpt2core.generate import GenerationSummary, LanguageModel, TokenEvent
from repl.session import CompareResult


@dataclass
class TokenGenerated(Message):
    turn: int
    event: TokenEvent


@dataclass
class GenerationFinished(Message):
    turn: int
    summary: GenerationSummary


@dataclass
class GenerationFailed(Message):
    turn: int
    error: str


@dataclass
class ModelLoaded(Message):
    lm: LanguageModel
    note: str | None = None


@dataclass
class ModelLoadFailed(Message):
    spec: str
    error: str


@dataclass
class CompareFinished(Message):
    result: CompareResult


@dataclass
class Notice(Message):
    text: str
    level: str = "info"
