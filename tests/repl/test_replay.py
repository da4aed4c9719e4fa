"""`gpt2 chat --plain --replay FILE`: a session saved by :save runs again, turn by turn,
through the session core, and must give the saved output_ids again; a tampered file
exits 1, a file that is not a saved session exits 2, each with one line."""

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from repl.plain import run_plain, run_replay
from repl.session import Session
from tests.repl.fakes import ALPHABET, FakeLM, FakeLoader

ROOT = Path(__file__).resolve().parents[2]


class Piped(io.StringIO):
    def isatty(self):
        return False


def _record(session, script, capsys):
    assert run_plain(session=session, stdin=Piped("\n".join(script) + "\n")) == 0
    return capsys.readouterr()


def _replay(path, capsys, loader=None):
    session = Session(model="scratch", loader=loader, history_path=False)
    rc = run_replay(str(path), session=session)
    out, err = capsys.readouterr()
    return rc, out, err, session


# -- real tiny models, both backends ------------------------------------------------------

SCRIPT = [
    ":set greedy=true max_new_tokens=6",
    "Once upon a time",
    ":set greedy=false temperature=1.5 top_k=20 seed=7 max_new_tokens=8",
    "The king said",
    ":set temperature=0.9 top_k=0 top_p=0.95 seed=3",
    ":step Hello there",
    "2",  # force the 2nd candidate
    "",  # the model's (sampled) pick
    "-",  # step back
    "3",  # force the 3rd: the accepted token becomes a branch
    "",
    ":branches",
    ":branch 1",  # back to the accepted path; the forced one is now branch 1
    "",
    ".",
]


@pytest.fixture(scope="module", params=["scratch", "pretrained"])
def spec(request, scratch_tiny_dir, hf_tiny_dir):
    """scratch: the tiny checkpoint gpt2core saved; pretrained: transformers' own
    TFGPT2LMHeadModel checkpoint (tf_model.h5) of a tiny random GPT-2."""
    return f"scratch:{scratch_tiny_dir}" if request.param == "scratch" else (
        f"pretrained:{hf_tiny_dir}")  # fmt: skip


def test_replay_reproduces_greedy_sampled_and_step_turns(spec, tmp_path, capsys):
    path = tmp_path / "s.json"
    session = Session(model=spec, history_path=False)
    _record(session, [*SCRIPT, f":save {path}"], capsys)
    data = json.loads(path.read_text())
    assert data["format"] == "gpt2-session" and data["version"] == 1
    greedy, sampled, step = data["turns"]
    assert greedy["model"] == sampled["model"] == step["model"] == spec
    assert greedy["settings"]["greedy"] and all(t["rank"] == 1 for t in greedy["tokens"])
    assert sampled["seed"] == 7 and sampled["settings"]["temperature"] == 1.5
    assert len(sampled["tokens"]) == 8  # a random tiny model never ends on <|endoftext|>
    # sampling at 1.5 from a near-flat distribution: not the favourite every time
    assert any(t["rank"] != 1 for t in sampled["tokens"])
    assert step["kind"] == "step" and step["seed"] == 3
    assert [t["forced"] for t in step["tokens"]] == [True, False, False]
    assert step["tokens"][0]["rank"] == 2 and all(0 < t["prob"] < 1 for t in step["tokens"])
    assert [op[0] for op in step["ops"]] == [
        "force", "accept", "undo", "force", "accept", "switch", "accept"]  # fmt: skip
    assert len(step["branches"]) == 1 and len(step["branches"][0]) == 3  # forced 3rd + pick

    rc, out, err, replayed = _replay(path, capsys)
    assert rc == 0, err
    assert err == ""
    assert [t.output_ids for t in replayed.turns] == [t["output_ids"] for t in data["turns"]]
    assert replayed.turns[2].branches == step["branches"]
    assert [t.tokens for t in replayed.turns] == [t["tokens"] for t in data["turns"]]
    assert out.count(": reproduced (") == 3
    assert "replay: 3 of 3 turns reproduced their output_ids" in out

    # one output id changed: that turn no longer matches, and replay says where
    index = len(sampled["input_ids"]) + 2
    original = sampled["output_ids"][index]
    sampled["output_ids"][index] = tampered = (original + 1) % 50257
    path.write_text(json.dumps(data))
    rc, out, err, _ = _replay(path, capsys)
    assert rc == 1
    assert err.splitlines() == [
        f"mismatch: turn 2: output_ids differ at index {index}: saved {tampered}, "
        f"replayed {original}"
    ]
    assert "replay: 2 of 3 turns reproduced" in out


def test_replay_as_a_command_in_a_fresh_process(scratch_tiny_dir, tmp_path, capsys):
    """The saved session reproduces in another process too (a fresh load, a fresh compile),
    and `gpt2 chat --plain --replay` exits 0."""
    path = tmp_path / "s.json"
    session = Session(model=f"scratch:{scratch_tiny_dir}", history_path=False)
    _record(session, [*SCRIPT, f":save {path}"], capsys)
    env = {**os.environ, "GPT2_HOME": str(tmp_path / "home"), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "repl.cli", "chat", "--plain", "--replay", str(path)],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "replay: 3 of 3 turns reproduced their output_ids" in proc.stdout
    assert "Traceback" not in proc.stderr


# -- the file: what it must hold, and what a bad one gives --------------------------------


def test_fake_model_replay_and_a_tampered_forced_token(tmp_path, capsys):
    """On the fake model: a step turn whose forced token was edited in the file forces the
    edited token (a candidate there too) and so no longer gives the saved ids."""
    path = tmp_path / "f.json"
    session = Session(model="pretrained:fake", loader=FakeLoader(), history_path=False)
    _record(session, [":set max_new_tokens=5 greedy=true", "abc", ":step xyz", "2", "3", "",
                      ".", f":save {path}"], capsys)  # fmt: skip
    rc, out, err, _ = _replay(path, capsys, loader=FakeLoader())
    assert rc == 0 and out.count(": reproduced (") == 2, err
    data = json.loads(path.read_text())
    step = data["turns"][1]
    assert step["ops"][0][0] == "force" and step["ops"][1][0] == "force"
    # the file says another candidate was forced at the 2nd step
    vocab = len(ALPHABET)
    assert step["ops"][1][1] == 3  # the fake's candidates there: t, t+1, t+2 (+ ties)
    other = (step["ops"][1][2] - 1) % vocab  # t+1: its 2nd candidate instead of its 3rd
    step["ops"][1] = ["force", 2, other]
    path.write_text(json.dumps(data))
    rc, out, err, replayed = _replay(path, capsys, loader=FakeLoader())
    assert rc == 1 and len(err.splitlines()) == 1
    assert err.startswith("mismatch: turn 2: ")
    assert replayed.turns[1].output_ids[-2] == other


def test_untrained_scratch_turns_cannot_be_reproduced(tmp_path, capsys):
    path = tmp_path / "u.json"
    session = Session(model="scratch", loader=FakeLoader(), history_path=False)
    _record(session, [":set max_new_tokens=3", "hi", f":save {path}"], capsys)
    rc, out, err, _ = _replay(path, capsys, loader=FakeLoader())
    assert rc == 1
    assert err.splitlines() == [
        "mismatch: turn 1: its model is the untrained scratch model, whose random weights "
        "are drawn afresh at each load: its tokens cannot be reproduced"
    ]


def _turn(**changes):
    turn = {"model": "pretrained:fake", "prompt": "a", "settings": {"greedy": True},
            "output_ids": [1, 2]}  # fmt: skip
    turn.update(changes)
    return turn


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "no such file"),
        ("{not json", "not valid JSON (line 1, column 2"),
        (b"\xff\xfe", "not a JSON session (not UTF-8 text)"),
        ("[1, 2]", 'not a session saved by :save (no "turns" list)'),
        ("[" * 100_000 + "]" * 100_000, "not a JSON session (ValueError: nested deeper"),
        ('{"turns": [' + "9" * 5000 + "]}", "not a JSON session (ValueError"),
        ({"turns": [_turn(output_ids="1 2")]}, 'turn 1: "output_ids" must be a list'),
        ({"turns": [_turn(settings={"top_p": 3})]}, "turn 1: settings: top_p=3 is invalid"),
        ({"turns": [_turn(settings={"colour": 1})]}, "turn 1: settings: "),
        ({"turns": [_turn(ops=[["jump"]])]}, 'turn 1: "ops" must be a list of'),
        ({"turns": [_turn(), 7]}, "turn 2: not an object"),
    ],
)
def test_a_bad_file_is_one_line_and_exit_2(tmp_path, capsys, content, message):
    path = tmp_path / "bad.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, str):
        path.write_text(content)
    elif content is not None:
        path.write_text(json.dumps(content))
    rc, out, err, _ = _replay(path, capsys, loader=FakeLoader())
    assert rc == 2
    assert len(err.splitlines()) == 1 and err.startswith(f"error: {path}: "), err
    assert message in err
    assert "Traceback" not in err and out == ""


def test_bad_json_from_the_command_line_exits_2_with_one_line(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"turns": [')
    proc = subprocess.run(
        [sys.executable, "-m", "repl.cli", "chat", "--plain", "--replay", str(path)],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
        env={**os.environ, "GPT2_HOME": str(tmp_path / "home")},
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"error: {path}: not valid JSON (line 1, column 12: Expecting value)"
    ]


class RunawayLM(FakeLM):
    """Never stops by itself (no end token); counts its steps and gives up, loudly, past
    a bound no replay should reach."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.steps = 0

    def _logits(self):
        self.steps += 1
        if self.steps > 1000:
            raise RuntimeError("the replay kept generating")
        return super()._logits()


def test_a_files_huge_max_new_tokens_stops_one_token_past_the_saved_ids(tmp_path, capsys):
    """A hand-edited max_new_tokens (the largest a setting takes) must not keep the replay
    running for an hour: one token past the saved output_ids already tells it does not
    match. Past the setting's range the file is refused, one line."""
    lm = RunawayLM(name="pretrained:fake")
    ids = [ALPHABET.index(c) for c in "ath"]  # the prompt "a", then what the fake writes
    turn = _turn(settings={"greedy": True, "max_new_tokens": 100_000}, output_ids=ids)
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"turns": [turn]}))
    rc, out, err, _ = _replay(path, capsys, loader=FakeLoader(models={"pretrained:fake": lm}))
    assert rc == 1
    assert err.splitlines() == [
        "mismatch: turn 1: output_ids differ: saved 3 ids, replayed 4 (the same up to 3)"
    ]
    assert lm.steps == 3  # prefill + 2 steps: 3 new tokens, one past the saved two
    turn["settings"]["max_new_tokens"] = 10**12
    path.write_text(json.dumps({"turns": [turn]}))
    rc, out, err, _ = _replay(path, capsys, loader=FakeLoader(models={"pretrained:fake": lm}))
    assert rc == 2 and len(err.splitlines()) == 1
    assert "turn 1: settings: max_new_tokens" in err, err


def test_a_file_in_the_home_of_a_user_that_does_not_exist_is_one_line(capsys):
    rc, out, err, _ = _replay("~gpt2-no-such-user/s.json", capsys, loader=FakeLoader())
    assert rc == 2 and out == ""
    assert err.splitlines() == [
        "error: ~gpt2-no-such-user/s.json: cannot read it (no such user's home directory)"
    ]


def test_replaying_a_fifo_is_one_line_not_a_wait_for_a_writer(tmp_path):
    """A FIFO no one writes to: one line at once (opening it to read waited for a writer
    forever). A pipe someone writes to is read (see the next test)."""
    fifo = tmp_path / "session.json"
    os.mkfifo(fifo)
    r = subprocess.run(
        [sys.executable, "-m", "repl.cli", "chat", "--plain", "--replay", str(fifo)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2, r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert "empty, not a saved session" in line and "Traceback" not in r.stderr


def test_a_saved_session_replays_from_a_pipe(tmp_path, capsys):
    """`cat s.json | gpt2 --replay /dev/stdin` and `--replay <(...)`: a pipe with a writer
    is read to its end (the FIFO check had refused every pipe: the second probe's find)."""
    import threading

    from repl.replay import read_session

    path = tmp_path / "f.json"
    session = Session(model="pretrained:fake", loader=FakeLoader(), history_path=False)
    _record(session, [":set max_new_tokens=3 greedy=true", "abc", f":save {path}"], capsys)
    r, w = os.pipe()

    def feed():
        with os.fdopen(w, "wb") as f:
            f.write(path.read_bytes())

    t = threading.Thread(target=feed)
    t.start()
    try:
        assert read_session(f"/dev/fd/{r}") == read_session(path)
    finally:
        t.join(10)
        os.close(r)
