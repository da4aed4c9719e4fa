"""Model loading for a front end that must not wait: one loader thread, latest request wins.

A person can type ``:model A`` and, before A is ready, ``:model B``. Loading is slow
(TensorFlow and transformers import for seconds, weights read, XLA compiles) and cannot
be interrupted half-way, so:

- one daemon thread does every load, one at a time, so the heavy imports happen once,
  on one thread (transformers' lazy module is not safe to import from two threads);
- a request replaces any request still waiting: the replaced one is dropped, and says so;
- a load already running finishes (its model stays cached for later) but only the
  newest request's model is offered for activation (``LoadDone.latest``);
- a front end that quits does not wait for a load in progress: the thread is a daemon.

No UI imports: the front end passes ``report``, a thread-safe callback (the Textual app
posts a message from it).
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass

from gpt2core.generate import LanguageModel


@dataclass(frozen=True)
class LoadDone:
    ticket: int
    spec: str
    lm: LanguageModel
    latest: bool  # False: a newer request came while this one loaded (do not activate)
    note: str | None = None  # e.g. "could not load pretrained (...); using scratch instead"


@dataclass(frozen=True)
class LoadFailed:
    ticket: int
    spec: str
    error: str
    latest: bool


@dataclass(frozen=True)
class LoadDropped:
    ticket: int
    spec: str
    replaced_by: str


@dataclass(frozen=True)
class Compiling:
    """Background compilation of the current model's remaining shapes (see
    ``LanguageModel.background_shapes``): ``left`` still to go, 0 when done."""

    spec: str
    left: int


LoadEvent = LoadDone | LoadFailed | LoadDropped | Compiling


class ModelLoads:
    """Serialises the loads a front end asks for (see the module docstring)."""

    def __init__(self, session, report: Callable[[LoadEvent], None]):
        self.session, self.report = session, report
        self._cond = threading.Condition()
        self._pending: tuple[int, str, bool] | None = None  # (ticket, spec, startup)
        self._running: tuple[int, str] | None = None
        self._ticket = 0
        self._closed = False
        self._thread: threading.Thread | None = None

    # -- the front end's side -------------------------------------------------------------
    def request(self, spec: str, startup: bool = False) -> int:
        """Ask for ``spec``; returns its ticket. Replaces a request still waiting."""
        with self._cond:
            self._ticket += 1
            ticket = self._ticket
            dropped = self._pending
            self._pending = (ticket, spec, startup)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="gpt2-loader", daemon=True)
                self._thread.start()
            self._cond.notify()
        if dropped is not None:
            self.report(LoadDropped(dropped[0], dropped[1], spec))
        return ticket

    @property
    def latest(self) -> int:
        return self._ticket

    @property
    def busy(self) -> bool:
        """True while a load runs or waits."""
        with self._cond:
            return self._pending is not None or self._running is not None

    def wanted(self) -> str | None:
        """The spec of the newest request still waiting or loading (None when idle)."""
        with self._cond:
            if self._pending is not None:
                return self._pending[1]
            if self._running is not None and self._running[0] == self._ticket:
                return self._running[1]
            return None

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._pending = None
            self._cond.notify()

    # -- the loader thread ----------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                ticket, spec, startup = self._pending
                self._pending = None
                self._running = (ticket, spec)
            try:
                event = self._load(ticket, spec, startup)
            finally:
                with self._cond:
                    self._running = None
            with self._cond:
                if self._closed:
                    return
            self.report(event)
            if isinstance(event, LoadDone) and event.latest:
                self._compile_in_background(event.lm)

    def _compile_in_background(self, lm: LanguageModel) -> None:
        """While no load is asked for, compile the model's remaining shapes one at a time,
        each only when the model is idle (a generation never waits for more than one)."""
        shapes = lm.background_shapes()
        if not shapes:
            return
        self.report(Compiling(lm.name, len(shapes)))
        while shapes:
            with self._cond:
                if self._closed or self._pending is not None:
                    return  # a new request comes first; its model compiles instead
            try:
                done = lm.compile_shape(shapes[0])
            except Exception:  # a shape that will not compile is compiled on use, or fails then
                self.session.log_error(f"compiling {lm.name}", traceback.format_exc())
                done = True
            if done:
                shapes.pop(0)
                self.report(Compiling(lm.name, len(shapes)))
            else:
                with self._cond:
                    self._cond.wait(0.2)  # busy generating: look again shortly

    def _load(self, ticket: int, spec: str, startup: bool) -> LoadEvent:
        from repl.session import user_errors

        session = self.session
        try:
            if startup:
                lm, note = session.load_startup(activate=False)
            else:
                lm, note = session.load(spec, activate=False), None
            lm.warmup()  # compile before it becomes current: prompts wait in the queue
        except user_errors() as e:
            return LoadFailed(ticket, spec, str(e), ticket == self._ticket)
        except Exception as e:  # a bug, or a library's odd error: one line, the app lives
            session.log_error(f"loading {spec}", traceback.format_exc())
            return LoadFailed(ticket, spec, f"{type(e).__name__}: {e}", ticket == self._ticket)
        return LoadDone(ticket, spec, lm, ticket == self._ticket, note)
