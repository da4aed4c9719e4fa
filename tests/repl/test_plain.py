"""Line mode over piped stdin: prompts and commands line by line, bad lines reported and
skipped, exit 0 at the end of input."""

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from repl.plain import PlainREPL, run_plain
from repl.session import Session
from tests.repl.fakes import FakeLoader

ROOT = Path(__file__).resolve().parents[2]


class Piped(io.StringIO):
    def isatty(self):
        return False


def run_script(lines, capsys, loader=None):
    session = Session(model="scratch", loader=loader or FakeLoader(), history_path=False)
    rc = run_plain(session=session, stdin=Piped("\n".join(lines) + "\n"))
    out, err = capsys.readouterr()
    return rc, out, err, session


class Typed(Piped):
    """Lines from a person at a terminal."""

    def isatty(self):
        return True


def test_typed_lines_with_stdout_in_a_file_read_as_plain_lines(capsys):
    """`gpt2 chat > transcript.txt` at a terminal: prompt_toolkit drew its prompt into the
    file (escape sequences between the replies) and read from the process' own stdin."""
    session = Session(model="scratch", loader=FakeLoader(), history_path=False)
    typed = Typed(":set max_new_tokens=3 greedy=true\nhello\n:nope\n")
    assert run_plain(session=session, stdin=typed) == 0
    out, err = capsys.readouterr()
    assert session.turns[-1].prompt == "hello" and session.turns[-1].stats["new_tokens"] == 3
    assert "\x1b" not in out and "unknown command" in err, (out, err)


def test_bad_lines_are_reported_and_skipped(capsys, tmp_path):
    long_prompt = "word " * 3000  # far longer than the fake's 256-token context
    rc, out, err, session = run_script(
        [
            "",
            ":nope",
            ":set top_p=3",
            ":set max_new_tokens=abc",
            ":set max_new_tokens=5 greedy=true",
            ":model scratch:/no/such/checkpoint",
            "ctrl \x1b[31mchars\x07 \x00here",
            long_prompt,
            "multi \\",
            "line",
            f":save {tmp_path / 't.json'}",
        ],
        capsys,
    )
    assert rc == 0
    assert "error: unknown command :nope" in err
    assert "error: top_p=3.0 is invalid" in err
    assert "error: max_new_tokens='abc' is invalid" in err
    assert "error: /no/such/checkpoint: no such checkpoint directory" in err
    assert len(err.strip().splitlines()) == 4  # one line per bad line
    assert "\x1b" not in out and "\x07" not in out and "\x00" not in out
    prompts = [t.prompt for t in session.turns]
    assert prompts == ["ctrl [31mchars here", long_prompt.strip(), "multi \nline"]
    long_turn = session.turns[1]
    assert long_turn.stats["dropped_tokens"] > 10_000 and long_turn.stats["new_tokens"] == 5
    assert "prompt tokens dropped to fit the context" in out
    assert "tf.Tensor([[" in out and "dtype=int32)" in out
    assert len(json.loads((tmp_path / "t.json").read_text())["turns"]) == 3


def test_quit_stops_reading(capsys):
    rc, out, err, session = run_script([":set max_new_tokens=3", "a", ":quit", "never run"], capsys)
    assert rc == 0 and [t.prompt for t in session.turns] == ["a"]


def test_completion_of_commands_and_arguments():
    from prompt_toolkit.document import Document

    from repl.plain import _completer

    c = _completer()
    words = [x.text for x in c.get_completions(Document(":se"), None)]
    assert words == [":set", ":settings"]
    args = [x.text for x in c.get_completions(Document(":set top"), None)]
    assert args == ["top_k=", "top_p="]
    models = [x.text for x in c.get_completions(Document(":model pre"), None)]
    assert "pretrained" in models


@pytest.mark.parametrize("plain", [["--plain"], []], ids=["--plain", "piped"])
def test_plain_cli_with_a_real_checkpoint(scratch_tiny_dir, tmp_path, plain):
    """With stdin and stdout pipes, chat is line mode even without --plain (the TUI drew
    escape codes into the pipe and waited for keys forever)."""
    script = ":set max_new_tokens=4 greedy=true\nOnce upon a time\n:bogus\n"
    env = {**os.environ, "GPT2_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "repl.cli",
            "chat",
            *plain,
            "--model",
            f"scratch:{scratch_tiny_dir}",
        ],
        input=script,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "tf.Tensor([[7454 2402  257  640]], shape=(1, 4), dtype=int32)" in proc.stdout
    assert "shape=(1, 8), dtype=int32)" in proc.stdout
    assert "error: unknown command :bogus" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_generation_cancel_flag_stops_plain_generation(capsys):
    session = Session(model="scratch", loader=FakeLoader(), history_path=False)
    session.load("scratch")
    repl = PlainREPL(session)
    session.settings = session.settings.updated(max_new_tokens=50)
    original = session.run_turn

    def run_turn(prompt, cancel=None, lm=None, settings=None):  # Ctrl-C after the 2nd token
        for i, event in enumerate(original(prompt, cancel=cancel, lm=lm, settings=settings)):
            if i == 2:  # the prompt event, then two tokens
                cancel.set()
            yield event

    session.run_turn = run_turn
    repl.run_line("go")
    out = capsys.readouterr().out
    assert "[stopped]" in out and session.turns[-1].stats["new_tokens"] == 2


def _bad_checkpoints(good, tmp_path):
    """Checkpoint directories broken the ways issue 8 found: truncated weights, a config
    that does not match the tensors, a string where a size should be."""
    import shutil

    bad = {}
    d = tmp_path / "truncated"
    shutil.copytree(good, d)
    data = (d / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(data[: len(data) // 2])
    bad["truncated"] = d
    d = tmp_path / "mismatch"
    shutil.copytree(good, d)
    cfg = json.loads((d / "config.json").read_text())
    cfg["n_embd"] = 64
    (d / "config.json").write_text(json.dumps(cfg))
    bad["mismatch"] = d
    d = tmp_path / "strsize"
    shutil.copytree(good, d)
    cfg = json.loads((d / "config.json").read_text())
    cfg["n_embd"] = "32"
    (d / "config.json").write_text(json.dumps(cfg))
    bad["strsize"] = d
    return bad


def test_line_mode_survives_bad_checkpoints_and_bad_bytes(scratch_tiny_dir, tmp_path):
    """One real line-mode process, fed every bad checkpoint through both model kinds and
    lines that are not UTF-8: each bad line is one error line, and the last line runs."""
    bad = _bad_checkpoints(scratch_tiny_dir, tmp_path)
    lines = [b":set max_new_tokens=3 greedy=true"]
    for d in bad.values():
        lines += [f":model pretrained:{d}".encode(), f":model scratch:{d}".encode()]
    lines += [b"hi", b"bad \xff\xfe bytes", b"\xc3", b"\xed\xa0\x80 surrogate", b"ROMEO:"]
    env = {**os.environ, "GPT2_HOME": str(tmp_path / "home"), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "repl.cli",
            "chat",
            "--plain",
            "--model",
            f"scratch:{scratch_tiny_dir}",
        ],
        input=b"\n".join(lines) + b"\n",
        capture_output=True,
        cwd=ROOT,
        env=env,
        timeout=600,
    )
    out = proc.stdout.decode("utf-8", "replace")
    err = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == 0, err[-3000:]
    assert "Traceback" not in err and "Traceback" not in out
    error_lines = [x for x in err.splitlines() if x.startswith("error:")]
    assert len(error_lines) == 6, err  # one per bad :model line, nothing else
    assert all("internal error" not in x for x in error_lines), error_lines
    # five prompts ran, the last one included, each showing its output tensor
    assert out.count("output:    tf.Tensor(") == 5, out
    # the last line ran: "ROMEO:" is GPT-2's [33676, 4720, 25]
    assert "input_ids: tf.Tensor([[33676  4720    25]], shape=(1, 3), dtype=int32)" in out
    history = (tmp_path / "home" / "history.jsonl").read_text(encoding="utf-8")
    assert "bad \ufffd\ufffd bytes" in history


def test_issue_11_step_script_over_piped_stdin(scratch_tiny_dir, capsys, tmp_path, monkeypatch):
    """Issue 11's test, as written: `:set greedy=true`, `:step Once upon a time`, `2`, ``,
    `-`, `3`, `.`, `:save x.json` -> 6 output ids (4 prompt + 2 new); the 5th is the 2nd
    candidate of the first step, the 6th the 3rd candidate of the second step, both forced.
    The candidates are worked out apart, on the model, by a Stepper of their own."""
    from gpt2core.sampling import Settings
    from gpt2core.stepping import Stepper
    from repl.plain import run_plain

    monkeypatch.chdir(tmp_path)
    session = Session(model=f"scratch:{scratch_tiny_dir}", history_path=False)
    script = [":set greedy=true", ":step Once upon a time", "2", "", "-", "3", ".",
              ":save x.json"]  # fmt: skip
    assert run_plain(session=session, stdin=Piped("\n".join(script) + "\n")) == 0
    out, err = capsys.readouterr()
    assert err == ""
    turn = json.loads((tmp_path / "x.json").read_text())["turns"][0]
    ids = turn["output_ids"]
    assert len(ids) == 6 and ids[:4] == [7454, 2402, 257, 640] == turn["input_ids"]

    check = Stepper(session.current, "Once upon a time", Settings(greedy=True))
    first = check.proposal.candidates[1].token_id  # the 2nd candidate of the first step
    check.force(2)
    second = check.proposal.candidates[2].token_id  # the 3rd candidate of the second step
    assert ids[4] == first and ids[5] == second
    assert [t["token_id"] for t in turn["tokens"]] == [first, second]
    assert [t["forced"] for t in turn["tokens"]] == [True, True]


def test_step_mode_over_piped_stdin_forces_undoes_and_saves(scratch_tiny_dir, capsys, tmp_path):
    """The scripted demo of issue 11: force the 2nd candidate, accept, step back, force
    the 3rd, finish, save."""
    from repl.plain import run_plain

    session = Session(model=f"scratch:{scratch_tiny_dir}", history_path=False)
    path = tmp_path / "x.json"
    script = [":set greedy=true", ":step Once upon a time", "2", "", "-", "3", ".",
              ":branches", f":save {path}", "after the step"]  # fmt: skip
    assert run_plain(session=session, stdin=Piped("\n".join(script) + "\n")) == 0
    out, err = capsys.readouterr()
    assert "step mode on" in out and "<- the model's pick" in out
    turn = json.loads(path.read_text())["turns"][0]
    ids = turn["output_ids"]
    assert len(ids) == 6 and ids[:4] == [7454, 2402, 257, 640]
    assert [t["forced"] for t in turn["tokens"]] == [True, True]
    assert [t["rank"] for t in turn["tokens"]] == [2, 3]
    assert len(turn["branches"]) == 1 and turn["branches"][0][0] == ids[4]
    assert "2 tokens, 2 forced, 1 branches" in out
    assert session.turns[-1].prompt == "after the step"  # the session went on


def test_line_mode_trains_then_chats_with_the_result(tmp_path, capsys):
    """:train over piped stdin (progress on stderr), then :model on what it wrote, then a
    prompt: the whole loop of a first training demo, in one session."""
    from tests.conftest import SHAKESPEARE

    corpus = tmp_path / "c.txt"
    corpus.write_text(SHAKESPEARE.read_text(encoding="utf-8")[:20_000], encoding="utf-8")
    out = tmp_path / "run"
    session = Session(model="scratch", history_path=False)  # real models: it loads the run
    script = [
        f":train {corpus} --preset tiny --max-iters 4 --eval-interval 2 --eval-iters 1 --out {out}",
        ":train /no/such/corpus.txt",
        f":train {corpus} --out {out} --lr 0.5 --resume",  # a recipe --resume would ignore
        f":model scratch:{out}",
        ":set max_new_tokens=5 greedy=true",
        "ROMEO:",
    ]
    assert run_plain(session=session, stdin=Piped("\n".join(script) + "\n")) == 0
    captured = capsys.readouterr()
    assert "iter 2: train loss" in captured.err and "done: 4 iters" in captured.out
    assert "error: /no/such/corpus.txt: no such file" in captured.err
    assert "error: --resume continues the saved run" in captured.err
    assert "--lr 0.5 (saved: 0.001)" in captured.err
    assert session.current.name == f"scratch:{out}"
    assert session.turns[-1].prompt == "ROMEO:" and session.turns[-1].stats["new_tokens"] == 5


def test_an_error_that_quotes_a_huge_input_is_one_short_line(capsys):
    """A hostile probe's: ':set temperature=' and a megabyte printed a 1,000,084-character
    error line, and ':model scratch:a/a/...' a 200,039-character raw OSError (the model's
    path is checked in the next test: this session's fake loader reads no directory)."""
    rc, out, err, session = run_script(
        [
            ":set temperature=" + "1" * 1_000_000,
            ":save /tmp/" + "a/" * 100_000 + "x.json",  # a path too long to write
            ":set max_new_tokens=" + "x" * 50_000,
            ":set max_new_tokens=3 greedy=true",
            "hello",
        ],
        capsys,
    )
    lines = err.strip().splitlines()
    assert rc == 0 and len(lines) == 3, [line[:80] for line in lines]
    assert all(line.startswith("error: ") and len(line) < 400 for line in lines)
    assert all("more characters)" in line for line in lines)
    assert [t.prompt for t in session.turns] == ["hello"]


def test_a_multi_line_error_is_one_line_saying_how_much_is_left_out():
    from repl.terminal import clip_error

    keras = "The shape of the target variable and the value must match.\n[[0. 0.]\n [0. 0.]]"
    assert clip_error(keras) == (
        "The shape of the target variable and the value must match. (+2 more lines)"
    )
    assert clip_error("one line") == "one line"


def test_a_path_too_long_for_the_filesystem_is_a_checkpoint_error():
    from gpt2core.specs import load_lm
    from gpt2core.weights import CheckpointError

    with pytest.raises(CheckpointError, match="cannot look it up"):
        load_lm("scratch:" + "a/" * 100_000)
