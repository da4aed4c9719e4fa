"""The side panel: what the model saw and produced, step by step, as a set of views.

One container, one piece of state (``TurnState``), one widget per view (see
``repl.widgets.views``). The app feeds the panel; the panel updates the state and draws
only the view on show: a hidden view, or a hidden panel, does no work per token, and the
model is asked only for the probes the shown view needs (``wanted_probes``).
"""

from __future__ import annotations

from textual.containers import VerticalScroll
from textual.widgets import ContentSwitcher

from gpt2core.generate import GenerationSummary, TokenEvent
from repl.widgets.views import VIEWS, PanelView, TurnState


class SidePanel(VerticalScroll):
    IDS_PER_LINE = 8  # about how many ids the output tensor's text fits on a line

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.state = TurnState()
        self.renders = 0  # token batches drawn (tests check it is at most one per frame)
        self._lines = 0
        self.current = 0  # index into VIEWS

    def compose(self):
        with ContentSwitcher(initial=self._view_id(0)):
            for i, view in enumerate(VIEWS):
                yield view(id=self._view_id(i))

    def on_mount(self) -> None:
        self._title()
        self.render_panel()

    @staticmethod
    def _view_id(i: int) -> str:
        return f"view-{VIEWS[i].__name__.lower()}"

    # -- what the app reads ------------------------------------------------------------
    @property
    def input_ids(self) -> list[int]:
        return self.state.input_ids

    @property
    def output_ids(self) -> list[int]:
        return self.state.output_ids

    @property
    def view(self) -> PanelView:
        return self.query_one(f"#{self._view_id(self.current)}", PanelView)

    @property
    def wanted_probes(self) -> frozenset[str]:
        """What the model must compute per step for the view on show (nothing if hidden)."""
        return VIEWS[self.current].probes if self.display else frozenset()

    # -- what the app calls -----------------------------------------------------------
    def start(self, input_ids: list[int], tokenizer) -> None:
        s = self.state
        s.input_ids, s.output_ids = list(input_ids), list(input_ids)
        s.event, s.summary, s.tokenizer = None, None, tokenizer
        s.version += 1
        self._lines = 0
        self.render_panel()

    def tokens(self, events: list[TokenEvent]) -> None:
        """Tokens that arrived since the last frame: one draw for all of them."""
        if not events:
            return
        s = self.state
        s.output_ids.extend(e.token_id for e in events)
        s.event = events[-1]
        s.version += 1
        self.renders += 1
        # the panel's size is fixed: lay out again only when the text may have grown a line
        lines = len(s.output_ids) // self.IDS_PER_LINE
        self.render_panel(layout=lines != self._lines)
        self._lines = lines

    def finish(self, summary: GenerationSummary) -> None:
        s = self.state
        s.summary = summary
        s.input_ids, s.output_ids = list(summary.input_ids), list(summary.output_ids)
        s.version += 1
        self.render_panel()

    def render_panel(self, layout: bool = True) -> None:
        if self.display and self.is_mounted:
            self.view.draw(self.state, layout=layout)

    def show_view(self, index: int) -> None:
        self.current = index % len(VIEWS)
        self.query_one(ContentSwitcher).current = self._view_id(self.current)
        self._title()
        self.render_panel()

    def _title(self) -> None:
        self.border_title = VIEWS[self.current].title
        self.border_subtitle = f"F3 view {self.current + 1}/{len(VIEWS)}"
