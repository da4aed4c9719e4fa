"""The Textual app: chat pane, side panel with the tensors, input line, status bar.

Blocking work (loading a model, generating) runs in thread workers that post messages
(``repl.messages``); handlers on the UI thread update widgets. The screen is up before
TensorFlow is imported: the first model loads in a worker, and prompts typed meanwhile
wait in a queue and run when it is ready.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections import deque
from collections.abc import Iterable
from pathlib import Path

from textual import on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Footer
from textual.worker import Worker, WorkerState, get_current_worker

from gpt2core.generate import TokenEvent
from repl.commands import COMMANDS
from repl.messages import (
    CompareFinished,
    GenerationFailed,
    GenerationFinished,
    ModelLoaded,
    ModelLoadFailed,
    Notice,
    TokenGenerated,
)
from repl.session import (
    Clear,
    Compare,
    Generate,
    Loader,
    LoadModel,
    Quit,
    Reply,
    Session,
    stats_line,
    user_errors,
)
from repl.widgets import (
    ChatLog,
    ChatTurn,
    CompareView,
    NoticeLine,
    PromptInput,
    SidePanel,
    StatusBar,
)


class GPT2App(App):
    CSS_PATH = "app.tcss"
    TITLE = "gpt2"
    BINDINGS = [
        Binding("escape", "stop", "Stop", id="stop"),
        Binding("ctrl+c", "interrupt", "Stop / Quit", priority=True, id="interrupt"),
        Binding("f2", "toggle_panel", "Tensors", id="toggle-panel"),
        Binding("ctrl+l", "clear", "Clear", id="clear"),
    ]

    def __init__(
        self,
        model: str = "pretrained",
        loader: Loader | None = None,
        history_path=True,
        cursor_blink: bool = True,
    ):
        super().__init__()
        self.session = Session(model=model, loader=loader, history_path=history_path)
        self.queue: deque = deque()  # actions waiting for a model or a running generation
        self.loading: str | None = model
        self.generating = False
        self.cancel = threading.Event()
        self.turn_widgets: dict[int, ChatTurn] = {}
        self._turn_counter = 0
        self._last_rate: float | None = None
        self._ctx_used: tuple[int, int] | None = None
        self._cursor_blink = cursor_blink

    # -- layout --------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        with Horizontal(id="main"):
            yield ChatLog(id="chat")
            yield SidePanel(id="panel")
        yield PromptInput(
            self.session.history.items,
            id="prompt",
            placeholder="Type a prompt, or :help",
        )
        yield StatusBar(id="status")
        yield Footer()

    def on_mount(self) -> None:
        prompt = self.query_one(PromptInput)
        prompt.cursor_blink = self._cursor_blink
        prompt.focus()
        self.chat.add(
            NoticeLine(
                f"gpt2: loading {self.session.requested}... (type away: "
                "prompts run when it is ready; :help lists commands)"
            )
        )
        self.refresh_status()
        self.load_startup()

    @property
    def chat(self) -> ChatLog:
        return self.query_one(ChatLog)

    @property
    def panel(self) -> SidePanel:
        return self.query_one(SidePanel)

    def refresh_status(self) -> None:
        lm = self.session.current
        state = (
            "generating"
            if self.generating
            else f"loading {self.loading}"
            if self.loading
            else "ready"
        )
        self.query_one(StatusBar).show(
            model=lm.name if lm else "(no model)",
            state=state,
            settings=self.session.settings,
            context=self._ctx_used,
            rate=self._last_rate,
        )

    # -- input ---------------------------------------------------------------------------
    @on(PromptInput.Submitted)
    def submitted(self, event: PromptInput.Submitted) -> None:
        event.input.value = ""
        event.input.reset_history()
        self.dispatch(self.session.handle(event.value))

    def dispatch(self, action) -> None:
        if action is None:
            return
        if isinstance(action, Quit):
            self.exit()
        elif isinstance(action, Reply):
            self.chat.add(NoticeLine(action.text, action.level))
            self.refresh_status()
        elif isinstance(action, Clear):
            self.action_clear()
        elif isinstance(action, LoadModel):
            self.chat.add(NoticeLine(f"loading {action.spec} in the background..."))
            self.loading = action.spec
            self.refresh_status()
            self.load_model(action.spec)
        elif isinstance(action, Generate | Compare):
            if self.generating or self.session.current is None:
                self.queue.append(action)
                if self.session.current is None:
                    self.chat.add(NoticeLine("queued: it runs when the model is ready"))
                return
            self.start_action(action)

    def start_action(self, action) -> None:
        self.generating = True
        self.cancel.clear()
        if isinstance(action, Compare):
            self.chat.add(
                NoticeLine(
                    f"compare: {self.session.last_scratch} vs {self.session.last_pretrained}..."
                )
            )
            self.compare(action.prompt)
        else:
            self._turn_counter += 1
            lm = self.session.current
            widget = self.chat.add(ChatTurn(lm.name, action.prompt))
            self.turn_widgets[self._turn_counter] = widget
            self.generate(self._turn_counter, action.prompt, lm)
        self.refresh_status()

    def _next_queued(self) -> None:
        if self.queue and not self.generating and self.session.current is not None:
            self.start_action(self.queue.popleft())

    # -- workers -------------------------------------------------------------------------
    @work(thread=True, exclusive=True, exit_on_error=False, group="load")
    def load_startup(self) -> None:
        lm, note = self.session.load_startup(activate=False)
        lm.warmup()  # compile before it becomes current: prompts wait in the queue
        self.post_message(ModelLoaded(lm, note))

    @work(thread=True, exclusive=True, exit_on_error=False, group="load")
    def load_model(self, spec: str) -> None:
        try:
            lm = self.session.load(spec, activate=False)
            lm.warmup()
        except user_errors() as e:
            self.post_message(ModelLoadFailed(spec, str(e)))
            return
        self.post_message(ModelLoaded(lm))

    @work(thread=True, exclusive=False, exit_on_error=False, group="generate")
    def generate(self, turn: int, prompt: str, lm) -> None:
        worker = get_current_worker()
        try:
            ids, _ = lm.prepare_prompt(prompt, self.session.settings)
            self.call_from_thread(self.panel.start, ids, lm.tokenizer)
            for event in self.session.run_turn(prompt, cancel=self.cancel, lm=lm):
                if worker.is_cancelled:
                    self.cancel.set()
                if isinstance(event, TokenEvent):
                    self.post_message(TokenGenerated(turn, event))
                else:
                    self.post_message(GenerationFinished(turn, event))
        except user_errors() as e:
            self.post_message(GenerationFailed(turn, str(e)))

    @work(thread=True, exclusive=False, exit_on_error=False, group="generate")
    def compare(self, prompt: str) -> None:
        try:
            result = self.session.run_compare(
                prompt, cancel=self.cancel, on_progress=lambda m: self.post_message(Notice(m))
            )
        except user_errors() as e:
            self.post_message(GenerationFailed(0, f"compare: {e}"))
            return
        self.post_message(CompareFinished(result))

    # -- worker messages -----------------------------------------------------------------
    @on(ModelLoaded)
    def model_loaded(self, message: ModelLoaded) -> None:
        if message.note:
            self.chat.add(NoticeLine(message.note, "error"))
        self.session.activate(message.lm)
        self.loading = None
        self._ctx_used = (0, message.lm.n_positions)
        self.chat.add(NoticeLine(f"model: {message.lm.description}"))
        self.refresh_status()
        self._next_queued()

    @on(ModelLoadFailed)
    def model_failed(self, message: ModelLoadFailed) -> None:
        self.loading = None
        current = self.session.current
        keep = f"; still using {current.name}" if current else ""
        self.chat.add(NoticeLine(f"could not load {message.spec}: {message.error}{keep}", "error"))
        self.refresh_status()

    @on(TokenGenerated)
    def token_generated(self, message: TokenGenerated) -> None:
        widget = self.turn_widgets.get(message.turn)
        if widget is not None:
            widget.append(message.event.text)
        self.panel.token(message.event)
        lm = self.session.current
        if lm is not None:
            self._ctx_used = (min(len(self.panel.output_ids), lm.n_positions), lm.n_positions)
            self.refresh_status()
        self.chat.scroll_end(animate=False)

    @on(GenerationFinished)
    def generation_finished(self, message: GenerationFinished) -> None:
        s = message.summary
        widget = self.turn_widgets.get(message.turn)
        if widget is not None:
            widget.finish("stopped" if s.stop_reason == "cancelled" else "done", stats_line(s))
        self.panel.finish(s)
        self._last_rate = s.tokens_per_s or self._last_rate
        lm = self.session.current
        n_ctx = lm.n_positions if lm else len(s.output_ids)
        self._ctx_used = (min(len(s.output_ids), n_ctx), n_ctx)
        self._done()

    @on(GenerationFailed)
    def generation_failed(self, message: GenerationFailed) -> None:
        widget = self.turn_widgets.get(message.turn)
        if widget is not None:
            widget.finish("failed")
        self.chat.add(NoticeLine(message.error, "error"))
        self._done()

    @on(CompareFinished)
    def compare_finished(self, message: CompareFinished) -> None:
        r = message.result
        toks = [
            getattr(self.session.models.get(spec), "tokenizer", None)
            for spec in (self.session.last_scratch, self.session.last_pretrained)
        ]
        self.chat.add(CompareView(r, toks))
        self._done()

    @on(Notice)
    def notice(self, message: Notice) -> None:
        self.chat.add(NoticeLine(message.text, message.level))

    def _done(self) -> None:
        self.generating = False
        self.refresh_status()
        self._next_queued()

    @on(Worker.StateChanged)
    def worker_state(self, event: Worker.StateChanged) -> None:
        """Any unexpected error in a worker becomes a one-line notice, never a crash."""
        if event.state != WorkerState.ERROR:
            return
        error = event.worker.error
        self.chat.add(NoticeLine(f"error: {type(error).__name__}: {error}", "error"))
        if event.worker.group == "load":
            self.loading = None
            if self.session.current is None and self.session.requested != "scratch":
                self.session.requested = "scratch"
                self.loading = "scratch"
                self.load_startup()
        else:
            self.generating = False
            for widget in self.turn_widgets.values():
                if widget.state == "generating":
                    widget.finish("failed")
        self.refresh_status()

    # -- actions -------------------------------------------------------------------------
    def action_stop(self) -> None:
        if self.generating:
            self.cancel.set()

    def action_interrupt(self) -> None:
        if self.generating:
            self.cancel.set()
        else:
            self.exit()

    def action_toggle_panel(self) -> None:
        self.panel.display = not self.panel.display

    def action_clear(self) -> None:
        self.chat.remove_children()
        self.turn_widgets.clear()

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for spec in COMMANDS:
            yield SystemCommand(
                f":{spec.name}",
                f"{spec.full_usage}: {spec.help}",
                lambda spec=spec: self._palette(spec),
            )

    def _palette(self, spec) -> None:
        if spec.usage and "[" not in spec.usage[:1]:
            prompt = self.query_one(PromptInput)
            prompt.value = f":{spec.name} "
            prompt.cursor_position = len(prompt.value)
            prompt.focus()
        else:
            self.dispatch(self.session.handle(f":{spec.name}"))


def make_app(model: str = "pretrained", loader: Loader | None = None, **kwargs) -> GPT2App:
    """App factory: tests inject a deterministic loader (no TensorFlow weights)."""
    return GPT2App(model=model, loader=loader, **kwargs)


@contextlib.contextmanager
def native_logs_to_file(path: Path):
    """Textual draws on ``sys.__stderr__`` (fd 2), and TensorFlow's C++ code logs to fd 2
    too, which would scribble over the screen. Give Textual a duplicate of the terminal's
    fd and send fd 2 to a log file while the app runs."""
    try:
        tty_fd = os.dup(2)
        path.parent.mkdir(parents=True, exist_ok=True)
        log_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    except OSError:
        yield
        return
    tty = os.fdopen(tty_fd, "w", encoding="utf-8", errors="replace")
    saved = sys.__stderr__, sys.stderr
    os.dup2(log_fd, 2)
    sys.__stderr__ = sys.stderr = tty
    try:
        yield
    finally:
        tty.flush()
        os.dup2(tty_fd, 2)
        sys.__stderr__, sys.stderr = saved
        tty.close()
        os.close(log_fd)


def run_app(model: str = "pretrained") -> int:
    from repl.session import data_dir

    with native_logs_to_file(data_dir() / "native.log"):
        make_app(model=model).run()
    return 0
