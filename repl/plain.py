"""`gpt2 chat --plain`: the session in a prompt_toolkit line REPL (ptpython's shape).

On a terminal: history file, completion of :commands and their arguments, multi-line
input (end a line with a backslash, or Esc then Enter), tokens streamed to stdout,
Ctrl-C stops a generation. With stdin not a terminal it reads prompts and commands line
by line, prints the completions, reports bad lines and skips them, and exits 0 at the end.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterable, Iterator
from typing import TextIO

from gpt2core.generate import GenerationSummary, TokenEvent
from repl.commands import COMMANDS
from repl.session import (
    Clear,
    Compare,
    Generate,
    Inspect,
    LoadModel,
    Quit,
    Reply,
    Session,
    StepStart,
    SwitchBranch,
    TrainStart,
    TrainStop,
    chosen_prob,
    data_dir,
    printable,
    stats_line,
    step_pieces,
    surprisal_band,
    tensor_text,
    user_errors,
)
from repl.terminal import clip_error

ANSI_BANDS = ("", "\x1b[33m", "\x1b[38;5;208m", "\x1b[1;31m")  # as SURPRISAL_BANDS


class PlainREPL:
    def __init__(self, session: Session, out: TextIO | None = None, err: TextIO | None = None):
        self.session = session
        self.out, self.err = out or sys.stdout, err or sys.stderr
        self.cancel = threading.Event()
        # where step mode reads its lines: the piped input, or the terminal's prompt
        self.read: Callable[[str], str | None] = lambda _prompt: None

    def say(self, text: str, error: bool = False, painted: str = "") -> None:
        """One line, made safe; ``painted`` (already safe: see ``_paint``) goes after it."""
        stream = self.err if error else self.out
        if error:
            text = "error: " + clip_error(text)
        stream.write(printable(text) + painted + "\n")
        stream.flush()

    def start(self) -> None:
        self.say("gpt2: loading the model... (Ctrl-C stops a generation, :help lists commands)")
        try:
            lm, note = self.session.load_startup()
        except user_errors() as e:
            self.say(str(e), error=True)
            raise SystemExit(2) from None
        if note:
            self.say(note, error=True)
        self.say(f"model: {lm.description}")

    def run_line(self, line: str) -> bool:
        """Handle one line; False means quit. A session survives any line: a bug met on
        the way is one line here (the traceback goes to errors.log) and the next line runs."""
        try:
            return self._run_line(line)
        except Exception as e:
            self.session.log_error(f"line {line[:60]!r}", traceback.format_exc())
            self.say(
                f"internal error: {type(e).__name__}: {printable(str(e))[:200]} "
                f"(details in {data_dir() / 'errors.log'})",
                error=True,
            )
            return True

    def _run_line(self, line: str) -> bool:
        action = self.session.handle(line)
        if action is None:
            return True
        if isinstance(action, Quit):
            return False
        if isinstance(action, Reply):
            self.say(action.text, error=action.level == "error")
        elif isinstance(action, Clear):
            self.out.write("\n" * 3)
        elif isinstance(action, LoadModel):
            try:
                lm = self.session.load(action.spec)
                self.say(f"model: {lm.description}")
            except user_errors() as e:
                self.say(str(e), error=True)
        elif isinstance(action, Generate):
            self.generate(action.prompt, action.settings)
        elif isinstance(action, Compare):
            self.compare(action.prompt)
        elif isinstance(action, StepStart):
            self.step_mode(action)
        elif isinstance(action, SwitchBranch):  # only made while a step turn is open
            self.say("no step-mode turn is open", error=True)
        elif isinstance(action, TrainStart):
            self.train(action.request)
        elif isinstance(action, TrainStop):
            self.say("no run to stop: in line mode Ctrl-C stops a run (it saves last/)")
        elif isinstance(action, Inspect):
            try:
                self.out.write(self.session.run_inspect(action.prompt) + "\n")
            except user_errors() as e:
                self.say(str(e), error=True)
        return True

    def generate(self, prompt: str, settings=None) -> None:
        with self._ctrl_c_cancels():
            self._generate(prompt, settings)

    @contextlib.contextmanager
    def _ctrl_c_cancels(self):
        """While tokens stream, Ctrl-C sets the cancel flag: the generation ends within one
        token, cleanly, and its partial text is kept in the transcript."""
        self.cancel.clear()
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = signal.signal(signal.SIGINT, lambda *_: self.cancel.set())
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    def _generate(self, prompt: str, settings=None) -> None:
        s = self.session
        try:
            label = f"[{printable(s.current.name)}] "
            for event in s.run_turn(prompt, cancel=self.cancel, settings=settings):
                if label:  # after encoding succeeded: an error line stays one line
                    self.out.write(label)
                    label = ""
                if isinstance(event, TokenEvent):
                    self.out.write(self._shown(event))
                    self.out.flush()
                elif isinstance(event, GenerationSummary):
                    self.out.write("\n")
                    if event.stop_reason == "cancelled":
                        self.say("[stopped]")
                    self.say(f"input_ids: {tensor_text(event.input_ids)}")
                    self.say(f"output:    {tensor_text(event.output_ids)}")
                    self.say(stats_line(event))
        except KeyboardInterrupt:
            self.cancel.set()
            self.say("\n[stopped]")
        except user_errors() as e:
            self.out.write("\n")
            self.say(str(e), error=True)

    def train(self, request) -> None:
        """Train inline, with the shell command's progress (evals, samples) on stderr;
        Ctrl-C stops the run and saves last/."""
        from gpt2core.train import train
        from repl.train_cli import TrainProgress

        cfg = request.config
        progress = TrainProgress(file=self.err, bar=False)
        try:
            with self._ctrl_c_cancels(), self._term_stops() as ended_by:
                result = train(
                    cfg,
                    resume=request.resume,
                    on_event=progress,
                    should_stop=self.cancel.is_set,
                    given=request.given,
                )
        except user_errors() as e:
            self.say(str(e), error=True)
            return
        finally:
            progress.close()
        if ended_by:  # SIGTERM or SIGHUP: saved, as `gpt2 train` does; then the session ends
            name = signal.Signals(ended_by[0]).name
            with contextlib.suppress(OSError):  # a hung-up terminal
                self.say(f"{name}: stopped at iter {result.iters}, saved {result.out}/last")
            raise SystemExit(128 + ended_by[0])
        if result.interrupted:
            self.say(f"stopped at iter {result.iters}: saved {result.out}/last "
                     f"(:train ... --resume goes on)")  # fmt: skip
        else:
            self.say(f"done: {result.iters} iters, val loss {result.val_loss:.4f}")
        self.say(f"chat with it: :model scratch:{result.model_dir}")

    @contextlib.contextmanager
    def _term_stops(self):
        """While a run trains, SIGTERM and SIGHUP stop it the way Ctrl-C does (the loop saves
        last/ and returns); the signals that came are in the yielded list. Without this a
        `kill` ended the session at once, losing every step since the last eval."""
        came: list[int] = []
        if threading.current_thread() is not threading.main_thread():
            yield came
            return

        def stop(signum, _frame):
            came.append(signum)
            self.cancel.set()

        from repl.train_cli import STOP_SIGNALS  # gpt2 train's; SIGINT is _ctrl_c_cancels'

        wanted = [sig for sig in STOP_SIGNALS if sig != signal.SIGINT]
        previous = {sig: signal.signal(sig, stop) for sig in wanted}
        try:
            yield came
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    STEP_KEYS = "Enter: the model's pick | k: force candidate k | -: undo | .: finish"

    def step_mode(self, action: StepStart) -> None:
        """Step mode over the same input: each step shows the numbered candidates and
        reads one line (empty: accept, a number k: force candidate k, '-': undo, '.': finish;
        ':branches' and ':branch N' too, and commands that only reply, like ':settings').
        End of input finishes the turn."""
        from gpt2core.stepping import StepError

        try:
            st = self.session.start_step(action)
        except user_errors() as e:
            self.say(str(e), error=True)
            return
        self.say(f"step mode on {st.lm.name}: {self.STEP_KEYS}")
        self._show_step(st)
        while True:
            line = self.read("step> ")
            if line is None or line.strip() == ".":
                break
            cmd = line.strip()
            try:
                if cmd == "":
                    st.accept()
                elif cmd == "-":
                    st.undo()
                elif cmd.isdigit():
                    st.force(int(cmd))
                elif cmd.startswith(":"):
                    said = self.session.handle(cmd)
                    if isinstance(said, SwitchBranch):
                        self.session.switch_branch(said.n)
                    elif isinstance(said, Reply):
                        self.say(said.text, error=said.level == "error")
                        continue
                    else:
                        self.say(f"in step mode first end the turn ('.'), then {cmd}", error=True)
                        continue
                else:
                    self.say(f"in step mode: {self.STEP_KEYS}", error=True)
                    continue
            except StepError as e:
                self.say(str(e), error=True)
            self._show_step(st)
        summary = self.session.finish_step(st, action.prompt)
        self.say(f"[{st.lm.name}] ", painted=self._painted(step_pieces(st)))
        self.say(f"input_ids: {tensor_text(summary.input_ids)}")
        self.say(f"output:    {tensor_text(summary.output_ids)}")
        forced = sum(r.forced for r in st.tokens)
        self.say(f"{summary.new_tokens} tokens, {forced} forced, {len(st.branches)} branches")

    def _show_step(self, st) -> None:
        from gpt2core.tokenizer import piece

        tok = st.lm.tokenizer
        pieces, width = step_pieces(st), 0
        tail = []  # the pieces of about the last 60 characters
        for text, p in reversed(pieces):
            if width >= 60:
                break
            tail.insert(0, (text, p))
            width += len(text)
        self.say(f"--- step {len(st.tokens) + 1}: ...", painted=self._painted(tail))
        for k, c in enumerate(st.proposal.candidates, 1):
            mark = "  <- the model's pick" if c.token_id == st.proposal.token_id else ""
            self.say(f"  {k}  {printable(repr(piece(tok, c.token_id))):<16} {c.prob:6.1%}{mark}")

    def _shown(self, event: TokenEvent) -> str:
        """A token's text, made safe; coloured by surprisal when asked and stdout is a
        terminal (never into a pipe or a file)."""
        return self._paint(event.text, chosen_prob(event))

    def _paint(self, text: str, prob: float) -> str:
        text = printable(text)
        if self.session.display["color"] != "surprisal" or not self._is_tty():
            return text
        colour = ANSI_BANDS[surprisal_band(prob)]
        return f"{colour}{text}\x1b[0m" if colour and text else text

    def _painted(self, pieces: list[tuple[str, float]]) -> str:
        return "".join(self._paint(text, p) for text, p in pieces)

    def _is_tty(self) -> bool:
        isatty = getattr(self.out, "isatty", None)
        return bool(isatty and isatty())

    def compare(self, prompt: str) -> None:
        try:
            with self._ctrl_c_cancels():
                r = self.session.run_compare(
                    prompt, cancel=self.cancel, on_progress=lambda m: self.say(m)
                )
        except user_errors() as e:
            self.say(str(e), error=True)
            return
        for label, summ in (("scratch", r.left), ("pretrained", r.right)):
            self.say(f"--- {label}: {summ.model}\n{printable(summ.text)}")
        if r.first_difference is None:
            self.say("identical token for token")
        else:
            self.say(f"first difference at new token {r.first_difference}")

    def run_lines(self, lines: Iterable[str]) -> int:
        buffer: list[str] = []
        lines = iter(lines)
        self.read = lambda _prompt: _strip(next(lines, None))  # step mode reads from here too
        for raw in lines:
            line = raw.rstrip("\n")
            if line.endswith("\\"):  # continuation: a multi-line prompt
                buffer.append(line[:-1])
                continue
            buffer.append(line)
            text, buffer = "\n".join(buffer), []
            if not self.run_line(text):
                return 0
        if buffer:
            self.run_line("\n".join(buffer))
        return 0


def run_replay(path: str, session: Session | None = None, out: TextIO | None = None,
               err: TextIO | None = None) -> int:  # fmt: skip
    """`gpt2 chat --plain --replay FILE`: rerun every turn of a saved session, print it and
    say whether it reproduced the saved output_ids. 0: all did; 1: one or more did not
    (one line each); 2: the file is missing or not a saved session (one line)."""
    from repl.replay import ReplayFileError, read_session, replay_turn

    out, err = out or sys.stdout, err or sys.stderr
    repl = PlainREPL(session or Session(model="scratch", history_path=False), out, err)
    try:
        turns = read_session(path)
    except ReplayFileError as e:
        repl.say(str(e), error=True)
        return 2
    repl.say(f"replaying {len(turns)} turns from {path}")
    matched = 0
    for saved in turns:
        s = saved.settings
        how = (
            "greedy"
            if s.is_greedy
            else (f"seed={s.seed} temperature={s.temperature} top_k={s.top_k} top_p={s.top_p}")
        )
        repl.say(f"--- turn {saved.n}/{len(turns)}: {saved.kind} on {saved.model}, {how}")
        repl.say(f"prompt: {saved.prompt}")
        result = replay_turn(repl.session, saved)
        if result.output_ids:
            repl.say(f"[{saved.model}] {result.text}")
            repl.say(f"output:    {tensor_text(result.output_ids)}")
        if result.matched:
            matched += 1
            repl.say(f"turn {saved.n}: reproduced ({len(result.output_ids)} output_ids)")
        else:
            err.write(f"mismatch: turn {saved.n}: {printable(result.problem or '')}\n")
            err.flush()
    repl.say(f"replay: {matched} of {len(turns)} turns reproduced their output_ids")
    return 0 if matched == len(turns) else 1


def _completer():
    from prompt_toolkit.completion import Completer, Completion

    class CommandCompleter(Completer):
        def get_completions(self, document, complete_event):
            text = document.text_before_cursor
            if not text.startswith(":"):
                return
            if " " not in text:
                for c in COMMANDS:
                    if f":{c.name}".startswith(text):
                        yield Completion(
                            f":{c.name}", start_position=-len(text), display_meta=c.help
                        )
                return
            name = text[1:].split(" ", 1)[0]
            word = document.get_word_before_cursor(WORD=True)
            for c in COMMANDS:
                if c.name == name:
                    for option in c.completions:
                        if option.startswith(word):
                            yield Completion(option, start_position=-len(word))

    return CommandCompleter()


def _strip(line: str | None) -> str | None:
    return None if line is None else line.rstrip("\n")


def decoded_lines(stream) -> Iterator[str]:
    """Lines of a byte stream (or a text one), decoded as UTF-8 with U+FFFD for any byte
    that is not: one bad byte is one odd character, never the end of the session."""
    binary = getattr(stream, "buffer", None)
    if binary is None:
        yield from stream
        return
    for raw in binary:
        yield raw.decode("utf-8", "replace")


def _safe_file_history(path: str):
    """prompt_toolkit's FileHistory, storing lines that held undecodable input too."""
    from prompt_toolkit.history import FileHistory

    class SafeFileHistory(FileHistory):
        def store_string(self, string: str) -> None:
            clean = string.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
            try:
                super().store_string(clean)
            except OSError:
                pass  # history is a convenience: a read-only home must not end the session

    return SafeFileHistory(path)


def run_plain(
    model: str = "pretrained", session: Session | None = None, stdin: TextIO | None = None
) -> int:
    session = session or Session(model=model)
    repl = PlainREPL(session)
    stdin = stdin or sys.stdin
    repl.start()
    if not (stdin.isatty() and repl._is_tty()):
        # prompt_toolkit draws its prompt on stdout: into a file or a pipe it writes escape
        # sequences between the replies, so a redirected session reads plain lines
        return repl.run_lines(decoded_lines(stdin))

    from prompt_toolkit import PromptSession
    from prompt_toolkit.key_binding import KeyBindings
    from prompt_toolkit.patch_stdout import patch_stdout

    path = data_dir() / "plain_history"
    path.parent.mkdir(parents=True, exist_ok=True)
    bindings = KeyBindings()

    @bindings.add("escape", "enter")
    def _(event):  # Esc, Enter: a new line inside the prompt
        event.current_buffer.insert_text("\n")

    prompt = PromptSession(
        history=_safe_file_history(str(path)), completer=_completer(), key_bindings=bindings
    )

    def read(text: str) -> str | None:
        try:
            with patch_stdout():
                return prompt.prompt(text)
        except (EOFError, KeyboardInterrupt):
            return None

    repl.read = read
    while True:
        try:
            with patch_stdout():
                line = prompt.prompt("> ")
        except KeyboardInterrupt:
            continue  # Ctrl-C at the prompt clears the line
        except EOFError:
            return 0
        while line.endswith("\\"):
            try:
                line = line[:-1] + "\n" + prompt.prompt("... ")
            except (KeyboardInterrupt, EOFError):
                break
        if not repl.run_line(line):
            return 0
