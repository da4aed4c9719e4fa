from repl.widgets.chat import ChatLog, ChatTurn, CompareView, NoticeLine
from repl.widgets.panel import SidePanel
from repl.widgets.prompt import PromptInput
from repl.widgets.status import StatusBar

__all__ = [
    "ChatLog",
    "ChatTurn",
    "CompareView",
    "NoticeLine",
    "PromptInput",
    "SidePanel",
    "StatusBar",
]
