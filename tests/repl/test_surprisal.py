"""Surprisal colouring: each generated token coloured by the probability the model gave
it, in the app (F4 or :set color=surprisal) and in line mode (ANSI on a terminal only)."""

import io

from repl.app import make_app
from repl.plain import ANSI_BANDS, PlainREPL
from repl.session import SURPRISAL_BANDS, Session, surprisal_band
from repl.widgets import ChatTurn
from repl.widgets.chat import BAND_STYLES
from tests.repl.fakes import FakeLM, FakeLoader
from tests.repl.test_app import SIZE, settle, submit


def test_bands():
    assert [surprisal_band(p) for p in (0.9, 0.51, 0.5, 0.3, 0.1, 0.04, 0.0)] == [
        0, 0, 1, 1, 2, 3, 3]  # fmt: skip
    assert len(SURPRISAL_BANDS) == len(BAND_STYLES) == len(ANSI_BANDS)


class Sure(FakeLM):
    """Every 3rd step a flat distribution (the pick is a gamble), else a confident one."""

    def _logits(self):
        v = super()._logits()
        if self.i % 3 == 0:
            v[:] = 0.0
        return v


async def test_app_colours_each_token_by_its_probability_and_f4_toggles():
    lm = Sure("scratch")
    app = make_app(model="scratch", loader=FakeLoader(models={"scratch": lm}), history_path=False)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await submit(pilot, ":set max_new_tokens=9 greedy=true color=surprisal")
        await submit(pilot, "go")
        await settle(app, pilot)
        turn = app.query_one(ChatTurn)
        assert turn.colour and len(turn.pieces) == 9
        bands = [band for _, band in turn.pieces]
        assert bands.count(3) == 3 and bands.count(0) == 6  # the flat steps are gambles
        spans = {str(s.style) for s in turn.full_text().spans}
        assert BAND_STYLES[3] in spans
        await pilot.press("f4")
        assert not turn.colour and app.session.display["color"] == "none"
        assert BAND_STYLES[3] not in {str(s.style) for s in turn.full_text().spans}
        await pilot.press("f4")
        assert turn.colour


class TTY(io.StringIO):
    def isatty(self):
        return True


def _plain(out, settings):
    """Line mode over the Sure fake, with these settings."""
    session = Session(model="scratch", loader=FakeLoader(models={"scratch": Sure("s")}),
                      history_path=False)  # fmt: skip
    session.load("scratch")
    session.handle(f":set {settings}")
    return PlainREPL(session, out=out, err=io.StringIO())


def _run_plain(out, colour):
    _plain(out, f"color={colour} max_new_tokens=6 greedy=true").run_line("go")
    return out.getvalue()


def test_plain_mode_colours_on_a_terminal_and_never_into_a_pipe():
    coloured = _run_plain(TTY(), "surprisal")
    assert ANSI_BANDS[3] in coloured and "\x1b[0m" in coloured
    piped = _run_plain(io.StringIO(), "surprisal")
    assert "\x1b" not in piped
    plain_tty = _run_plain(TTY(), "none")
    assert "\x1b" not in plain_tty


def test_set_color_rejects_other_values():
    s = Session(model="scratch", loader=FakeLoader(), history_path=False)
    r = s.handle(":set color=rainbow")
    assert r.level == "error" and "color must be one of none, surprisal" in r.text
    assert s.display["color"] == "none"
    assert "color=none" in s.handle(":settings").text


def _run_plain_steps(out, colour):
    """Step mode in line mode: force a gamble (candidate 5), accept twice, finish."""
    repl = _plain(out, f"color={colour} greedy=true")
    lines = iter(["5", "", "", "."])
    repl.read = lambda prompt="": next(lines, None)
    repl.run_line(":step go")
    return out.getvalue(), repl.session.turns[-1]


def test_plain_step_mode_colours_on_a_terminal_and_never_into_a_pipe():
    out, turn = _run_plain_steps(TTY(), "surprisal")
    assert len(turn.tokens) == 3 and turn.tokens[0]["forced"]
    step_lines = [line for line in out.splitlines() if line.startswith("--- step")]
    assert len(step_lines) == 4
    assert "\x1b[" not in step_lines[0]  # nothing generated yet
    assert any(code in step_lines[1] for code in ANSI_BANDS if code)  # the forced gamble
    final = next(line for line in out.splitlines() if line.startswith("[s]"))
    assert "\x1b[0m" in final
    piped, _ = _run_plain_steps(io.StringIO(), "surprisal")
    assert "\x1b" not in piped
    plain_tty, _ = _run_plain_steps(TTY(), "none")
    assert "\x1b" not in plain_tty
