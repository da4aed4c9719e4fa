"""What every side-panel view shares: the one piece of state they render, and the base
widget. A view renders only while it is shown; the panel tells a hidden one it is stale
and it catches up when shown again."""

from __future__ import annotations

from dataclasses import dataclass, field

from rich.console import RenderableType
from rich.text import Text
from textual.widgets import Static

from gpt2core.generate import GenerationSummary, TokenEvent


@dataclass
class TurnState:
    """The turn on show: what the model saw, what it produced, its latest step."""

    input_ids: list[int] = field(default_factory=list)
    output_ids: list[int] = field(default_factory=list)
    tokenizer: object | None = None
    event: TokenEvent | None = None  # the latest step
    summary: GenerationSummary | None = None
    version: int = 0  # bumped at every change: a view draws when its copy is older
    train: object | None = None  # the run being trained in the app (views.training.TrainLog)

    def probe(self, name: str):
        """The latest step's probe ``name`` (attention, lens, pipeline), or None."""
        probes = getattr(self.event, "probes", None)
        if probes is None:
            return None
        return probes.get(name) if isinstance(probes, dict) else getattr(probes, name, None)


class PanelView(Static):
    """One view: a title, the key that shows it, the probes it needs from the model per
    step (none: it costs the model nothing), and ``render_state``."""

    DEFAULT_CSS = "PanelView { height: auto; }"
    title = "view"
    probes: frozenset[str] = frozenset()

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.drawn = -1  # the state version on screen

    def draw(self, state: TurnState, layout: bool = True) -> None:
        if self.drawn == state.version:
            return
        self.drawn = state.version
        self.update(self.render_state(state), layout=layout)

    def render_state(self, state: TurnState) -> RenderableType:
        raise NotImplementedError

    @staticmethod
    def waiting(text: str) -> Text:
        return Text(text, style="dim italic")
