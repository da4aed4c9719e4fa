"""Replay a session saved by `:save`: rerun each turn through the session core and check
that it gives the saved output_ids again.

A turn is reproducible because everything that decides its tokens is in the file: the
model spec, every sampling setting and the seed, and for a step-mode turn the steps the
person took (accept, force the saved token, undo, switch branch). Sampling runs on the
host from the seed, so the same model, prompt and settings give the same tokens.

No UI here: ``gpt2 chat --plain --replay FILE`` (repl.plain.run_replay) prints what this
returns. A file that cannot be read or is not a saved session raises ``ReplayFileError``
(one line); a turn that cannot be run again (its model does not load) is a result with
a ``problem``, like a turn whose ids differ.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path

from gpt2core import jsontext
from gpt2core.errors import UserError
from gpt2core.fsutil import read_regular
from gpt2core.generate import GenerationSummary, PromptEvent, TokenEvent
from gpt2core.sampling import Settings


class ReplayFileError(UserError):
    """The file is missing, unreadable, not JSON, or not a session saved by :save."""


@dataclass(frozen=True)
class SavedTurn:
    n: int  # 1-based, as the file lists them
    model: str
    prompt: str
    settings: Settings
    output_ids: list[int]
    kind: str  # generate | step
    ops: list[list] = field(default_factory=list)
    tokens: list[dict] = field(default_factory=list)
    branches: list[list[int]] = field(default_factory=list)
    stop_reason: str = ""
    new_tokens: int | None = None


@dataclass
class ReplayResult:
    saved: SavedTurn
    output_ids: list[int] = field(default_factory=list)
    text: str = ""
    problem: str | None = None  # None: reproduced exactly

    @property
    def matched(self) -> bool:
        return self.problem is None


# -- reading the file ------------------------------------------------------------------


def _is_ids(value) -> bool:
    return isinstance(value, list) and all(
        isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in value
    )


def read_session(path: str | Path) -> list[SavedTurn]:
    """The turns of a saved session, checked; ReplayFileError (one line) if it is not one."""
    try:
        path = Path(path).expanduser()
    except RuntimeError:  # ~name, and no such user
        raise ReplayFileError(f"{path}: cannot read it (no such user's home directory)") from None
    try:
        raw = read_regular(path, pipes=True)  # a FIFO with no writer: empty, not a wait
    except FileNotFoundError:
        raise ReplayFileError(f"{path}: no such file") from None
    except OSError as e:  # a directory, a device: read_regular says which
        raise ReplayFileError(f"{path}: cannot read it ({e.strerror or e})") from None
    if not raw.strip():  # an empty file, or a pipe no one writes to
        raise ReplayFileError(f"{path}: empty, not a saved session")
    try:
        data = jsontext.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ReplayFileError(f"{path}: not a JSON session (not UTF-8 text)") from None
    except json.JSONDecodeError as e:
        raise ReplayFileError(
            f"{path}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})"
        ) from None
    except ValueError as e:  # a number too long, nesting too deep
        raise ReplayFileError(f"{path}: not a JSON session ({type(e).__name__}: {e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("turns"), list):
        raise ReplayFileError(f'{path}: not a session saved by :save (no "turns" list)')
    return [_turn(path, n, t) for n, t in enumerate(data["turns"], 1)]


def _turn(path: Path, n: int, t) -> SavedTurn:
    where = f"{path}: turn {n}"
    if not isinstance(t, dict):
        raise ReplayFileError(f"{where}: not an object")
    for key in ("model", "prompt"):
        if not isinstance(t.get(key), str):
            raise ReplayFileError(f'{where}: "{key}" must be a string')
    if not _is_ids(t.get("output_ids")):
        raise ReplayFileError(f'{where}: "output_ids" must be a list of token ids')
    settings = t.get("settings")
    if not isinstance(settings, dict):
        raise ReplayFileError(f'{where}: "settings" must be an object')
    try:
        s = Settings(**settings)
    except TypeError as e:  # a key Settings does not have
        raise ReplayFileError(f"{where}: settings: {e}") from None
    except UserError as e:  # a value out of range
        raise ReplayFileError(f"{where}: settings: {e}") from None
    tokens = t.get("tokens", [])
    if not isinstance(tokens, list) or not all(
        isinstance(r, dict) and _is_ids([r.get("token_id")]) for r in tokens
    ):
        raise ReplayFileError(f'{where}: "tokens" must be a list of {{"token_id": ...}}')
    ops = t.get("ops", [])
    if not isinstance(ops, list) or not all(_valid_op(op) for op in ops):
        raise ReplayFileError(
            f'{where}: "ops" must be a list of ["accept"], ["force", k, token_id], '
            '["undo"], ["switch", n]'
        )
    branches = t.get("branches", [])
    if not isinstance(branches, list) or not all(_is_ids(b) for b in branches):
        raise ReplayFileError(f'{where}: "branches" must be a list of token id lists')
    stats = t.get("stats") if isinstance(t.get("stats"), dict) else {}
    new_tokens = stats.get("new_tokens")
    kind = t.get("kind")
    if kind is None:  # a file from before turns had a kind
        kind = "step" if ops or branches or any(r.get("forced") for r in tokens) else "generate"
    if kind not in ("generate", "step"):
        raise ReplayFileError(f'{where}: "kind" must be "generate" or "step", not {kind!r}')
    return SavedTurn(
        n=n,
        model=t["model"],
        prompt=t["prompt"],
        settings=s,
        output_ids=list(t["output_ids"]),
        kind=kind,
        ops=ops,
        tokens=tokens,
        branches=branches,
        stop_reason=str(stats.get("stop_reason", "")),
        new_tokens=new_tokens if _is_ids([new_tokens]) else None,
    )


def _valid_op(op) -> bool:
    if not isinstance(op, list) or not op:
        return False
    name, args = op[0], op[1:]
    if name in ("accept", "undo"):
        return not args
    if name == "force":
        return len(args) == 2 and _is_ids(args)
    if name == "switch":
        return len(args) == 1 and _is_ids(args)
    return False


# -- running a turn again ----------------------------------------------------------------


def replay_turn(session, saved: SavedTurn) -> ReplayResult:
    """Run ``saved`` again on ``session`` (a repl.session.Session, which records it as a
    new turn) and compare the ids."""
    from gpt2core.stepping import StepError
    from repl.session import StepStart, user_errors

    result = ReplayResult(saved)
    if saved.model == "scratch":
        result.problem = (
            "its model is the untrained scratch model, whose random weights are drawn "
            "afresh at each load: its tokens cannot be reproduced"
        )
        return result
    try:
        lm = session.load(saved.model)
    except user_errors() as e:
        result.problem = f"cannot load its model {saved.model}: {e}"
        return result
    try:
        if saved.kind == "step":
            st = session.start_step(StepStart(saved.prompt, saved.settings), lm)
            try:
                _take_steps(st, saved)
            finally:
                summary = session.finish_step(st, saved.prompt)
        else:
            summary = _generate(session, lm, saved)
    except StepError as e:
        result.problem = f"step mode could not take the saved steps: {e}"
        return result
    except user_errors() as e:
        result.problem = f"cannot run it: {e}"
        return result
    result.output_ids, result.text = summary.output_ids, summary.text
    result.problem = _difference(saved, summary, session.turns[-1])
    return result


def _take_steps(st, saved: SavedTurn) -> None:
    """The saved steps again; a file without them (written by hand, or older) gives each
    token: the model's pick, or the saved token forced."""
    if saved.ops:
        for op in saved.ops:
            if op[0] == "accept":
                st.accept()
            elif op[0] == "force":
                st.force_token(op[2])  # the saved token, wherever it ranks now
            elif op[0] == "undo":
                st.undo()
            else:
                st.switch(op[1])
        return
    for record in saved.tokens:
        if record.get("forced"):
            st.force_token(record["token_id"])
        else:
            st.accept()


def _generate(session, lm, saved: SavedTurn) -> GenerationSummary:
    """A plain turn again; one stopped by hand stops after as many tokens as it had. None
    runs past one token more than the file has: the ids differ by then, and a file's
    max_new_tokens (say 10**12) must not keep the replay going for ever."""
    cancel = threading.Event()
    stop_after = saved.new_tokens if saved.stop_reason == "cancelled" else None
    if stop_after == 0:
        cancel.set()
    summary, n, limit = None, 0, None
    for event in session.run_turn(saved.prompt, cancel=cancel, lm=lm, settings=saved.settings):
        if isinstance(event, PromptEvent):
            limit = max(1, len(saved.output_ids) - len(event.input_ids) + 1)
        elif isinstance(event, TokenEvent):
            n += 1
            if (stop_after is not None and n >= stop_after) or (limit is not None and n >= limit):
                cancel.set()  # the stream stops before the next token
        elif isinstance(event, GenerationSummary):
            summary = event
    assert summary is not None
    return summary


def _difference(saved: SavedTurn, summary: GenerationSummary, turn) -> str | None:
    got, want = summary.output_ids, saved.output_ids
    if got != want:
        i = next((i for i, (a, b) in enumerate(zip(got, want, strict=False)) if a != b), None)
        if i is None:
            return (f"output_ids differ: saved {len(want)} ids, replayed {len(got)} "
                    f"(the same up to {min(len(got), len(want))})")  # fmt: skip
        return f"output_ids differ at index {i}: saved {want[i]}, replayed {got[i]}"
    if saved.kind == "step" and saved.ops and turn.branches != saved.branches:
        return f"output_ids match but the branches differ: saved {saved.branches}, " \
               f"replayed {turn.branches}"  # fmt: skip
    return None
