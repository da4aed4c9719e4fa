from repl.widgets.chat import ChatLog, ChatTurn, CompareView, NoticeLine, QueuedLine
from repl.widgets.panel import SidePanel
from repl.widgets.prompt import PromptInput
from repl.widgets.status import StatusBar

__all__ = [
    "ChatLog",
    "ChatTurn",
    "CompareView",
    "NoticeLine",
    "PromptInput",
    "QueuedLine",
    "SidePanel",
    "StatusBar",
]
