"""The session core on its own: parsing, settings, transcript, history, compare."""

import json
import os
import subprocess
import sys

import pytest

from gpt2core.generate import GenerationSummary
from gpt2core.weights import CheckpointError
from repl.session import (
    Clear,
    Compare,
    Generate,
    LoadModel,
    Quit,
    Reply,
    Session,
    clean_input,
    printable,
)
from tests.repl.fakes import DirLoader, FakeLM, FakeLoader


@pytest.fixture
def session(tmp_path):
    s = Session(model="fake", loader=FakeLoader(), history_path=tmp_path / "history.jsonl")
    s.load("scratch")
    return s


def test_lines_become_actions(session):
    assert session.handle("   ") is None
    assert session.handle("hello") == Generate("hello")
    assert session.handle("::not a command") == Generate(":not a command")
    assert session.handle(":model pretrained:gpt2") == LoadModel("pretrained:gpt2")
    assert session.handle(":compare hi there") == Compare("hi there")
    assert session.handle(":clear") == Clear() and session.handle(":quit") == Quit()
    r = session.handle(":bogus")
    assert isinstance(r, Reply) and r.level == "error" and "unknown command :bogus" in r.text
    r = session.handle(":tokens")
    assert r.level == "error" and r.text == "usage: :tokens TEXT"
    assert ":compare PROMPT" in session.handle(":help").text


def test_train_stop_takes_nothing_after_it(session):
    """`:train stop now` was a run on a corpus file named stop."""
    from repl.session import TrainStart, TrainStop

    assert session.handle(":train stop") == TrainStop()
    assert session.handle(":train   stop  ") == TrainStop()
    r = session.handle(":train stop now")
    assert isinstance(r, Reply) and r.level == "error" and "./stop" in r.text
    start = session.handle(":train ./stop --max-iters 3")
    assert isinstance(start, TrainStart) and start.request.config.corpus == ("./stop",)


def test_set_and_errors(session):
    r = session.handle(":set temperature=0.7 top_k=5 seed=3")
    assert r.level == "info" and session.settings.top_k == 5 and session.settings.seed == 3
    for line, needle in [
        (":set top_p=9", "top_p must be a number in (0, 1]"),
        (":set max_new_tokens=-1", "max_new_tokens must be"),
        (":set temperature", "is not key=value"),
        (":set", "usage: :set key=value"),
        (":set colour=red", "unknown setting 'colour'"),
    ]:
        r = session.handle(line)
        assert r.level == "error" and needle in r.text, line
    assert session.settings.top_k == 5  # a bad :set changes nothing
    assert "top_k=5" in session.handle(":settings").text


def test_turns_record_seed_tensors_and_stats(session):
    events = list(session.run_turn("abc"))
    summary = events[-1]
    assert isinstance(summary, GenerationSummary)
    turn = session.turns[-1]
    assert turn.model == "scratch" and turn.input_ids == [1, 2, 3]
    assert turn.output_ids == summary.output_ids and isinstance(turn.seed, int)
    assert turn.stats["new_tokens"] == 64 and turn.text == summary.text


def test_save_json_and_markdown(session, tmp_path):
    list(session.run_turn("hi"))
    r = session.handle(f":save {tmp_path / 's.json'}")
    assert r.level == "info" and "saved 1 turns" in r.text
    data = json.loads((tmp_path / "s.json").read_text())
    t = data["turns"][0]
    assert set(t) >= {"model", "settings", "seed", "input_ids", "output_ids", "text", "stats"}
    session.handle(f":save {tmp_path / 's.md'}")
    md = (tmp_path / "s.md").read_text()
    assert "## Turn 1: scratch" in md and "shape=(1, " in md
    r = session.handle(f":save {tmp_path}")
    assert r.level == "error" and "is a directory" in r.text
    r = session.handle(":save /proc/no/such/dir/x.json")
    assert r.level == "error" and "cannot write" in r.text


def test_history_persists_across_sessions(tmp_path):
    path = tmp_path / "h.jsonl"
    a = Session(loader=FakeLoader(), history_path=path)
    a.handle("first prompt")
    a.handle(":set top_k=3")
    b = Session(loader=FakeLoader(), history_path=path)
    assert b.history.items == ["first prompt", ":set top_k=3"]


def test_history_skips_lines_json_cannot_read(tmp_path):
    # a line nested too deep (RecursionError) or a number too long (ValueError, not a
    # JSONDecodeError) ended every session's start with a traceback
    path = tmp_path / "h.jsonl"
    bad = ["[" * 100_000 + "]" * 100_000, "1" * 5000, "{not json"]
    path.write_text("\n".join(['"one"', *bad, '"two"']) + "\n")
    s = Session(loader=FakeLoader(), history_path=path)
    assert s.history.items == ["one", "two"]


def test_startup_falls_back_to_scratch(tmp_path):
    s = Session(model="pretrained", loader=FakeLoader(fail={"pretrained:gpt2"}), history_path=False)
    lm, note = s.load_startup()
    assert lm.name == "scratch" and "could not load pretrained" in note and "using scratch" in note


def test_compare_marks_first_difference(tmp_path):
    loader = FakeLoader(
        models={
            "scratch": FakeLM("scratch", script="hello world"),
            "pretrained:gpt2": FakeLM("pretrained", script="hello there"),
        }
    )
    s = Session(loader=loader, history_path=False)
    s.settings = s.settings.updated(max_new_tokens=8, greedy=True)
    r = s.run_compare("x")
    assert r.left.text == "hello wo" and r.right.text == "hello th"
    assert r.first_difference == 6
    assert len(s.turns) == 2


def test_a_compare_whose_second_model_fails_records_no_turn():
    """Its first model's reply was recorded though the person saw only the error: :save
    wrote it and :again ran it again (a hostile probe's find)."""
    s = Session(loader=FakeLoader(fail={"pretrained:gpt2"}), history_path=False)
    s.load("scratch")
    with pytest.raises(CheckpointError):
        s.run_compare("x")
    assert s.turns == []


def test_odd_text_is_made_safe():
    assert clean_input("a\x1b[31mb\x07c\x00") == "a[31mbc"
    assert printable("x\x1by\rz") == "x\\x1by\\x0dz"


def test_core_packages_import_no_ui():
    code = (
        "import sys, gpt2core, gpt2core.config, gpt2core.model, gpt2core.weights, "
        "gpt2core.tokenizer, gpt2core.generate, gpt2core.sampling, gpt2core.train, "
        "gpt2core.specs, repl.session, repl.commands\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('textual', 'prompt_toolkit')]\n"
        "print('UI-MODULES', bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "UI-MODULES []" in out.stdout, out.stderr[-2000:]
    code2 = (
        "import sys, gpt2core.generate, gpt2core.train, gpt2core.specs\n"
        "print('REPL', [m for m in sys.modules if m.split('.')[0] in "
        "('repl', 'textual', 'prompt_toolkit')])"
    )
    out = subprocess.run([sys.executable, "-c", code2], capture_output=True, text=True, timeout=120)
    assert "REPL []" in out.stdout, out.stderr[-2000:]


def test_every_command_row_names_a_session_handler():
    from repl.commands import COMMANDS

    for spec in COMMANDS:
        assert callable(getattr(Session, spec.method, None)), spec.name


def test_a_new_command_is_one_row_and_one_method(monkeypatch):
    from repl import commands
    from repl.commands import CommandSpec

    row = CommandSpec("echo", "TEXT", "say TEXT back")
    monkeypatch.setattr(commands, "COMMANDS", (*commands.COMMANDS, row))
    monkeypatch.setitem(commands.BY_NAME, "echo", row)
    monkeypatch.setattr(Session, "cmd_echo", lambda self, arg: Reply(arg.upper()), raising=False)
    s = Session(model="fake", loader=FakeLoader(), history_path=False)
    assert s.handle(":echo hi") == Reply("HI")
    assert s.handle(":echo").text == "usage: :echo TEXT"
    assert ":echo TEXT" in commands.help_text()


def test_again_reruns_the_last_prompt(session):
    assert session.handle(":again").level == "error"  # nothing yet
    session.handle(":set max_new_tokens=6 temperature=1.5 top_k=0")
    first = session.handle("the quick")
    events = list(session.run_turn(first.prompt, settings=first.settings))
    turn = session.turns[-1]
    same = session.handle(":again same")
    assert same.prompt == "the quick" and same.settings.seed == turn.seed
    list(session.run_turn(same.prompt, settings=same.settings))
    assert session.turns[-1].output_ids == turn.output_ids  # same seed, same tokens
    fresh = session.handle(":again")
    assert fresh.prompt == "the quick" and fresh.settings.seed is not None
    assert len(events) == 8  # the prompt, 6 tokens, the summary
    assert session.handle(":again twice").level == "error"


def test_a_checkpoint_whose_files_changed_is_loaded_again(tmp_path):
    """`:train --out DIR` into a directory the session had loaded: `:model scratch:DIR` must
    serve the new weights, not the ones it loaded before (a hostile probe's find)."""
    d = DirLoader(tmp_path)
    ck, loads = d.dir, d.loads
    s = Session(model="scratch", loader=d, history_path=False)
    first = s.load(f"scratch:{ck}")
    assert s.load(f"scratch:{ck}") is first and len(loads) == 1  # unchanged: reused
    (ck / "model.safetensors").write_bytes(b"new weights")
    second = s.load(f"scratch:{ck}")
    assert second is not first and s.current is second and len(loads) == 2
    assert s.load(f"scratch:{ck}") is second and len(loads) == 2
    os.utime(ck / "model.safetensors", ns=(1, 1))  # same size, another mtime
    assert s.load(f"scratch:{ck}") is not second and len(loads) == 3
    assert s.load("scratch") is s.load("scratch") and len(loads) == 4  # no directory


def test_one_directory_under_any_spelling_is_loaded_once(tmp_path, monkeypatch):
    """`:model scratch:runs/x` then `:model scratch:./runs/x/` held the 124M weights twice
    (another 500 MB) and warmed the second copy up from scratch."""
    d = DirLoader(tmp_path)
    ck, loads = d.dir, d.loads
    (tmp_path / "link").symlink_to(ck)
    monkeypatch.chdir(tmp_path)
    s = Session(model="scratch", loader=d, history_path=False)
    first = s.load(f"scratch:{ck}")
    for spelling in (f"{ck}/", "./ck", "ck/../ck", "link", f" {tmp_path}//ck "):
        assert s.key(f"scratch:{spelling}") == f"scratch:{ck}"
        assert s.load(f"scratch:{spelling}") is first and s.current.name == f"scratch:{ck}"
    assert loads == [f"scratch:{ck}"] and list(s.models) == [f"scratch:{ck}"]
    other = tmp_path / "other"
    other.mkdir()
    assert s.load("scratch:other") is not first and loads[-1] == "scratch:other"
    assert s.load(f"pretrained:{ck}") is not first  # the other kind is another model
    (ck / "model.safetensors").write_bytes(b"new weights")  # changed: loaded again, once
    assert s.load("scratch:./ck") is not first and loads[-1] == f"scratch:{ck}"
    assert s.key("scratch:no/such/dir") == "scratch:no/such/dir"  # the loader says why


def test_tokens_table_keeps_one_row_per_token(gpt2_tokenizer):
    """A newline token broke its row (the closing quote on the next line) and a tab token
    read as spaces; the panel's views showed them as \\n. Both now show \\n and \\t."""
    lm = FakeLM("scratch", tokenizer=gpt2_tokenizer)
    s = Session(loader=FakeLoader(models={"scratch": lm}), history_path=False)
    s.load("scratch")
    ids = gpt2_tokenizer.encode("a\nb\tc")
    r = s.handle(":tokens a\nb\tc")
    lines = r.text.splitlines()
    assert lines[0] == f"{len(ids)} tokens" and len(lines) == 2 + len(ids), lines
    shown = "".join(line.split("'", 1)[1][:-1] for line in lines[2:])
    assert shown == "a\\nb\\tc" and "\t" not in r.text
