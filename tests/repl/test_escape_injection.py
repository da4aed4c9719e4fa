"""Terminal escape injection: a model (here a fake one whose tokens are every dangerous
sequence), a prompt or a vocabulary must never put a control a terminal acts on onto
stdout or stderr raw, through any front end: `gpt2 generate` (text, --json), `gpt2
tokenize` (table, --json, --decode), line mode, and the Textual widgets."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json

import pytest

from gpt2core.tokenizer import CharTokenizer
from repl.cli import main
from tests.repl.fakes import FakeLM, FakeLoader

# Sequences a terminal acts on: clear screen, OSC 52 (writes the clipboard), a colour, a
# hyperlink and a DCS string, an 8-bit CSI, then every C0 control but tab and newline,
# DEL, every C1 control, and the bidi controls that reorder what a reader sees.
SEQUENCES = [
    "\x1b[2J",
    "\x1b]52;c;ZXZpbA==\x07",
    "\x1b[31m",
    "\x1b]8;;http://evil.example/\x1b\\",
    "\x1bP1$r\x1b\\",
    "\x9b2J",
]
C0 = [chr(c) for c in range(0x20) if chr(c) not in "\t\n"]
C1 = [chr(c) for c in range(0x80, 0xA0)]
BIDI = [chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))]
BIDI += ["\u200e", "\u200f", "\u061c"]
SINGLES = [*C0, "\x7f", *C1, *BIDI]
DANGEROUS = frozenset(SINGLES)
LETTERS = list("abc xyz\n")  # "\n": a typed CR is read as a new line
VOCAB = LETTERS + SINGLES + SEQUENCES  # single characters first: prompts encode to them
STREAM_IDS = [VOCAB.index(p) for p in SEQUENCES + SINGLES]
STREAM_TEXT = "".join(VOCAB[i] for i in STREAM_IDS)
PROMPT = "abc " + "".join(SINGLES) + " xyz"


def raw_controls(text: str) -> list[str]:
    """Every dangerous code point that is in ``text`` raw (as U+XXXX, for the message)."""
    return sorted({f"U+{ord(c):04X}" for c in text if c in DANGEROUS})


def fake_lm(name: str = "fake") -> FakeLM:
    tok = CharTokenizer(VOCAB)
    return FakeLM(name=name, tokenizer=tok, ids=STREAM_IDS, n_positions=4096)


def test_the_fixture_carries_every_dangerous_code_point():
    """The stream itself is hostile (so the assertions below can fail)."""
    assert (
        len(raw_controls(STREAM_TEXT)) == len(DANGEROUS) == 30 + 1 + 32 + 9 + 3
    )  # C0, DEL, C1, bidi, marks
    for seq in ("\x1b[2J", "\x1b]52;", "\x9b", "\u202e", "\x07", "\r", "\x08", "\x00"):
        assert seq in STREAM_TEXT


@pytest.fixture
def fake_generate(monkeypatch, tmp_path):
    import gpt2core.specs

    monkeypatch.setenv("GPT2_HOME", str(tmp_path))
    monkeypatch.setattr(gpt2core.specs, "load_lm", lambda spec: fake_lm())


def test_generate_text_output_is_inert(fake_generate, capsys):
    n = str(len(STREAM_IDS))
    assert main(["generate", "--model", "scratch", "--greedy", "--max-new-tokens", n, PROMPT]) == 0
    out, err = capsys.readouterr()
    assert raw_controls(out) == [] and raw_controls(err) == []
    lines = {line.split(":", 1)[0]: line for line in out.splitlines()}
    assert lines["input_text"].startswith("input_text: abc \\x00\\x01")
    assert "\\x1b[2J" in lines["generated_text"] and "\\x1b]52;c;" in lines["generated_text"]
    assert "\\x9b" in lines["generated_text"] and "\\u202e" in lines["generated_text"]


def test_generate_json_is_inert_and_exact(fake_generate, capsys):
    n = str(len(STREAM_IDS))
    argv = ["generate", "--json", "--model", "scratch", "--greedy", "--max-new-tokens", n]
    assert main([*argv, PROMPT]) == 0
    out, err = capsys.readouterr()
    assert raw_controls(out) == [] and raw_controls(err) == []
    doc = json.loads(out)  # still valid JSON, and decodes to exactly what was generated
    assert doc["text"] == STREAM_TEXT
    assert "\\u009b" in out and "\\u202e" in out and "\\u007f" in out


def test_generate_errors_are_inert(monkeypatch, tmp_path, capsys):
    """A user error naming hostile text (a path) is one inert line."""
    monkeypatch.setenv("GPT2_HOME", str(tmp_path))
    bad = tmp_path / "no\x1b[2Jsuch\u202e"
    assert main(["generate", "--model", f"scratch:{bad}", "x"]) == 2
    out, err = capsys.readouterr()
    assert raw_controls(out + err) == [] and len(err.strip().splitlines()) == 1
    assert "no\\x1b[2Jsuch\\u202e" in err


@pytest.fixture
def char_tokenizer_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("GPT2_HOME", str(tmp_path))
    d = tmp_path / "tok"
    d.mkdir()
    (d / "char_vocab.json").write_text(json.dumps({"chars": VOCAB}), encoding="utf-8")
    return d


def test_tokenize_table_json_and_decode_are_inert(char_tokenizer_dir, capsys):
    tok = ["tokenize", "--tokenizer", str(char_tokenizer_dir)]
    assert main([*tok, PROMPT]) == 0  # the rich table
    out, err = capsys.readouterr()
    assert raw_controls(out + err) == []
    assert "'\\x1b'" in out and "'\\u202e'" in out

    assert main([*tok, "--json", PROMPT]) == 0
    out, err = capsys.readouterr()
    assert raw_controls(out + err) == []
    assert "".join(json.loads(out)["pieces"]) == PROMPT

    assert main([*tok, "--decode", ",".join(map(str, STREAM_IDS))]) == 0
    out, err = capsys.readouterr()
    assert raw_controls(out + err) == []
    assert out.startswith("\\x1b[2J\\x1b]52;c;ZXZpbA==\\x07")


# -- line mode ----------------------------------------------------------------------------


class Piped(io.StringIO):
    def isatty(self):
        return False


def run_line_mode(lm: FakeLM, lines: list[str], capsys) -> tuple[str, str]:
    from repl.plain import run_plain
    from repl.session import Session

    loader = FakeLoader(models={"scratch": lm})
    session = Session(model="scratch", loader=loader, history_path=False)
    n = len(STREAM_IDS)
    script = [f":set max_new_tokens={n} greedy=true", *lines]
    assert run_plain(session=session, stdin=Piped("\n".join(script) + "\n")) == 0
    assert session.turns and session.turns[-1].text == STREAM_TEXT
    return capsys.readouterr()


def test_line_mode_stream_prompt_and_errors_are_inert(capsys):
    out, err = run_line_mode(fake_lm(), [PROMPT, ":model scratch:/no\x1b[2J/dir", PROMPT], capsys)
    assert raw_controls(out) == [] and raw_controls(err) == []
    assert "\\x1b[2J\\x1b]52;c;" in out  # the completion, shown inert


def test_line_mode_model_names_are_inert(capsys):
    out, err = run_line_mode(fake_lm(name="fake\x1b[2J\u202e"), ["abc"], capsys)
    assert raw_controls(out) == [] and raw_controls(err) == []


# -- Textual widgets ----------------------------------------------------------------------


def _widget_text(widget) -> str:
    """What Textual would write for ``widget``: the text of its rendered strips."""
    from textual.geometry import Region

    size = widget.size
    return "\n".join(s.text for s in widget.render_lines(Region(0, 0, size.width, size.height)))


def _render_widgets(make) -> dict[str, str]:
    """Mount the widgets ``make()`` returns in a bare app; each one's rendered text."""
    from textual.app import App

    class Harness(App):
        def compose(self):
            yield from make()

    async def run():
        app = Harness()
        async with app.run_test(size=(200, 60)) as pilot:
            await pilot.pause()
            shown = {}
            for n, widget in enumerate(app.screen.query("*")):
                shown[f"{type(widget).__name__}#{n}"] = _widget_text(widget)
                title = getattr(widget, "border_title", None)
                if title:
                    shown[f"{type(widget).__name__}#{n}.border_title"] = str(title)
            return shown

    return asyncio.run(run())


def _stream():
    from gpt2core.generate import GenerationSummary, TokenEvent
    from gpt2core.sampling import Settings

    lm = fake_lm()
    settings = Settings().parsed({"greedy": "true", "max_new_tokens": str(len(STREAM_IDS))})
    events = list(lm.stream(PROMPT, settings))
    tokens = [e for e in events if isinstance(e, TokenEvent)]
    summary = next(e for e in events if isinstance(e, GenerationSummary))
    assert "".join(e.text for e in tokens) == STREAM_TEXT
    return lm, tokens, summary


def test_textual_widgets_render_inert_text():
    """NoticeLine, ChatTurn (prompt, streamed completion), SidePanel (ids, candidates
    whose pieces are the dangerous sequences) and CompareView, fed as the app feeds them."""
    from repl.session import CompareResult, stats_line
    from repl.widgets import ChatTurn, CompareView, NoticeLine, SidePanel

    lm, tokens, summary = _stream()

    def make():
        notice = NoticeLine(PROMPT + STREAM_TEXT, "error")
        turn = ChatTurn("fake", PROMPT)
        for event in tokens:
            turn.append(event.text)
        turn.finish("done", stats_line(summary))
        panel = SidePanel()
        panel.start(summary.input_ids, lm.tokenizer)
        for event in tokens:
            panel.tokens([event])
        result = CompareResult(PROMPT, summary, summary, None)
        compare = CompareView(result, (lm.tokenizer, lm.tokenizer))
        return [notice, turn, panel, compare]

    rendered = _render_widgets(make)
    kinds = {name.split("#")[0] for name in rendered}
    assert {"NoticeLine", "ChatTurn", "TurnText", "SidePanel", "CompareView"} <= kinds
    for name, text in rendered.items():
        assert raw_controls(text) == [], name
    turn_text = "\n".join(t for n, t in rendered.items() if n.startswith("TurnText"))
    assert "\\x1b[2J" in turn_text and "\\u202e" in turn_text


@pytest.mark.parametrize("where", ["label", "footer", "compare"])
def test_textual_model_names_and_footer_are_inert(where):
    from repl.session import CompareResult
    from repl.widgets import ChatTurn, CompareView

    hostile = "fake\x1b[2J\u202e"
    lm, tokens, summary = _stream()

    def make():
        if where == "compare":
            named = dataclasses.replace(summary, model=hostile)
            return [CompareView(CompareResult("p", named, named, None), (None, None))]
        turn = ChatTurn(hostile if where == "label" else "fake", "hi")
        turn.finish("done", hostile if where == "footer" else "")
        return [turn]

    rendered = _render_widgets(make)
    assert all(raw_controls(text) == [] for text in rendered.values())
