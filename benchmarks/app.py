"""The app against its engine, and the app over a long session, on one machine, one run.

  rate   decode tok/s shown by the real Textual app (driven by Pilot, headless) against
         the same model streamed headless in the same process (ratio printed; issue 9
         asks >= 0.95x).
  long   one long reply in the app (default 1,000 tokens): the rate of its last 100
         tokens against its first 100, timed as the app's worker receives each token, and
         how late a 10 ms timer on the UI's event loop fires during its first and last
         10% (the wait a key press would have).
  soak   300 prompts in one app session: RSS every 50 prompts (issue 8: memory stays flat).
  lines  Tiny Shakespeare as one 40,000-character reply from the tests' fake model: how
         late the UI's loop runs at its start and its end (the chat's cost per frame).
  turns  many replies of Tiny Shakespeare from the fake model in one session: per reply,
         the longest pass of the cyclic collector while it streams (the interpreter is
         held: neither the UI nor the decoder moves) and how late the UI's loop ran;
         ``--no-freeze`` runs the same session without repl.collector's freezing.

    uv run python benchmarks/app.py rate --model scratch:DIR [--new-tokens 500]
    uv run python benchmarks/app.py soak --model scratch:DIR [--prompts 300]

With no --model, a random tiny checkpoint is made in a temporary directory.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def tiny_checkpoint(preset: str) -> str:
    from gpt2core.config import PRESETS
    from gpt2core.model import GPT2
    from gpt2core.tokenizer import load_tokenizer
    from gpt2core.weights import save_checkpoint

    d = Path(tempfile.mkdtemp()) / preset
    save_checkpoint(GPT2(PRESETS[preset]).build_weights(), d, tokenizer=load_tokenizer("gpt2"))
    return f"scratch:{d}"


async def _wait_idle(app, pilot, timeout=600):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        await pilot.pause(0.05)
        if not app.loads.busy and not app.generating and not app.queue and app.session.current:
            return
    raise TimeoutError("the app did not become idle")


async def _type(pilot, text):
    box = pilot.app.query_one("#prompt")
    box.value = text
    box.submit()
    await pilot.pause()


def no_freeze():
    """A collector that neither freezes nor sweeps: the app as it was before
    repl.collector, for --no-freeze."""
    from repl.collector import Collector

    class NoFreeze(Collector):
        def settle(self) -> None:
            pass

        def sweep(self) -> None:
            pass

    return NoFreeze()


def run_rate(model: str, new_tokens: int, rounds: int, freeze: bool = True) -> None:
    from gpt2core.sampling import Settings
    from repl.app import make_app

    app = make_app(model=model, history_path=False)
    if not freeze:
        app.collector = no_freeze()
    settings = Settings(max_new_tokens=new_tokens, greedy=True, stop_at_eos=False, seed=0)
    results = []

    async def drive():
        async with app.run_test(size=(120, 40)) as pilot:
            await _wait_idle(app, pilot)
            app.session.settings = settings
            lm = app.session.current
            for _ in range(rounds):
                headless = lm.generate("Once upon a time", settings)
                renders, t = app.panel.renders, time.perf_counter()
                await _type(pilot, "Once upon a time")
                await _wait_idle(app, pilot)
                fps = (app.panel.renders - renders) / (time.perf_counter() - t)
                turn = app.session.turns[-1]
                results.append((headless.tokens_per_s, turn.stats["tokens_per_s"], fps))

    asyncio.run(drive())
    print(
        f"model {model}, {new_tokens} new tokens, greedy, {rounds} rounds, collector "
        f"{'frozen at turn ends' if freeze else 'left alone (--no-freeze)'}"
    )
    for h, a, fps in results:
        print(
            f"  headless {h:8.1f} tok/s   app {a:8.1f} tok/s   ratio {a / h:.3f}"
            f"   panel frames/s {fps:5.1f}"
        )
    hs = sorted(h for h, _, _ in results)[len(results) // 2]
    aps = sorted(a for _, a, _ in results)[len(results) // 2]
    ratios = sorted(a / h for h, a, _ in results)
    print(f"median: headless {hs:.1f}, app {aps:.1f}, app/headless = {aps / hs:.3f}")
    print(f"median of the per-round ratios: {ratios[len(ratios) // 2]:.3f}")


def run_long(model: str, new_tokens: int) -> None:
    from gpt2core.generate import TokenEvent
    from gpt2core.sampling import Settings
    from repl.app import make_app

    app = make_app(model=model, history_path=False)
    settings = Settings(max_new_tokens=new_tokens, greedy=True, stop_at_eos=False, seed=0)
    stamps: list[float] = []

    async def drive():
        async with app.run_test(size=(120, 40)) as pilot:
            await _wait_idle(app, pilot)
            app.session.settings = settings
            lm = app.session.current
            stream = lm.stream

            def timed(*args, **kw):  # the app's own stream, each token stamped on arrival
                for event in stream(*args, **kw):
                    if isinstance(event, TokenEvent):
                        stamps.append(time.perf_counter())
                    yield event

            lm.stream = timed
            for _ in timed("Once upon a time", settings):  # headless, the same stamps
                pass
            runs.append(list(stamps))
            stamps.clear()

            async def ticker():  # how late a 10 ms timer on the UI's loop fires: the wait
                while True:  # a key press would have had at that moment
                    t = time.perf_counter()
                    await asyncio.sleep(0.01)
                    stalls.append((time.perf_counter(), time.perf_counter() - t - 0.01))

            tick = asyncio.ensure_future(ticker())
            await _type(pilot, "Once upon a time")
            await _wait_idle(app, pilot)
            tick.cancel()
            runs.append(list(stamps))

    runs: list[list[float]] = []
    stalls: list[tuple[float, float]] = []  # (when, how late the UI loop's timer fired)
    asyncio.run(drive())
    print(f"model {model}, one reply of {new_tokens} tokens, greedy")
    for name, s in zip(("headless", "in the app"), runs, strict=True):
        first = 99 / (s[100] - s[1])  # after the first token (prefill)
        last = 99 / (s[-1] - s[-100])
        print(
            f"  {name:10}: tokens 2-101 {first:5.1f} tok/s   last 100 {last:5.1f} tok/s"
            f"   last/first {last / first:.3f}   reply {s[-1] - s[0]:.1f} s"
        )
    s = runs[1]
    for part, (a, b) in (("first", (s[0], s[len(s) // 10])), ("last", (s[-len(s) // 10], s[-1]))):
        late = [d for t, d in stalls if a <= t <= b] or [0.0]
        print(
            f"  UI loop during the {part} 10% of the reply: a 10 ms timer fired up to "
            f"{max(late) * 1000:.0f} ms late (mean {sum(late) / len(late) * 1000:.0f} ms)"
        )


def run_soak(model: str, prompts: int) -> None:
    from gpt2core.sampling import Settings
    from repl.app import make_app

    app = make_app(model=model, history_path=False)
    marks = []

    async def drive():
        async with app.run_test(size=(120, 40)) as pilot:
            await _wait_idle(app, pilot)
            app.session.settings = Settings(max_new_tokens=32, temperature=1.0, top_k=50)
            marks.append((0, rss_mb()))
            for n in range(1, prompts + 1):
                await _type(pilot, f"prompt number {n}: once upon a time")
                await _wait_idle(app, pilot)
                if n % 50 == 0:
                    marks.append((n, rss_mb()))
                    print(f"  after {n:4d} prompts: RSS {marks[-1][1]:7.1f} MB", flush=True)

    asyncio.run(drive())
    first, last = marks[1][1], marks[-1][1]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"{prompts} prompts on {model}: RSS after 50 = {first:.0f} MB, after {prompts} = "
        f"{last:.0f} MB (growth {last - first:+.0f} MB), peak {peak:.0f} MB"
    )


def _shakespeare_app(chars: int, step_s: float):
    """The app with the tests' fake model, which writes ``chars`` characters of Tiny
    Shakespeare one per step, ``step_s`` apart (no TensorFlow); and that text."""
    sys.path.insert(0, str(ROOT / "tests" / "repl"))
    from fakes import ALPHABET, FakeLM, FakeLoader

    from gpt2core.data import BUNDLED
    from repl.app import make_app

    corpus = BUNDLED["shakespeare"].read_text(encoding="utf-8")
    text = "".join(c for c in corpus if c in ALPHABET)[:chars]
    lm = FakeLM("scratch", script=text, n_positions=len(text) + 100, delay=step_s)
    app = make_app(model="scratch", loader=FakeLoader(models={"scratch": lm}), history_path=False)
    app.session.settings = app.session.settings.updated(  # the whole text, every turn
        max_new_tokens=len(text), greedy=True, stop_at_eos=False
    )
    return app, text


async def _lateness(late: list) -> None:
    """How late a 10 ms timer on the UI's event loop fires, appended to ``late`` as (when,
    seconds late): the wait a key press would have. Runs until cancelled."""
    while True:
        t = time.perf_counter()
        await asyncio.sleep(0.01)
        late.append((time.perf_counter(), time.perf_counter() - t - 0.01))


def run_lines(chars: int, step_s: float) -> None:
    """Tiny Shakespeare as a reply (the tests' fake model writes it one character per step,
    ``step_s`` apart): the chat's cost as a reply of many lines grows, which a random
    model (no newlines) does not show."""
    app, text = _shakespeare_app(chars, step_s)
    late: list[tuple[float, float]] = []

    async def drive():
        async with app.run_test(size=(120, 40)) as pilot:
            await _wait_idle(app, pilot)
            tick = asyncio.ensure_future(_lateness(late))
            t0 = time.perf_counter()
            await _type(pilot, "go")
            await _wait_idle(app, pilot)
            tick.cancel()
            return t0, time.perf_counter()

    t0, t1 = asyncio.run(drive())
    d = t1 - t0
    print(f"{len(text)} characters ({text.count(chr(10))} lines), one per step: reply {d:.1f} s")
    for part, (a, b) in (("first", (t0, t0 + d / 10)), ("last", (t1 - d / 10, t1))):
        x = [v for t, v in late if a <= t <= b] or [0.0]
        print(
            f"  UI loop during the {part} 10%: a 10 ms timer fired up to "
            f"{max(x) * 1000:.0f} ms late (mean {sum(x) / len(x) * 1000:.0f} ms)"
        )


def run_turns(turns: int, chars: int, step_s: float, freeze: bool) -> None:
    import gc

    app, text = _shakespeare_app(chars, step_s)
    if not freeze:
        app.collector = no_freeze()
    passes: list[tuple[float, int, float]] = []  # (end, generation, seconds)
    started: list[float] = []
    late: list[tuple[float, float]] = []

    def timed(phase, info):
        if phase == "start":
            started.append(time.perf_counter())
        elif started:
            t = time.perf_counter()
            passes.append((t, info["generation"], t - started.pop()))

    async def drive():
        async with app.run_test(size=(120, 40)) as pilot:
            await _wait_idle(app, pilot)
            tick = asyncio.ensure_future(_lateness(late))
            spans = []
            for _ in range(turns):
                t0 = time.perf_counter()
                await _type(pilot, "go")
                await _wait_idle(app, pilot)
                spans.append((t0, time.perf_counter()))
                await pilot.pause(0.2)  # the turn's end: its settle or sweep runs here
            tick.cancel()
            return spans

    gc.callbacks.append(timed)
    try:
        spans = asyncio.run(drive())
    finally:
        gc.callbacks.remove(timed)
    print(
        f"{turns} replies of {len(text)} characters, collector "
        f"{'frozen at turn ends (repl.collector)' if freeze else 'left alone (--no-freeze)'}"
    )
    print("| reply | s | longest full pass ms | full passes | UI loop late max / mean ms |")
    print("|---:|---:|---:|---:|---:|")
    for i, (a, b) in enumerate(spans):
        full = [d for t, g, d in passes if a <= t <= b and g == 2]
        x = [v for t, v in late if a <= t <= b] or [0.0]
        print(
            f"| {i + 1} | {b - a:.1f} | {max(full, default=0) * 1000:.0f} | {len(full)} | "
            f"{max(x) * 1000:.0f} / {sum(x) / len(x) * 1000:.1f} |"
        )


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("what", choices=["rate", "long", "soak", "lines", "turns"])
    p.add_argument("--model", default=None)
    p.add_argument("--preset", default="tiny", help="for the generated checkpoint")
    p.add_argument("--new-tokens", type=int, default=500)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--prompts", type=int, default=300)
    p.add_argument("--chars", type=int, default=40_000, help="lines: reply length")
    p.add_argument("--step-s", type=float, default=0.0005, help="lines: seconds per step")
    p.add_argument("--turns", type=int, default=12, help="turns: replies")
    p.add_argument(
        "--no-freeze", action="store_true", help="turns, rate: without repl.collector's freezing"
    )
    a = p.parse_args()
    os.environ.setdefault("GPT2_HOME", tempfile.mkdtemp())
    if a.what == "lines":
        return run_lines(a.chars, a.step_s)
    if a.what == "turns":
        return run_turns(a.turns, a.chars, a.step_s, not a.no_freeze)
    model = a.model or tiny_checkpoint(a.preset)
    if a.what == "rate":
        run_rate(model, a.new_tokens, a.rounds, not a.no_freeze)
    elif a.what == "long":
        run_long(model, a.new_tokens)
    else:
        run_soak(model, a.prompts)


if __name__ == "__main__":
    main()
