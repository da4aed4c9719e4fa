"""The side panel's views. A new view is one module here and one entry in ``VIEWS``."""

from repl.widgets.views.attention import AttentionView
from repl.widgets.views.base import PanelView, TurnState
from repl.widgets.views.lens import LensView
from repl.widgets.views.next_token import NextTokenView
from repl.widgets.views.tensors import TensorsView
from repl.widgets.views.tokens import TokensView
from repl.widgets.views.training import TrainingView, TrainLog

VIEWS: tuple[type[PanelView], ...] = (
    TensorsView,
    TokensView,
    NextTokenView,
    AttentionView,
    LensView,
    TrainingView,
)

__all__ = ["VIEWS", "PanelView", "TurnState", "TrainLog", *[v.__name__ for v in VIEWS]]
