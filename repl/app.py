"""The Textual app: chat pane, side panel with the tensors, input line, status bar.

Blocking work (loading a model, generating) runs in thread workers that post messages
(``repl.messages``); handlers on the UI thread update widgets. The screen is up before
TensorFlow is imported: the first model loads in a worker, and prompts typed meanwhile
wait in a queue and run when it is ready.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from textual import on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer
from textual.worker import Worker, WorkerState, get_current_worker

from gpt2core.generate import PromptEvent, TokenEvent
from repl.collector import Collector
from repl.commands import COMMANDS
from repl.loads import Compiling, LoadDone, LoadDropped, LoadFailed, ModelLoads
from repl.messages import (
    CompareFinished,
    GenerationFailed,
    GenerationFinished,
    GenerationStarted,
    LoadReport,
    Notice,
    StepUpdate,
    TokensReady,
    TrainReport,
)
from repl.session import (
    Clear,
    Compare,
    Generate,
    Inspect,
    Loader,
    LoadModel,
    Quit,
    Reply,
    Session,
    StepStart,
    SwitchBranch,
    TrainStart,
    TrainStop,
    clean_input,
    stats_line,
    step_pieces,
    user_errors,
)
from repl.widgets import (
    ChatLog,
    ChatTurn,
    CompareView,
    NoticeLine,
    PromptInput,
    QueuedLine,
    SidePanel,
    StatusBar,
)
from repl.widgets.views import AttentionView, NextTokenView, TrainingView, TrainLog


@dataclass(frozen=True)
class Held:
    """A typed line that acts on the last turn, held in the queue until the turns before
    it are done (see ``Session.reads_last_turn``)."""

    line: str


class NoWaitExecutor(ThreadPoolExecutor):
    """A thread pool whose shutdown does not wait for running calls (see on_mount)."""

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        super().shutdown(wait=False, cancel_futures=True)


class GPT2App(App):
    CSS_PATH = "app.tcss"
    TITLE = "gpt2"
    # Below NARROW columns the panel (at least 32 wide) left the chat a few columns, or
    # none: it starts hidden there (F2 still shows it). The class goes on the screen.
    NARROW = 72
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (NARROW, "-wide")]
    BINDINGS = [
        Binding("escape", "stop", "Stop", id="stop"),
        Binding("ctrl+c", "interrupt", "Stop / Quit", priority=True, id="interrupt"),
        Binding("f2", "toggle_panel", "Panel", id="toggle-panel"),
        Binding("f3", "next_view", "View", id="next-view"),
        Binding("f4", "colour", "Surprisal", id="colour"),
        # step mode (active only while a step-mode turn is open: see check_action)
        Binding("enter,right", "step_accept", "Take pick", id="step-accept", priority=True),
        *[
            Binding(str(k), f"step_force({k})", "Force 1-9", show=k == 1, priority=True)
            for k in range(1, 10)
        ],
        Binding("backspace,left", "step_undo", "Undo", id="step-undo", priority=True),
        Binding("f5", "layer(-1)", "Layer-", id="layer-down", priority=True),
        Binding("f6", "layer(1)", "Layer+", id="layer-up", priority=True),
        Binding("f7", "head(-1)", "Head-", id="head-down", priority=True),
        Binding("f8", "head(1)", "Head+", id="head-up", priority=True),
        Binding("ctrl+l", "clear", "Clear", id="clear"),
    ]
    # Tokens are drawn at most this often, however fast they come: one frame of the chat
    # and the panel costs tens of milliseconds of the interpreter the decoder needs too.
    FRAME_S = 1 / 15
    # ... and less often when frames are dear: the UI thread keeps to about UI_SHARE of
    # the time (measured as its own CPU time per frame), so a decoder that needs the
    # interpreter (a small model) or the cores (a loaded machine) is not slowed by drawing.
    UI_SHARE = 0.1
    SWITCH_INTERVAL_S = 0.0005  # the interpreter's thread switch interval (see on_mount)
    MAX_FRAME_S = 0.25
    TRAIN_DRAW_S = 0.25  # training steps reach the UI in batches at most this often
    QUEUE_SHOWN = 20  # queued prompts shown as turns; the rest are counted in the status bar

    def __init__(
        self,
        model: str = "pretrained",
        loader: Loader | None = None,
        history_path=True,
        cursor_blink: bool = True,
    ):
        super().__init__()
        self.session = Session(model=model, loader=loader, history_path=history_path)
        self.loads = ModelLoads(self.session, lambda e: self.post_message(LoadReport(e)))
        # What waits to run, in the order typed, each with its place in the chat: a queued
        # ChatTurn, a QueuedLine (:compare, :step, a held :again), or None past QUEUE_SHOWN
        self.queue: deque[tuple[Generate | Compare | StepStart | Held, Widget | None]] = deque()
        self.generating = False
        self.cancel = threading.Event()  # the running turn's; each turn gets a fresh one
        self.turn_widgets: dict[int, ChatTurn] = {}
        self._turn_counter = 0
        self._running_turn = 0
        self._token_buffer: deque = deque()  # (turn, TokenEvent) from the worker thread
        self._tokens_posted = threading.Event()
        self._last_draw = 0.0
        self._frame_s = self.FRAME_S  # the interval now (see UI_SHARE)
        self._ui_cpu = 0.0  # the UI thread's CPU time at the last draw
        self._switch_interval = sys.getswitchinterval()
        self._draw_timer = None
        self._last_rate: float | None = None
        self._ctx_used: tuple[int, int] | None = None
        self._cursor_blink = cursor_blink
        self._compiling = 0
        self.train_stop: threading.Event | None = None  # set: the run in the app stops
        self._turn_started = 0.0  # when the running turn started (monotonic)
        self._last_stop_key = -1e9  # when Esc or Ctrl-C was last pressed
        self._train_stop_asked = -1e9  # when Esc last asked to confirm stopping training
        self.stepper = None  # the open step-mode turn, if any
        self._step_turn: tuple[ChatTurn, str] | None = None  # its widget and prompt
        # where the running :compare or :step shows what it adds later (its progress, its
        # result, its errors): its place in the chat, above the prompts queued after it
        self._anchor: Widget | None = None
        self._step_lock = threading.Lock()
        self.collector = Collector()  # keeps the collector's passes short (repl.collector)

    # -- layout --------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        with Horizontal(id="main"):
            yield ChatLog(id="chat")
            yield SidePanel(id="panel")
        yield PromptInput(
            self.session.history.items,
            id="prompt",
            placeholder="Type a prompt, or :help (Ctrl+J: new line)",
        )
        yield StatusBar(id="status")
        yield Footer()

    def on_mount(self) -> None:
        # Thread workers run in the loop's default executor, which asyncio waits for when
        # the app ends: a quit would hang until a slow call returned. This one does not wait.
        asyncio.get_running_loop().set_default_executor(NoWaitExecutor(max_workers=4))
        # The decoder thread needs the interpreter for about a millisecond per token; with
        # Python's default 5 ms switch interval it waited out the UI thread's frames
        # (measured at 124M: the app streamed at 0.93x its engine with 5 ms, 0.97-1.02x
        # with 0.5 ms; see benchmarks/RESULTS.md).
        self._switch_interval = sys.getswitchinterval()  # the process's, back at unmount
        sys.setswitchinterval(self.SWITCH_INTERVAL_S)
        prompt = self.query_one(PromptInput)
        prompt.cursor_blink = self._cursor_blink
        prompt.focus()
        self.chat.add(
            NoticeLine(
                f"gpt2: loading {self.session.requested}... (type away: "
                "prompts run when it is ready; :help lists commands)"
            )
        )
        try:
            self.session.wanted_model = self.session.key(self.session.requested)
        except user_errors():
            self.session.wanted_model = None  # the load reports the bad spec
        self.loads.request(self.session.requested, startup=True)
        self.refresh_status()

    @property
    def loading(self) -> str | None:
        return self.loads.wanted()

    @property
    def chat(self) -> ChatLog:
        return self.query_one(ChatLog)

    @property
    def panel(self) -> SidePanel:
        return self.query_one(SidePanel)

    @property
    def prompt_input(self) -> PromptInput:
        return self.query_one(PromptInput)

    def refresh_status(self) -> None:
        lm = self.session.current
        loading = self.loading
        state = "generating" if self.generating else f"loading {loading}" if loading else "ready"
        if self.train_stop is not None:
            log = self.panel.state.train
            last = log.steps[-1][0] if log and log.steps else 0
            state += f" | training {last}/{log.max_iters if log else '?'}"
        if self.queue:
            state += f" ({len(self.queue)} queued)"
        elif state == "ready" and self._compiling:
            state += f" (compiling {self._compiling} more shapes in the background)"
        self.query_one(StatusBar).show(
            model=lm.name if lm else "(no model)",
            state=state,
            settings=self.session.settings,
            context=self._ctx_used,
            rate=self._last_rate,
            colour=self.session.display["color"] == "surprisal",
        )

    # -- input ---------------------------------------------------------------------------
    @on(PromptInput.Submitted)
    def submitted(self, event: PromptInput.Submitted) -> None:
        event.input.reset_history()
        self.run_line(event.value)

    def run_line(self, line: str) -> None:
        """A line typed, or a command picked from the palette."""
        if (self.generating or self.queue) and self.session.reads_last_turn(line):
            # :again (or :step, :inspect alone) acts on the last turn: not the one before
            # what is running or queued now, so it takes its place in the queue
            self.session.history.add(clean_input(line))
            self.queue.append((Held(line), self._queued_widget(QueuedLine, clean_input(line))))
            self.refresh_status()
            return
        self.dispatch(self.session.handle(line))

    @on(PromptInput.Changed)
    def prompt_changed(self) -> None:
        if self.stepper is not None:  # the step keys show in the footer only when they step
            self.refresh_bindings()

    def dispatch(self, action) -> None:
        if action is None:
            return
        if isinstance(action, Quit):
            self.quit_now()
        elif isinstance(action, Reply):
            self.chat.add(NoticeLine(action.text, action.level))
            self._show_colour()
            self.refresh_status()
        elif isinstance(action, Clear):
            self.action_clear()
        elif isinstance(action, LoadModel):
            self.request_model(action.spec)
        elif isinstance(action, SwitchBranch):
            if self.stepper is None:
                self.chat.add(NoticeLine("no step-mode turn is open", "error"))
            else:
                self.step_op("switch", action.n)
        elif isinstance(action, TrainStart):
            self.start_training(action.request)
        elif isinstance(action, TrainStop):
            if self.train_stop is None:
                self.chat.add(NoticeLine("no run to stop"))
            else:
                self.train_stop.set()
                self.chat.add(NoticeLine("stopping the run: it saves last/ first..."))
        elif isinstance(action, Inspect):
            if self.session.current is None:
                self.chat.add(NoticeLine("no model is loaded yet", "error"))
            else:
                self.chat.add(NoticeLine(f"inspecting with {self.session.current.name}..."))
                self.inspect(action.prompt, self.session.current)
        elif isinstance(action, Generate | Compare | StepStart):
            if isinstance(action, Generate):
                widget = self._queued_widget(ChatTurn, action.model or "?", action.prompt, "queued")
            else:
                name = "compare" if isinstance(action, Compare) else "step"
                widget = self._queued_widget(QueuedLine, f":{name} {action.prompt}")
            self.queue.append((action, widget))
            if self.session.current is None and not self.generating:
                self.chat.add(NoticeLine("queued: it runs when the model is ready"))
            self._next_queued()

    def _queued_widget(self, kind, *args):
        """A queued line shows at once (``kind(*args)``, mounted at the end), unless
        QUEUE_SHOWN queued lines show already: past that (a pasted script of thousands of
        lines) the status bar counts them, each shows as it starts, and this is None."""
        if sum(1 for _, w in self.queue if w is not None) >= self.QUEUE_SHOWN:
            return None
        return self.chat.add(kind(*args))

    def request_model(self, spec: str) -> None:
        try:
            key = self.session.key(spec)
        except user_errors() as e:
            self.chat.add(NoticeLine(str(e), "error"))
            return
        current = self.session.current
        if (
            current is not None
            and current.name == key
            and not self.loads.busy
            and self.session.unchanged(key)  # else its files changed (a run wrote there)
        ):
            self.chat.add(NoticeLine(f"already using {key}"))
            return
        self.session.wanted_model = key
        self.chat.add(NoticeLine(f"loading {key} in the background..."))
        self.loads.request(key)
        self.refresh_status()

    def _next_queued(self) -> None:
        """Start the oldest waiting action when nothing runs and its model is ready."""
        if self.generating or not self.queue:
            self.refresh_status()
            return
        action, widget = self.queue[0]
        if isinstance(action, Held):  # its turn has come: the last turn is the one before
            self.queue.popleft()
            resolved = self.session.handle(action.line, record=False)
            if isinstance(resolved, Generate | Compare | StepStart):
                self.queue.appendleft((resolved, widget))  # it keeps its place in the queue
            elif isinstance(resolved, Reply) and widget is not None:  # refused: say so there
                self.chat.place(widget, NoticeLine(resolved.text, resolved.level))
            else:
                if widget is not None:
                    widget.ran()
                self.dispatch(resolved)
            self._next_queued()
            return
        lm = self.session.current
        if isinstance(action, Generate) and action.model:
            wanted = self.session.models.get(action.model)
            if wanted is None and self.loads.busy:
                self.refresh_status()
                return  # its model is still loading
            if wanted is None and lm is not None:
                self.chat.add(
                    NoticeLine(f"{action.model} is not loaded: running on {lm.name}", "error")
                )
            lm = wanted or lm
        if lm is None:
            self.refresh_status()
            return
        self.queue.popleft()
        self.generating = True
        self._turn_started = time.monotonic()
        self.cancel = threading.Event()
        if isinstance(action, Compare):
            self._anchor = self.chat.place(widget, NoticeLine(
                f"compare: {self.session.last_scratch} vs {self.session.last_pretrained}..."
            ))  # fmt: skip
            self.compare(action.prompt, self.cancel)
        elif isinstance(action, StepStart):
            widget = self.chat.place(widget, ChatTurn(lm.name, action.prompt))
            widget.set_colour(self.session.display["color"] == "surprisal")
            self._step_turn = (widget, action.prompt)
            self._anchor = self.chat.add(
                NoticeLine(
                    "step mode: Enter takes the model's pick, 1-9 force a candidate, "
                    "Backspace steps back, Esc ends the turn; :branches lists the branches, "
                    ":branch N switches (once ':' is typed the keys edit the command)"
                ),
                after=widget,
            )  # fmt: skip
            self.step_begin(action, lm)
        else:
            self._turn_counter += 1
            turn = self._turn_counter
            if not isinstance(widget, ChatTurn):  # none shown, or a held :again's place
                widget = self.chat.place(widget, ChatTurn(lm.name, action.prompt))
            self.turn_widgets[turn] = widget
            self._running_turn = turn
            widget.start(lm.name)
            widget.set_colour(self.session.display["color"] == "surprisal")
            self.generate(turn, action.prompt, lm, action.settings, self.cancel)
        self.refresh_status()

    # -- workers -------------------------------------------------------------------------
    @work(thread=True, exclusive=False, exit_on_error=False, group="generate")
    def generate(self, turn: int, prompt: str, lm, settings, cancel: threading.Event) -> None:
        """Runs off the UI thread; touches no widget. Tokens go into a buffer, and one
        ``TokensReady`` stands for however many arrived since the UI last drew."""
        worker = get_current_worker()
        panel = self.panel
        try:
            turn_events = self.session.run_turn(
                prompt,
                cancel=cancel,
                lm=lm,
                settings=settings,
                probes=lambda: panel.wanted_probes,  # the view on show, asked per step
            )
            for event in turn_events:
                if worker.is_cancelled:
                    cancel.set()
                if isinstance(event, PromptEvent):
                    self.post_message(GenerationStarted(turn, event.input_ids, lm.tokenizer))
                elif isinstance(event, TokenEvent):
                    self._token_buffer.append((turn, event))
                    if not self._tokens_posted.is_set():
                        self._tokens_posted.set()
                        self.post_message(TokensReady(turn))
                else:
                    self.post_message(GenerationFinished(turn, event))
        except user_errors() as e:
            self.post_message(GenerationFailed(turn, str(e)))
        except Exception as e:  # a bug: one line here, the traceback in errors.log
            self.session.log_error(f"generating {prompt[:60]!r}", traceback.format_exc())
            self.post_message(GenerationFailed(turn, f"error: {type(e).__name__}: {e}"))

    # -- training ---------------------------------------------------------------------------
    def start_training(self, request) -> None:
        if self.train_stop is not None:
            self.chat.add(NoticeLine("a run is already training: :train stop (or Esc) first",
                                     "error"))  # fmt: skip
            return
        self.train_stop = threading.Event()
        self.panel.state.train = TrainLog(out=request.config.out, state="starting")
        self.panel.state.version += 1
        while not isinstance(self.panel.view, TrainingView):
            self.panel.show_view(self.panel.current + 1)
        self.chat.add(
            NoticeLine(
                f"training into {request.config.out} in the background (Esc twice or :train stop "
                "stops it and saves last/); you can chat meanwhile, at a slower pace"
            )
        )
        self.train_run(request, self.train_stop)
        self.refresh_status()

    @work(thread=True, exclusive=False, exit_on_error=False, group="train")
    def train_run(self, request, stop: threading.Event) -> None:
        from gpt2core.train import train
        from gpt2core.train_events import TrainStep

        steps: list = []
        last = [0.0]

        def report(e) -> None:
            """Steps come hundreds a second on a small model: they go to the UI in
            batches, a few times a second; every other event at once, after them."""
            now = time.monotonic()
            if isinstance(e, TrainStep):
                steps.append(e)
                if now - last[0] < self.TRAIN_DRAW_S:
                    return
            if steps:
                self.post_message(TrainReport(list(steps)))
                steps.clear()
            last[0] = now
            if not isinstance(e, TrainStep):
                self.post_message(TrainReport(e))

        try:
            train(
                request.config,
                resume=request.resume,
                on_event=report,
                should_stop=stop.is_set,
                given=request.given,
            )
        except user_errors() as e:
            self.post_message(TrainReport(None, str(e)))
        except Exception as e:
            self.session.log_error("training", traceback.format_exc())
            self.post_message(TrainReport(None, f"{type(e).__name__}: {e}"))

    @on(TrainReport)
    def train_report(self, message: TrainReport) -> None:
        from gpt2core.train_events import TrainDone, TrainEval, TrainStarted, TrainStep

        log, e = self.panel.state.train, message.event
        if log is None:
            return
        if isinstance(e, list):  # a batch of TrainStep
            for step in e:
                log.steps.append((step.iter, step.loss))
            e = e[-1]
        if message.error is not None:
            log.state = "failed"
            self.train_stop = None
            self.chat.add(NoticeLine(f"training: {message.error}", "error"))
        elif isinstance(e, TrainStarted):
            log.max_iters, log.n_params, log.state = e.max_iters, e.n_params, "compiling"
        elif isinstance(e, TrainStep):
            log.lr, log.tokens_per_s, log.eta_s = e.lr, e.tokens_per_s, e.eta_s
            log.state = "stopping" if self.train_stop and self.train_stop.is_set() else "training"
        elif isinstance(e, TrainEval):
            log.evals.append((e.iter, e.train_loss, e.val_loss))
            log.sample = e.sample or log.sample
        elif isinstance(e, TrainDone):
            r = e.result
            log.state = "stopped" if r.interrupted else "done"
            self.train_stop = None
            how = (f"stopped at iter {r.iters}, saved {r.out}/last" if r.interrupted
                   else f"done: {r.iters} iters, val loss {r.val_loss:.4f}")  # fmt: skip
            self.chat.add(NoticeLine(f"training {how}. Chat with it: :model scratch:{r.model_dir}"))
        self.panel.state.version += 1
        self.panel.render_panel(layout=not isinstance(e, TrainStep))
        self.refresh_status()

    @work(thread=True, exclusive=False, exit_on_error=False, group="step")
    def step_begin(self, action, lm) -> None:
        try:
            stepper = self.session.start_step(action, lm)
        except user_errors() as e:
            self.post_message(GenerationFailed(0, f"step: {e}"))
            return
        self.post_message(StepUpdate(stepper))

    @work(thread=True, exclusive=False, exit_on_error=False, group="step")
    def step_op(self, op: str, arg: int = 0) -> None:
        from gpt2core.stepping import StepError

        with self._step_lock:  # key presses run one at a time, in order
            st = self.stepper
            if st is None:
                return
            try:
                if op == "accept":
                    st.accept()
                elif op == "force":
                    st.force(arg)
                elif op == "switch":
                    self.session.switch_branch(arg)  # as line mode's :branch N
                else:
                    st.undo()
                self.post_message(StepUpdate(st))
            except StepError as e:
                self.post_message(StepUpdate(st, str(e)))
            except Exception as e:  # noqa: BLE001 - a backend's failure: the turn stays open
                self.session.log_error(f"step {op}", traceback.format_exc())
                why = f"step {op} failed ({type(e).__name__}: {e}); nothing changed"
                self.post_message(StepUpdate(st, why))

    @on(StepUpdate)
    def step_update(self, message: StepUpdate) -> None:
        st = message.stepper
        if self._step_turn is None:
            return
        if self.stepper is None:  # the first update: step mode is open
            self.stepper = st
            self.panel.start(st.input_ids, st.lm.tokenizer)
            while not isinstance(self.panel.view, NextTokenView):
                self.panel.show_view(self.panel.current + 1)
            self.refresh_bindings()
        if message.error:
            self.chat.add(NoticeLine(message.error, "error"))
        widget, _ = self._step_turn
        widget.show_pieces(step_pieces(st))
        p = st.proposal
        event = TokenEvent(len(st.tokens), p.token_id, "", p.candidates, 0.0,
                           {"pipeline": p.pipeline} if p.pipeline else None)  # fmt: skip
        self.panel.state.output_ids = st.output_ids
        self.panel.tokens([event])
        self.panel.state.output_ids = st.output_ids  # tokens() appended the proposal
        self.chat.scroll_end(animate=False)

    def action_step_accept(self) -> None:
        self.step_op("accept")

    def action_step_force(self, k: int) -> None:
        self.step_op("force", k)

    def action_step_undo(self) -> None:
        self.step_op("undo")

    def _finish_step(self) -> None:
        st, (widget, prompt) = self.stepper, self._step_turn
        with self._step_lock:
            summary = self.session.finish_step(st, prompt)
        self.stepper, self._step_turn = None, None
        widget.finish("done", stats_line(summary) + f" | {sum(r.forced for r in st.tokens)} forced")
        self.panel.finish(summary)
        self.refresh_bindings()
        self._done()

    @work(thread=True, exclusive=False, exit_on_error=False, group="inspect")
    def inspect(self, prompt: str, lm) -> None:
        try:
            self.post_message(Notice(self.session.run_inspect(prompt, lm)))
        except user_errors() as e:
            self.post_message(Notice(f"inspect: {e}", "error"))
        except Exception as e:
            self.session.log_error(f"inspect {prompt[:60]!r}", traceback.format_exc())
            self.post_message(Notice(f"inspect: {type(e).__name__}: {e}", "error"))

    @work(thread=True, exclusive=False, exit_on_error=False, group="generate")
    def compare(self, prompt: str, cancel: threading.Event) -> None:
        try:
            result = self.session.run_compare(
                prompt,
                cancel=cancel,
                on_progress=lambda m: self.post_message(Notice(m, follows_turn=True)),
            )
        except user_errors() as e:
            self.post_message(GenerationFailed(0, f"compare: {e}"))
            return
        except Exception as e:
            self.session.log_error(f"compare {prompt[:60]!r}", traceback.format_exc())
            self.post_message(GenerationFailed(0, f"compare: {type(e).__name__}: {e}"))
            return
        self.post_message(CompareFinished(result))

    # -- worker messages -----------------------------------------------------------------
    @on(LoadReport)
    def load_report(self, message: LoadReport) -> None:
        e = message.event
        if isinstance(e, Compiling):
            self._compiling = e.left
            self.refresh_status()
            return
        latest = e.ticket == self.loads.latest
        if isinstance(e, LoadDropped):
            self.chat.add(NoticeLine(f"{e.spec}: not loaded (superseded by {e.replaced_by})"))
        elif isinstance(e, LoadFailed):
            self.collector.sweep()  # a half-built model, perhaps frozen by a turn's end
            current = self.session.current
            if current is None and latest and self.session.requested != "scratch":
                # nothing to chat with yet: fall back to the model that always loads
                self.chat.add(NoticeLine(f"could not load {e.spec}: {e.error}", "error"))
                self.session.requested = self.session.wanted_model = "scratch"
                self.loads.request("scratch", startup=True)
            else:
                keep = f"; still using {current.name}" if current else ""
                self.chat.add(NoticeLine(f"could not load {e.spec}: {e.error}{keep}", "error"))
                if latest:
                    self.session.wanted_model = None
        elif isinstance(e, LoadDone):
            if e.note:
                self.chat.add(NoticeLine(e.note, "error"))
            if not latest:
                self.chat.add(
                    NoticeLine(f"loaded {e.lm.name}, but a newer :model was asked: not switching")
                )
            else:
                self.session.activate(e.lm)
                self.session.wanted_model = None
                self._ctx_used = (0, e.lm.n_positions)
                self.chat.add(NoticeLine(f"model: {e.lm.description}"))
                # the model's objects live as long as the session: out of every pass; a sweep,
                # not a settle, as the load may have replaced a model whose files changed
                self.call_after_refresh(self.collector.sweep)
        self.refresh_status()
        self._next_queued()

    @on(GenerationStarted)
    def generation_started(self, message: GenerationStarted) -> None:
        self.panel.start(message.input_ids, message.tokenizer)

    @on(TokensReady)
    def tokens_ready(self, message: TokensReady) -> None:
        self._draw_tokens()

    def _draw_tokens(self, from_timer: bool = False) -> None:
        """Draw every buffered token, at most once a frame."""
        if from_timer:
            self._draw_timer = None
        wait = self._last_draw + self._frame_s - time.monotonic()
        if wait > 0:
            if self._draw_timer is None:
                self._draw_timer = self.set_timer(wait, lambda: self._draw_tokens(True))
            return
        self._tokens_posted.clear()  # before draining: a token added now posts again
        by_turn: dict[int, list[TokenEvent]] = {}
        while self._token_buffer:
            turn, event = self._token_buffer.popleft()
            by_turn.setdefault(turn, []).append(event)
        if not by_turn:
            return
        self._pace_frames()
        for turn, events in by_turn.items():
            widget = self.turn_widgets.get(turn)
            if widget is not None:
                widget.append_tokens(events)
            self.panel.tokens(events)
        lm = self.session.current
        if lm is not None:
            self._ctx_used = (min(len(self.panel.output_ids), lm.n_positions), lm.n_positions)
        self.refresh_status()
        self.chat.scroll_end(animate=False)

    def _pace_frames(self) -> None:
        """Set the next frame's interval from what the last one cost the UI thread (its
        CPU time since the previous draw: this draw's work and the compositor's), so
        drawing keeps to UI_SHARE of the time, between FRAME_S and MAX_FRAME_S."""
        cpu, now = time.thread_time(), time.monotonic()
        if now - self._last_draw < 2 * self.MAX_FRAME_S:  # a stream in progress
            cost = cpu - self._ui_cpu
            self._frame_s = min(max(cost / self.UI_SHARE, self.FRAME_S), self.MAX_FRAME_S)
        else:  # the first tokens of a turn
            self._frame_s = self.FRAME_S
        self._ui_cpu, self._last_draw = cpu, now

    def _flush_tokens(self) -> None:
        self._last_draw = 0.0
        self._draw_tokens()

    @on(GenerationFinished)
    def generation_finished(self, message: GenerationFinished) -> None:
        self._flush_tokens()
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
        self._flush_tokens()
        widget = self.turn_widgets.get(message.turn)
        if widget is not None:
            widget.finish("failed")
        self._drop_unopened_step()
        self._follow(NoticeLine(message.error, "error"))
        self._done()

    def _drop_unopened_step(self) -> None:
        """A step-mode turn that failed before it opened: its turn says so."""
        if self._step_turn is not None and self.stepper is None:
            self._step_turn[0].finish("failed")
            self._step_turn = None

    @on(CompareFinished)
    def compare_finished(self, message: CompareFinished) -> None:
        r = message.result
        toks = [
            getattr(self.session.models.get(spec), "tokenizer", None)
            for spec in (self.session.last_scratch, self.session.last_pretrained)
        ]
        self._follow(CompareView(r, toks))
        self._done()

    @on(Notice)
    def notice(self, message: Notice) -> None:
        line = NoticeLine(message.text, message.level)
        if message.follows_turn:
            self._follow(line)
        else:
            self.chat.add(line)

    def _follow(self, widget) -> None:
        """Show what the running :compare or :step adds, in its place in the chat."""
        self._anchor = self.chat.add(widget, after=self._anchor)

    def _done(self) -> None:
        self._anchor = None
        self.generating = False
        self.refresh_status()
        # once the turn's last frame is drawn, what it drew is settled: freeze it
        self.call_after_refresh(self.collector.turn_done)
        self._next_queued()

    @on(Worker.StateChanged)
    def worker_state(self, event: Worker.StateChanged) -> None:
        """A worker that dies anyway (a bug past the handlers above) becomes a one-line
        notice, never a crash or a screen stuck on "generating"."""
        ended = (WorkerState.SUCCESS, WorkerState.ERROR, WorkerState.CANCELLED)
        if event.worker.group == "train" and event.state in ended:
            # the run's trainer (model, optimizer, compiled step) is garbage now, in cycles,
            # and turns that ended meanwhile froze some of it: a sweep finds it
            self.collector.sweep()
        if event.state != WorkerState.ERROR:
            return
        error = event.worker.error
        self._follow(NoticeLine(f"error: {type(error).__name__}: {error}", "error"))
        self._anchor = None
        self.generating = False
        for widget in self.turn_widgets.values():
            if widget.state == "generating":
                widget.finish("failed")
        self._drop_unopened_step()
        self.refresh_status()
        self._next_queued()

    # -- actions -------------------------------------------------------------------------
    STOP_REPEAT_S = 0.5  # a stop key this soon after the last one is that press, repeated
    TRAIN_CONFIRM_S = 3.0  # Esc stops a training run if pressed twice within this

    def _repeated_stop(self) -> bool:
        """Whether this Esc/Ctrl-C repeats the last one onto a turn that started after it:
        a double tap stopped the turn it meant, and the queued turn that started next."""
        now = time.monotonic()
        last, self._last_stop_key = self._last_stop_key, now
        return now - last < self.STOP_REPEAT_S and self._turn_started > last

    def action_stop(self) -> None:
        if self._repeated_stop():
            return
        if self.stepper is not None:
            self._finish_step()
        elif self.generating:
            self.cancel.set()
        elif self.train_stop is not None and not self.train_stop.is_set():
            # a run may be long: an Esc meant for a reply that has just ended must not stop it
            now = time.monotonic()
            if now - self._train_stop_asked < self.TRAIN_CONFIRM_S:
                self.dispatch(TrainStop())
            else:
                self._train_stop_asked = now
                self.chat.add(NoticeLine("Esc again stops the training run (it saves last/)"))

    def action_interrupt(self) -> None:
        if self._repeated_stop():
            return
        if self.stepper is not None:
            self._finish_step()  # as Esc: the step-mode turn ends, its tokens kept
        elif self.generating and not self.cancel.is_set():
            self.cancel.set()
        else:  # nothing runs, or it has not stopped since the last Ctrl-C (a :compare
            self.quit_now()  # loading its second model cannot stop until the load ends)

    def on_unmount(self) -> None:
        sys.setswitchinterval(self._switch_interval)  # the interval is the process's, not ours

    async def action_quit(self) -> None:
        self.quit_now()

    def quit_now(self) -> None:
        """Leave now: stop the running turn (it ends within one token) and drop what waits;
        a load in progress is not waited for (its thread is a daemon)."""
        self.queue.clear()
        self.cancel.set()
        if self.train_stop is not None:
            self.train_stop.set()  # it saves last/ if it can before the process ends; if
            # not, the run directory still holds the last eval's complete checkpoint
        self.loads.close()
        self.exit()

    def action_toggle_panel(self) -> None:
        self.panel.display = not self.panel.display
        self.panel.render_panel()

    def action_colour(self) -> None:
        """Colour each generated token by how surprised the model was (F4 or :set color)."""
        on = self.session.display["color"] == "surprisal"
        self.session.display["color"] = "none" if on else "surprisal"
        self._show_colour()
        self.refresh_status()

    def _show_colour(self) -> None:
        on = self.session.display["color"] == "surprisal"
        for widget in self.query(ChatTurn):
            widget.set_colour(on)

    def action_next_view(self) -> None:
        if not self.panel.display:
            self.panel.display = True
        self.panel.show_view(self.panel.current + 1)
        self.refresh_bindings()

    def action_layer(self, delta: int) -> None:
        self._attention(layer=delta)

    def action_head(self, delta: int) -> None:
        self._attention(head=delta)

    def _attention(self, layer: int = 0, head: int = 0) -> None:
        view = self.panel.view
        if isinstance(view, AttentionView):
            view.layer = max(0, view.layer + layer)
            view.head = max(-1, view.head + head)  # -1: the average of the heads
            view.drawn = -1
            self.panel.render_panel()

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        """The layer/head keys show in the footer only while the Attention view is shown."""
        if action in ("layer", "head"):
            return self.is_mounted and isinstance(self.panel.view, AttentionView)
        if action.startswith("step_"):  # not while a command is typed: the keys edit it
            return self.stepper is not None and not self.prompt_input.holds_text
        return True

    def action_clear(self) -> None:
        keep = [w for w in self.chat.children if getattr(w, "state", "") in ("queued",)]
        running = self.turn_widgets.get(self._running_turn)
        if running is not None and running.state == "generating":
            keep.insert(0, running)
        # the running :compare's or :step's place (what it adds later goes there), the
        # open step turn
        keep += [w for w in (self._anchor, self._step_turn and self._step_turn[0]) if w]
        removed = self.chat.remove_children([c for c in self.chat.children if c not in keep])
        self.turn_widgets = {n: w for n, w in self.turn_widgets.items() if w in keep}
        self.call_later(self._sweep_after, removed)

    async def _sweep_after(self, removed) -> None:
        """The cleared widgets were frozen as their turns ended: once they are gone, a
        sweep finds them (repl.collector)."""
        await removed
        self.collector.sweep()

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
            prompt.focus()
        else:
            self.run_line(f":{spec.name}")  # as if typed: :again waits for what runs


def make_app(model: str = "pretrained", loader: Loader | None = None, **kwargs) -> GPT2App:
    """App factory: tests inject a deterministic loader (no TensorFlow weights)."""
    return GPT2App(model=model, loader=loader, **kwargs)


def run_app(model: str = "pretrained") -> int:
    from repl.logs import native_logs_to_file
    from repl.session import data_dir

    with native_logs_to_file(data_dir() / "native.log"):
        make_app(model=model).run()
    if any(t.is_alive() and t is not threading.main_thread() for t in threading.enumerate()):
        # A load or a compare is still inside TensorFlow: leave without waiting for it
        # (the terminal is already restored; nothing is left to save).
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0
