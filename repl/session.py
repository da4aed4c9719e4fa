"""The session core shared by the Textual app and the line-mode REPL.

It parses what a person types, keeps settings, the loaded models, the input history and
the transcript, and runs turns. It imports neither textual nor prompt_toolkit: a front
end calls ``handle(line)``, gets an ``Action`` back, and decides how to run it (a worker
thread in the TUI, inline in line mode).
"""

from __future__ import annotations

import json
import os
import secrets
import threading
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from gpt2core import jsontext
from gpt2core.errors import UserError
from gpt2core.generate import Event, GenerationSummary, LanguageModel, TokenEvent
from gpt2core.sampling import USER_SETTINGS, Settings, SettingsError
from repl.commands import BY_NAME, help_text
from repl.terminal import inline, safe, strip_controls

Loader = Callable[[str], LanguageModel]
# Every model load, on any thread, holds this: TensorFlow and transformers then import
# once, on one thread at a time, and two loads never build graphs side by side.
LOAD_LOCK = threading.RLock()

printable = safe  # the one sanitiser (repl.terminal), under the name the widgets use


def clean_input(line: str) -> str:
    """What a person typed, without control characters (pasted escapes, NULs) and with any
    undecodable byte (a lone surrogate from a terminal's decoder) as U+FFFD."""
    line = line.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return strip_controls(line.replace("\r\n", "\n").replace("\r", "\n")).strip()


def tensor_text(ids: list[int]) -> str:
    """``print(tf.constant([ids]))`` as TensorFlow shows it (values formatted by NumPy)."""
    import numpy as np

    values = np.array2string(np.asarray([ids], dtype=np.int32), max_line_width=10**9)
    return f"tf.Tensor({values}, shape=(1, {len(ids)}), dtype=int32)"


def data_dir() -> Path:
    override = os.environ.get("GPT2_HOME")
    if override:
        return Path(override)
    from platformdirs import user_data_dir

    return Path(user_data_dir("gpt2", appauthor=False))


def default_loader(spec: str) -> LanguageModel:
    from gpt2core.specs import load_lm

    return load_lm(spec)


def user_errors() -> tuple[type[BaseException], ...]:
    """What a front end reports as one line: gpt2core's user errors, and the OS's (a file
    that cannot be written, a directory that cannot be read)."""
    return (UserError, OSError)


SAVE_FORMAT, SAVE_VERSION = "gpt2-session", 1  # what :save writes as JSON

# How the front ends show things (not how the model samples): `:set color=surprisal`.
# Each key lists its values, the default first.
DISPLAY: dict[str, tuple[str, ...]] = {"color": ("none", "surprisal")}


# Surprisal colouring: a generated token's probability under the model, in bands. Each
# front end maps a band to its own colour; the legend is the same everywhere.
SURPRISAL_BANDS: tuple[tuple[float, str], ...] = (
    (0.5, "p>50%"),
    (0.2, "20-50%"),
    (0.05, "5-20%"),
    (0.0, "<5%"),
)


def surprisal_band(prob: float) -> int:
    """0 for an expected token (p > 0.5) ... 3 for a gamble (p < 0.05)."""
    for i, (floor, _) in enumerate(SURPRISAL_BANDS):
        if prob > floor:
            return i
    return len(SURPRISAL_BANDS) - 1


def step_pieces(st) -> list[tuple[str, float]]:
    """A step-mode turn's tokens as (text, the model's probability for it), the text
    decoded as a stream would (a character split across tokens shows with its last)."""
    from gpt2core.tokenizer import stream_decoder

    decoder = stream_decoder(st.lm.tokenizer)
    pieces = [(decoder.push(r.token_id), r.prob) for r in st.tokens]
    tail = decoder.flush()
    if tail and pieces:
        pieces[-1] = (pieces[-1][0] + tail, pieces[-1][1])
    return pieces


def chosen_prob(event: TokenEvent) -> float:
    """The probability the model gave the token it produced (from the step's candidates)."""
    return next((c.prob for c in event.candidates if c.chosen), 0.0)


# -- actions: what the front end should do with a line ------------------------------------


@dataclass(frozen=True)
class Reply:
    text: str
    level: str = "info"  # info | error


@dataclass(frozen=True)
class Generate:
    prompt: str
    # What the turn runs with, fixed when the line is typed: a prompt queued behind a
    # running generation keeps the settings and the model asked for before it, whatever
    # is typed after it. None: whatever is current when it starts.
    settings: Settings | None = field(default=None, compare=False)
    model: str | None = field(default=None, compare=False)


@dataclass(frozen=True)
class LoadModel:
    spec: str


@dataclass(frozen=True)
class Compare:
    prompt: str


@dataclass(frozen=True)
class Inspect:
    prompt: str


@dataclass(frozen=True)
class TrainStart:
    request: object = field(compare=False)  # repl.train_args.TrainRequest


@dataclass(frozen=True)
class TrainStop:
    pass


@dataclass(frozen=True)
class StepStart:
    prompt: str
    settings: Settings = field(compare=False)


@dataclass(frozen=True)
class SwitchBranch:
    """`:branch N` while a step-mode turn is open: the front end runs
    ``Session.switch_branch`` where it runs the turn's other steps."""

    n: int


@dataclass(frozen=True)
class Clear:
    pass


@dataclass(frozen=True)
class Quit:
    pass


Action = (
    Reply | Generate | LoadModel | Compare | Inspect | StepStart | SwitchBranch | TrainStart
    | TrainStop | Clear | Quit
)  # fmt: skip


@dataclass
class Turn:
    model: str
    prompt: str
    settings: dict
    seed: int
    input_ids: list[int]
    output_ids: list[int]
    text: str
    stats: dict = field(default_factory=dict)
    # per generated token: id, whether a person forced it, its probability and rank
    tokens: list[dict] = field(default_factory=list)
    branches: list[list[int]] = field(default_factory=list)  # step mode's other paths
    kind: str = "generate"  # generate | step
    # step mode: what the person did, in order (gpt2core.stepping.Stepper.ops), so a
    # replay takes the same steps: ["accept"], ["force", k, token_id], ["undo"], ["switch", n]
    ops: list[list] = field(default_factory=list)


@dataclass(frozen=True)
class CompareResult:
    prompt: str
    left: GenerationSummary
    right: GenerationSummary
    first_difference: int | None  # index into the new tokens, None if identical


class History:
    """Input lines kept across runs (one JSON string per line, newest last)."""

    def __init__(self, path: Path | None, limit: int = 1000):
        self.path, self.limit = path, limit
        self.items: list[str] = []
        if path and path.is_file():
            for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
                try:
                    item = jsontext.loads(raw)
                except ValueError:  # not JSON, a number too long, nested too deep
                    continue
                if isinstance(item, str):
                    self.items.append(item)
        self.items = self.items[-limit:]

    def add(self, line: str) -> None:
        if not line or (self.items and self.items[-1] == line):
            return
        self.items.append(line)
        if self.path:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with open(self.path, "a", encoding="utf-8", errors="replace") as f:
                    f.write(json.dumps(line, ensure_ascii=False) + "\n")
            except OSError:
                pass  # history is a convenience: a read-only home must not break the app


def _real_directory(parsed) -> str | None:
    """``kind:real path`` when a spec names an existing directory, else None."""
    try:
        path = Path(parsed.target).expanduser()
        return (
            f"{parsed.kind}:{os.path.realpath(path)}" if parsed.target and path.is_dir() else None
        )
    except (OSError, RuntimeError, ValueError):  # a NUL byte, a loop of links: not one
        return None


def _checkpoint_files(target: str) -> tuple | None:
    """What a checkpoint directory holds now: (name, size, mtime) per file, or None (no
    directory: a hub id, whose cached revision does not change under us). A model is
    loaded again when this changes: ``:train --out DIR`` (or another process) wrote new
    weights into a directory this session had loaded, and ``:model scratch:DIR`` kept
    serving the old ones."""
    if not target:
        return None
    try:
        path = Path(target).expanduser()
        if not path.is_dir():
            return None
        with os.scandir(path) as entries:
            found = []
            for entry in entries:
                if entry.is_file():
                    st = entry.stat()
                    found.append((entry.name, st.st_size, st.st_mtime_ns))
        return tuple(sorted(found))
    except (OSError, RuntimeError):  # unreadable: the loader says why, if it matters
        return None


class Session:
    def __init__(
        self,
        model: str = "pretrained",
        loader: Loader | None = None,
        history_path: Path | None | bool = True,
    ):
        self.loader = loader or default_loader
        self.requested = model
        self.settings = Settings()
        self.models: dict[str, LanguageModel] = {}
        self._files: dict[str, tuple | None] = {}  # spec -> its directory's files when loaded
        self._spellings: dict[str, str] = {}  # kind:real path of a directory -> its spec
        self.current: LanguageModel | None = None
        self.turns: list[Turn] = []
        self.last_scratch = "scratch"
        self.last_pretrained = "pretrained"
        if history_path is True:
            history_path = data_dir() / "history.jsonl"
        self.history = History(history_path or None)
        self._lock = threading.Lock()
        self.wanted_model: str | None = None  # set by a front end that loads in the background
        self.display = {key: values[0] for key, values in DISPLAY.items()}
        self.stepper = None  # the open step-mode turn (gpt2core.stepping.Stepper), if any

    # -- parsing ------------------------------------------------------------------------
    def reads_last_turn(self, line: str) -> bool:
        """Whether ``line`` is a command that acts on the last turn (``:again``; ``:step``
        and ``:inspect`` without a prompt). A front end that runs turns in the background
        holds such a line until the turns typed before it are done, and only then
        ``handle``s it: handled at once it would act on an older turn."""
        text = clean_input(line)
        if not text.startswith(":") or text.startswith("::"):
            return False
        name, _, arg = text[1:].partition(" ")
        spec = BY_NAME.get(name.strip().lower())
        return spec is not None and spec.reads_last_turn(arg.strip())

    def handle(self, line: str, record: bool = True) -> Action | None:
        """Turn one line of input into an action (None for an empty line); ``record``:
        add it to the input history (a held line was added when it was typed)."""
        text = clean_input(line)
        if not text:
            return None
        if record:
            self.history.add(text)
        if not text.startswith(":") or text.startswith("::"):
            current = self.current.name if self.current else None
            return Generate(
                text[1:] if text.startswith("::") else text,
                settings=self._turn_settings(),
                model=self.wanted_model or current,
            )
        name, _, arg = text[1:].partition(" ")
        name, arg = name.strip().lower(), arg.strip()
        spec = BY_NAME.get(name)
        if spec is None:
            return Reply(f"unknown command :{name} (type :help for the list)", "error")
        if spec.needs_arg and not arg:
            return Reply(f"usage: {spec.full_usage}", "error")
        return getattr(self, spec.method)(arg)

    # -- commands: one method per row of repl.commands.COMMANDS ----------------------------
    def cmd_quit(self, arg: str) -> Action:
        return Quit()

    def cmd_help(self, arg: str) -> Action:
        return Reply(help_text())

    def cmd_clear(self, arg: str) -> Action:
        return Clear()

    def cmd_settings(self, arg: str) -> Action:
        return Reply(self.settings_text())

    def cmd_model(self, arg: str) -> Action:
        if not arg:
            return Reply(self.current.description if self.current else "no model loaded yet")
        return LoadModel(arg)

    def cmd_again(self, arg: str) -> Action:
        if arg not in ("", "same"):
            return Reply(f"usage: {BY_NAME['again'].full_usage}", "error")
        if not self.turns:
            return Reply("nothing to run again yet: type a prompt first", "error")
        last = self.turns[-1]
        settings = self.settings
        if arg == "same":
            settings = Settings(**last.settings)
        else:
            settings = settings.updated(seed=secrets.randbelow(2**31))
        current = self.current.name if self.current else None
        model = last.model if arg == "same" else (self.wanted_model or current)
        return Generate(last.prompt, settings=settings, model=model)

    def cmd_step(self, arg: str) -> Action:
        if arg:
            return StepStart(arg, self._turn_settings())
        if not self.turns:
            return Reply("nothing to continue: give a prompt (:step PROMPT)", "error")
        last = self.turns[-1]
        return StepStart(last.prompt + last.text, self._turn_settings())

    def start_step(self, action: StepStart, lm: LanguageModel | None = None):
        """A ``Stepper`` for the action, on ``lm`` (default: the current model)."""
        from gpt2core.stepping import Stepper

        lm = lm or self.current
        if lm is None:
            raise UserError("no model is loaded yet")
        self.stepper = Stepper(lm, action.prompt, action.settings, pipeline=True)
        return self.stepper

    def switch_branch(self, n: int) -> None:
        """Make branch ``n`` of the open step-mode turn the current path (StepError if
        there is no such branch)."""
        from gpt2core.stepping import StepError

        if self.stepper is None:
            raise StepError("no step-mode turn is open: :branch N works inside step mode")
        self.stepper.switch(n)

    def finish_step(self, stepper, prompt: str) -> GenerationSummary:
        """End a step-mode turn and record it: forced tokens, branches and the steps taken
        (enough for a replay to take them again)."""
        summary = stepper.finish()
        if self.stepper is stepper:
            self.stepper = None
        self._record(stepper.lm, prompt, stepper.settings, summary)
        turn = self.turns[-1]
        turn.kind = "step"
        turn.tokens = [asdict(r) for r in stepper.tokens]
        turn.branches = [[r.token_id for r in b.tokens] for b in stepper.branches]
        turn.ops = [list(op) for op in stepper.ops]
        return summary

    def cmd_train(self, arg: str) -> Action:
        """`:train FILE [flags]` (the flags of `gpt2 train`, parsed by the same code),
        `:train shakespeare` (the bundled corpus), `:train stop`."""
        from repl.train_args import TrainHelp, parse_train_args

        words = arg.split()
        if words[:1] == ["stop"]:
            if len(words) > 1:  # not a corpus named stop: that is ./stop
                return Reply(":train stop takes nothing after it (a file named stop is "
                             "./stop)", "error")  # fmt: skip
            return TrainStop()
        try:
            return TrainStart(parse_train_args(arg))
        except TrainHelp as e:
            return Reply(e.text)
        except UserError as e:
            return Reply(str(e), "error")

    def cmd_branches(self, arg: str) -> Action:
        st = self.stepper
        if st is not None:  # the open step-mode turn
            tok = st.lm.tokenizer
            if not st.branches:
                return Reply("no branches yet: step back and choose another token to make one")
            lines = [f"now: {st.text()}"]
            lines += [f"  {n}: {tok.decode([r.token_id for r in b.tokens])}"
                      for n, b in enumerate(st.branches, 1)]  # fmt: skip
            lines.append(":branch N switches")
            return Reply("\n".join(lines))
        turn = next((t for t in reversed(self.turns) if t.branches), None)
        if turn is None:
            return Reply("no branches: in step mode, step back and choose another token")
        tok = self.models.get(turn.model, self.current)
        tok = tok.tokenizer if tok is not None else None
        lines = [f"branches of the turn {turn.prompt[:40]!r}:"]
        for n, ids in enumerate(turn.branches, 1):
            text = tok.decode(ids) if tok is not None else str(ids)
            lines.append(f"  {n}: {text}")
        return Reply("\n".join(lines))

    def cmd_branch(self, arg: str) -> Action:
        if not arg.isdigit():
            return Reply(f"usage: {BY_NAME['branch'].full_usage} (N as :branches lists them)",
                         "error")  # fmt: skip
        if self.stepper is None:
            return Reply("switch branches inside step mode (:step), where the turn is open",
                         "error")  # fmt: skip
        return SwitchBranch(int(arg))

    def cmd_inspect(self, arg: str) -> Action:
        if arg:
            return Inspect(arg)
        if not self.turns:
            return Reply("nothing to inspect yet: give a prompt, or run one first", "error")
        last = self.turns[-1]
        return Inspect(last.prompt + last.text)  # the whole last turn, as the model saw it

    def run_inspect(self, prompt: str, lm: LanguageModel | None = None) -> str:
        """The inspection of ``prompt`` as text (user errors raise)."""
        from gpt2core.inspect import inspect
        from repl.inspect_text import inspection_text

        lm = lm or self.current
        if lm is None:
            raise UserError("no model is loaded yet")
        return inspection_text(inspect(lm, prompt), lm.tokenizer)

    def cmd_compare(self, arg: str) -> Action:
        return Compare(arg)

    def cmd_set(self, arg: str) -> Action:
        usage = f"usage: {BY_NAME['set'].full_usage}"
        pairs = arg.split()
        assignments = {}
        for pair in pairs:
            key, eq, value = pair.partition("=")
            if not eq or not key:
                return Reply(f"{pair!r} is not key=value; {usage}", "error")
            assignments[key] = value
        display = {k: v for k, v in assignments.items() if k in DISPLAY}
        try:
            for key, value in display.items():
                if value not in DISPLAY[key]:
                    raise SettingsError(
                        f"{key}={value!r} is invalid: {key} must be one of "
                        f"{', '.join(DISPLAY[key])}"
                    )
            sampling = {k: v for k, v in assignments.items() if k not in DISPLAY}
            self.settings = self.settings.parsed(sampling) if sampling else self.settings
        except SettingsError as e:
            return Reply(str(e), "error")
        self.display.update(display)
        shown = {**self.display, **self.settings.as_dict()}
        return Reply("set " + ", ".join(f"{k}={shown[k.replace('-', '_')]}" for k in assignments))

    def settings_text(self) -> str:
        s = self.settings
        shown = {**{k: getattr(s, k) for k in USER_SETTINGS}, **self.display}
        return "  ".join(f"{k}={v}" for k, v in shown.items())

    def cmd_tokens(self, text: str) -> Reply:
        from gpt2core.tokenizer import piece

        if self.current is None:  # loading the tokenizer here would race the model load
            return Reply("no model is loaded yet: :tokens works once it is ready", "error")
        try:
            tok = self.current.tokenizer
            ids = tok.encode(text)
        except user_errors() as e:
            return Reply(str(e), "error")
        rows = [f"{n:>4}  {i:>6}  '{inline(piece(tok, i))}'" for n, i in enumerate(ids)]
        return Reply(f"{len(ids)} tokens\n   #      id  piece\n" + "\n".join(rows))

    # -- models -------------------------------------------------------------------------
    def key(self, spec: str) -> str:
        """The name a model spec loads under: the parsed spec, or for a directory this
        session has loaded before under another spelling (``runs/x/``, ``./runs/x``, an
        absolute path, a link to it) that first spelling, so one checkpoint is never held
        twice. Raises SpecError."""
        return self._spelling(spec)[0]

    def _spelling(self, spec: str):
        """(``key``, the parsed spec, its directory's ``kind:real path`` or None)."""
        from gpt2core.specs import parse_spec

        parsed = parse_spec(spec)
        real = _real_directory(parsed)
        return (self._spellings.get(real, str(parsed)) if real else str(parsed)), parsed, real

    def load(self, spec: str, activate: bool = True) -> LanguageModel:
        """Load (or reuse) a model; make it current unless ``activate`` is False (a front
        end that warms the model up first activates it later). Raises user errors."""
        with LOAD_LOCK:  # one load at a time, whichever thread asks
            key, parsed, real = self._spelling(spec)
            files = _checkpoint_files(parsed.target)  # any spelling: the same directory
            lm = self.models.get(key)
            if lm is None or self._files.get(key) != files:  # new, or its files changed
                lm = self.loader(key)
                self.models[key] = lm
                self._files[key] = files
                if real:
                    self._spellings.setdefault(real, key)
        if activate:
            self.activate(lm)
        return lm

    def unchanged(self, key: str) -> bool:
        """Whether the model loaded for ``key`` (from ``Session.key``) still matches its
        directory's files: ``load`` would reuse it."""
        from gpt2core.specs import parse_spec

        return key in self.models and self._files.get(key) == _checkpoint_files(
            parse_spec(key).target
        )

    def activate(self, lm: LanguageModel) -> None:
        self._remember(lm.name)
        self.current = lm

    def _remember(self, key: str) -> None:
        if key.startswith("scratch"):
            self.last_scratch = key
        else:
            self.last_pretrained = key

    def load_startup(self, activate: bool = True) -> tuple[LanguageModel, str | None]:
        """The requested model; if it cannot load, say why and fall back to scratch."""
        try:
            return self.load(self.requested, activate), None
        except user_errors() as e:
            if self.requested == "scratch":
                raise
            note = f"could not load {self.requested} ({e}); using scratch instead"
            return self.load("scratch", activate), note

    # -- turns --------------------------------------------------------------------------
    def _turn_settings(self) -> Settings:
        s = self.settings
        if s.seed is None:  # record the seed, so every turn can be replayed
            s = s.updated(seed=secrets.randbelow(2**31))
        return s

    def run_turn(
        self,
        prompt: str,
        cancel: threading.Event | None = None,
        lm: LanguageModel | None = None,
        settings: Settings | None = None,
        probes=frozenset(),
    ) -> Iterator[Event]:
        lm = lm or self.current
        if lm is None:
            raise RuntimeError("no model loaded")
        settings = settings or self._turn_settings()
        tokens = []
        for event in lm.stream(prompt, settings, cancel=cancel, probes=probes):
            if isinstance(event, TokenEvent):
                rank = next((n for n, c in enumerate(event.candidates, 1) if c.chosen), None)
                if rank is not None and rank > settings.candidates:
                    rank = None  # a sampled token from outside the shown candidates
                tokens.append(
                    {"token_id": event.token_id, "forced": False,
                     "prob": chosen_prob(event), "rank": rank}
                )  # fmt: skip
            if isinstance(event, GenerationSummary):
                self._record(lm, prompt, settings, event)
                self.turns[-1].tokens = tokens
            yield event

    def run_compare(
        self,
        prompt: str,
        cancel: threading.Event | None = None,
        on_progress: Callable[[str], None] | None = None,
    ) -> CompareResult:
        from gpt2core.specs import parse_spec

        settings = self._turn_settings()
        runs = []
        for spec in (str(parse_spec(self.last_scratch)), str(parse_spec(self.last_pretrained))):
            if on_progress:
                on_progress(
                    f"compare: loading {spec}..."
                    if spec not in self.models
                    else f"compare: running {spec}..."
                )
            lm = self.load(spec, activate=False)
            runs.append((lm, lm.generate(prompt, settings, cancel=cancel)))
        for lm, summary in runs:  # both or neither: a compare whose second model failed
            self._record(lm, prompt, settings, summary)  # showed only its error
        (_, left), (_, right) = runs
        a = left.output_ids[len(left.input_ids) :]
        b = right.output_ids[len(right.input_ids) :]
        diff = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), None)
        if diff is None and len(a) != len(b):
            diff = min(len(a), len(b))
        return CompareResult(prompt, left, right, diff)

    def _record(
        self, lm: LanguageModel, prompt: str, settings: Settings, summary: GenerationSummary
    ) -> None:
        self.turns.append(
            Turn(
                model=lm.name,
                prompt=prompt,
                settings=settings.as_dict(),
                seed=settings.seed,
                input_ids=summary.input_ids,
                output_ids=summary.output_ids,
                text=summary.text,
                stats=stats_of(summary),
            )
        )

    # -- transcript -----------------------------------------------------------------------
    def cmd_save(self, filename: str) -> Reply:
        try:
            path = Path(filename).expanduser()
        except RuntimeError:  # ~name, and no such user
            return Reply(f"{filename}: cannot write (no such user's home directory)", "error")
        try:
            if path.suffix.lower() == ".md":
                text = self.markdown()
            else:
                text = json.dumps(self.transcript(), indent=2, ensure_ascii=False)
            if path.is_dir():
                return Reply(f"{filename}: is a directory; give a file name", "error")
            from gpt2core.fsutil import atomic_write_text

            atomic_write_text(path, text)
        except UserError as e:
            return Reply(str(e), "error")
        except OSError as e:
            return Reply(f"{filename}: cannot write ({e.strerror or e})", "error")
        return Reply(f"saved {len(self.turns)} turns to {path}")

    def transcript(self) -> dict:
        """The session as :save writes it: every turn with its model spec, settings (the
        seed among them), ids, each generated token's probability, rank and whether it
        was forced, and for step-mode turns the branches and the steps taken. ``gpt2 chat
        --plain --replay FILE`` reruns it (repl.replay)."""
        from gpt2core import __version__

        return {
            "format": SAVE_FORMAT,
            "version": SAVE_VERSION,
            "gpt2": __version__,
            "turns": [asdict(t) for t in self.turns],
        }

    def markdown(self) -> str:
        out = ["# gpt2 session", ""]
        for n, t in enumerate(self.turns, 1):
            out += [
                f"## Turn {n}: {t.model}",
                "",
                f"**Prompt:** {t.prompt}",
                "",
                f"**Completion:** {t.text}",
                "",
                f"- settings: `{json.dumps(t.settings)}`",
                f"- input_ids: `{tensor_text(t.input_ids)}`",
                f"- output_ids: `{tensor_text(t.output_ids)}`",
                f"- stats: `{json.dumps(t.stats)}`",
                "",
            ]
        return "\n".join(out)

    def log_error(self, context: str, details: str) -> None:
        """Keep a traceback for a bug report; the person sees one line."""
        try:
            path = data_dir() / "errors.log"
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a", encoding="utf-8", errors="replace") as f:
                f.write(f"--- {context}\n{details}\n")
        except OSError:
            pass


def stats_of(s: GenerationSummary) -> dict:
    return {
        "prompt_tokens": s.prompt_tokens,
        "new_tokens": s.new_tokens,
        "ttft_s": round(s.ttft_s, 4),
        "tokens_per_s": round(s.tokens_per_s, 2),
        "stop_reason": s.stop_reason,
        "dropped_tokens": s.dropped_tokens,
        "wall_s": round(s.wall_s, 3),
    }


def stats_line(s: GenerationSummary) -> str:
    parts = [
        f"{s.prompt_tokens} prompt + {s.new_tokens} new tokens",
        f"ttft {s.ttft_s:.2f}s",
        f"{s.tokens_per_s:.1f} tok/s",
        f"stop: {s.stop_reason}",
    ]
    if s.dropped_tokens:
        parts.append(f"{s.dropped_tokens} prompt tokens dropped to fit the context")
    return " | ".join(parts)
