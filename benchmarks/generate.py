"""Decoding speed on the same random 124M GPT-2 weights, greedy, 4-token prompt, at 96 and
at 512 new tokens, one machine, one run:

  (a) gpt2core's decoder (ScratchLM: one XLA function, KV cache in variables)
  (b) transformers' TFGPT2LMHeadModel.generate, eager (only with --eager: ~5 tok/s)
  (c) the same generate under tf.function(jit_compile=True): the peer to beat
  (d) the pretrained backend's stream (TFGPT2LMHeadModel, compiled step, padded past)

Each variant runs in its own process, --rounds times (default 2), and the table shows
medians. For each: end-to-end tokens/s (new tokens / wall time of the whole generation,
prefill included), the decode rate after the first token (streams only), time to first
token, for (a) the time to first token of a 512-token prompt once every shape the app
compiles in the background after "ready" is compiled (issue 9 item 6; median of 5), prefill
time of a 1,000-token prompt, peak RSS of the process. Greedy ids are checked against (c).
Ratios are against (c), measured in the same run.

    uv run python benchmarks/generate.py [--new-tokens 96,512] [--skip d] [--eager]

With ``--probes`` it measures instead what the side panel's views cost the scratch
decoder (issue 10): the decode rate at 124M with no probes (every view hidden) and with
each view's probes asked for per step (Attention: attention + attention_grid, Lens: lens,
Next token: pipeline, and all at once), the kinds taking turns inside one process,
``--rounds`` turns, medians and ratios against the no-probe rate. ``--baseline DIR`` also
times the no-probe decode of another source tree (e.g. main's, from ``git archive main |
tar -x -C DIR``) in its own process each round, for "views hidden vs before the views":

    uv run python benchmarks/generate.py --probes [--new-tokens 96] [--rounds 3]
        [--baseline DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROMPT = [7454, 2402, 257, 640]  # "Once upon a time"
LONG = 1000


def make_checkpoint(directory: Path) -> None:
    """Random GPT-2 small weights, saved by transformers (tf_model.h5) and by gpt2core."""
    from transformers import GPT2Config, TFGPT2LMHeadModel

    from gpt2core._tf import tf  # first: it silences TensorFlow's native start-up logs
    from gpt2core.tokenizer import BUNDLED_GPT2

    tf.random.set_seed(0)
    hf = TFGPT2LMHeadModel(GPT2Config())
    hf(tf.constant([PROMPT]))
    hf.save_pretrained(directory)
    for f in BUNDLED_GPT2.iterdir():
        shutil.copy(f, directory)


def _long_prompt() -> list[int]:
    import numpy as np

    return np.random.default_rng(0).integers(0, 50257, LONG).tolist()


def run_variant(name: str, ckpt: str, counts: list[int]) -> dict:
    from gpt2core._tf import tf
    from gpt2core.sampling import Settings

    out: dict = {"variant": name, "runs": {}}
    if name in ("a", "d"):
        from gpt2core.specs import load_lm

        t = time.perf_counter()
        lm = load_lm(("scratch:" if name == "a" else "pretrained:") + ckpt)
        lm.warmup()
        out["ready_s"] = time.perf_counter() - t
        out["description"] = lm.description

        def gen(ids, k):
            lm.encode = lambda _text: list(ids)
            return lm.generate("", Settings(greedy=True, max_new_tokens=k, stop_at_eos=False))

        for n in counts:
            gen(PROMPT, n)  # warm-up: compiles the shapes (cache buckets) this run uses
            t = time.perf_counter()
            s = gen(PROMPT, n)
            wall = time.perf_counter() - t
            out["runs"][n] = dict(
                ids=s.output_ids,
                tokens_per_s=n / wall,
                decode_tokens_per_s=s.tokens_per_s,
                ttft_s=s.ttft_s,
            )
        gen(_long_prompt(), 1)
        t = time.perf_counter()
        gen(_long_prompt(), 1)
        out["prefill_1000_s"] = time.perf_counter() - t
        if name == "a":  # issue 9 item 6: after what the app compiles once "ready" is shown
            for shape in lm.background_shapes():
                lm.compile_shape(shape)
            firsts = [gen(_long_prompt()[:512], 1).ttft_s for _ in range(5)]
            out["ttft_512_s"] = sorted(firsts)[2]  # the median of 5
    else:
        import warnings

        warnings.simplefilter("ignore")
        from transformers import TFGPT2LMHeadModel
        from transformers import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf = TFGPT2LMHeadModel.from_pretrained(ckpt)
        generate = hf.generate
        if name == "c":
            generate = tf.function(hf.generate, jit_compile=True)

        def gen(ids, k):
            x = tf.constant([ids], tf.int32)
            return generate(
                x,
                attention_mask=tf.ones_like(x),
                max_new_tokens=k,
                do_sample=False,
                pad_token_id=50256,
                eos_token_id=None,
            )

        # transformers' XLA generate fails for max_new_tokens=1 ("Fill dimensions must be
        # >= 0"), so (c) times its first token and its prefill with 2 new tokens
        first = 2 if name == "c" else 1
        for n in counts:
            gen(PROMPT, n)  # warm-up (and, for XLA, compilation of these shapes)
            t = time.perf_counter()
            ids = gen(PROMPT, n).numpy()[0].tolist()
            wall = time.perf_counter() - t
            out["runs"][n] = dict(ids=ids, tokens_per_s=n / wall)
        gen(PROMPT, first)
        t = time.perf_counter()
        gen(PROMPT, first)
        ttft = time.perf_counter() - t
        for r in out["runs"].values():
            r["ttft_s"] = ttft
        gen(_long_prompt(), first)
        t = time.perf_counter()
        gen(_long_prompt(), first)
        out["prefill_1000_s"] = time.perf_counter() - t
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


PROBE_KINDS = {  # what each view asks the model for per step (repl/widgets/views)
    "none": frozenset(),  # all views hidden, or one that needs nothing (Tensors, Tokens)
    "attention": frozenset({"attention", "attention_grid"}),
    "lens": frozenset({"lens"}),
    "pipeline": frozenset({"pipeline"}),
    "all": frozenset({"attention", "attention_grid", "lens", "pipeline"}),
}


def run_probes(ckpt: str, n: int, rounds: int, kinds: list[str]) -> dict:
    """Decode rates (after the first token) of the scratch model for each probe kind, the
    kinds taking turns (rotated each round) so that load drift hits them alike."""
    import gpt2core
    from gpt2core.sampling import Settings
    from gpt2core.specs import load_lm

    lm = load_lm("scratch:" + ckpt)
    lm.warmup()
    lm.encode = lambda _text: list(PROMPT)
    settings = Settings(greedy=True, max_new_tokens=n, stop_at_eos=False)

    def gen(kind):
        return lm.generate("", settings, probes=PROBE_KINDS[kind])

    ids = {k: gen(k).output_ids for k in kinds}  # warm-up: compiles every shape used
    rates: dict[str, list[float]] = {k: [] for k in kinds}
    for r in range(rounds):
        for k in kinds[r % len(kinds) :] + kinds[: r % len(kinds)]:
            s = gen(k)
            rates[k].append(s.tokens_per_s)
            assert s.output_ids == ids[k]
    return {
        "rates": rates,
        "same_ids": all(v == ids[kinds[0]] for v in ids.values()),
        "source": str(Path(gpt2core.__file__).parent.parent),
    }


def probes_main(args) -> None:
    n = int(args.new_tokens.split(",")[0])
    tmp = Path(tempfile.mkdtemp(prefix="bench-gpt2-"))
    ours: dict[str, list[float]] = {k: [] for k in PROBE_KINDS}
    base: list[float] = []
    loads, same, sources = [], [], set()

    def variant(kinds: str, tree: Path | None) -> dict | None:
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        if tree is not None:  # import that tree's gpt2core instead of this one
            env["PYTHONPATH"] = str(tree) + os.pathsep + env.get("PYTHONPATH", "")
        loads.append(os.getloadavg()[0])
        proc = subprocess.run(
            [sys.executable, __file__, "--probe-variant", kinds, "--ckpt", str(tmp)]
            + ["--new-tokens", str(n), "--rounds", "2"],  # each kind twice a process
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=env,
        )
        loads.append(os.getloadavg()[0])
        line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
        if line is None:
            print(f"  failed:\n{proc.stderr[-3000:]}")
            return None
        out = json.loads(line[7:])
        sources.add(out["source"])
        return out

    try:
        print("building a random 124M GPT-2 checkpoint...", flush=True)
        make_checkpoint(tmp)
        for r in range(args.rounds):
            print(f"round {r + 1}: this tree, every probe kind...", flush=True)
            out = variant(",".join(PROBE_KINDS), None)
            if out:
                same.append(out["same_ids"])
                for k, v in out["rates"].items():
                    ours[k] += v
            if args.baseline:
                print(f"round {r + 1}: {args.baseline}, no probes...", flush=True)
                out = variant("none", Path(args.baseline).resolve())
                if out:
                    base += out["rates"]["none"]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(
        f"\nmachine: {platform.machine()}, {os.cpu_count()} cores; 124M GPT-2 (random weights), "
        f"greedy, 4-token prompt, {n} new tokens; decode rate after the first token; medians "
        f"of {args.rounds} rounds; 1-min load average during the run "
        f"{min(loads, default=0):.1f}-{max(loads, default=0):.1f}; sources: {sorted(sources)}\n"
    )
    none = _median(ours["none"])
    print(f"{'probes asked per step':44} {'decode tok/s':>12} {'ratio':>6}  runs")
    for k, v in ours.items():
        if v:
            med = _median(v)
            runs = " ".join(f"{x:.1f}" for x in v)
            print(f"{k + ': ' + ', '.join(sorted(PROBE_KINDS[k])):44} {med:12.1f} "
                  f"{med / none:6.2f}  {runs}")  # fmt: skip
    if base:
        med = _median(base)
        runs = " ".join(f"{x:.1f}" for x in base)
        print(f"{'baseline tree, no probes':44} {med:12.1f} {med / none:6.2f}  {runs}")
        print(f"\nviews hidden (this tree) / baseline: {none / med:.3f}")
    print(f"same greedy ids with and without probes: {'yes' if all(same) else 'NO'}")


LABELS = {
    "a": "gpt2core ScratchLM (XLA, in-place KV cache)",
    "b": "HF TFGPT2LMHeadModel.generate, eager",
    "c": "HF generate under XLA (ttft/prefill: 2 tok)",
    "d": "pretrained backend stream (compiled)",
}


def _median(xs):
    xs = sorted(x for x in xs if x is not None)
    if not xs:
        return None
    m = len(xs) // 2
    return xs[m] if len(xs) % 2 else (xs[m - 1] + xs[m]) / 2


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--new-tokens", default="96,512")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--skip", default="", help="variants to skip, e.g. 'd'")
    ap.add_argument("--eager", action="store_true", help="also run (b), eager HF generate")
    ap.add_argument("--probes", action="store_true", help="the cost of the views' probes")
    ap.add_argument("--baseline", help="with --probes: a source tree to time, no probes")
    ap.add_argument("--variant", help=argparse.SUPPRESS)
    ap.add_argument("--probe-variant", help=argparse.SUPPRESS)
    ap.add_argument("--ckpt", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.probe_variant:
        n = int(args.new_tokens.split(",")[0])
        kinds = args.probe_variant.split(",")
        print("RESULT " + json.dumps(run_probes(args.ckpt, n, args.rounds, kinds)))
        return
    if args.probes:
        probes_main(args)
        return
    counts = [int(x) for x in args.new_tokens.split(",")]
    if args.variant:
        print("RESULT " + json.dumps(run_variant(args.variant, args.ckpt, counts)))
        return

    variants = [v for v in "abcd" if v not in args.skip and (v != "b" or args.eager)]
    tmp = Path(tempfile.mkdtemp(prefix="bench-gpt2-"))
    results: dict[str, list[dict]] = {v: [] for v in variants}
    loads = []
    try:
        print("building a random 124M GPT-2 checkpoint...", flush=True)
        make_checkpoint(tmp)
        for r in range(args.rounds):
            for v in variants:
                print(f"round {r + 1}: ({v}) {LABELS[v]}...", flush=True)
                loads.append(os.getloadavg()[0])
                proc = subprocess.run(
                    [sys.executable, __file__, "--variant", v, "--ckpt", str(tmp)]
                    + ["--new-tokens", args.new_tokens],
                    capture_output=True,
                    text=True,
                    cwd=ROOT,
                    env={**os.environ, "HF_HUB_OFFLINE": "1"},
                )
                line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
                if line is None:
                    print(f"  failed:\n{proc.stderr[-3000:]}")
                    continue
                results[v].append(json.loads(line[7:]))
                loads.append(os.getloadavg()[0])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(
        f"\nmachine: {platform.machine()}, {os.cpu_count()} cores; 124M GPT-2 (random weights), "
        f"greedy, 4-token prompt; medians of {args.rounds} processes per variant; 1-min load "
        f"average during the run {min(loads, default=0):.1f}-{max(loads, default=0):.1f}\n"
    )
    ref = {
        n: (results.get("c") or [{}])[0].get("runs", {}).get(str(n), {}).get("ids") for n in counts
    }
    head = f"{'variant':46}" + "".join(f" {'tok/s @' + str(n):>11} {'decode':>7}" for n in counts)
    print(head + f" {'ttft s':>7} {'ttft@512':>8} {'pf1000 s':>8} {'RSS MB':>7} {'ids=(c)':>7}")
    med = {}
    for v, rs in results.items():
        if not rs:
            continue
        row = f"({v}) {LABELS[v]:42}"
        same = []
        for n in counts:
            runs = [r["runs"][str(n)] for r in rs]
            tps = _median([x["tokens_per_s"] for x in runs])
            dec = _median([x.get("decode_tokens_per_s") for x in runs])
            med[(v, n)] = tps
            row += f" {tps:11.1f} {dec:7.1f}" if dec else f" {tps:11.1f} {'-':>7}"
            if v != "c" and ref[n] is not None:
                same.append(all(x["ids"] == ref[n] for x in runs))
        ttft = _median([r["runs"][str(counts[0])]["ttft_s"] for r in rs])
        pf = _median([r["prefill_1000_s"] for r in rs])
        rss = _median([r["peak_rss_mb"] for r in rs])
        ok = "-" if v == "c" or not same else ("yes" if all(same) else "NO")
        t512 = _median([r.get("ttft_512_s") for r in rs])
        t512 = f"{t512:8.3f}" if t512 else f"{'-':>8}"
        print(row + f" {ttft:7.3f} {t512} {pf:8.3f} {rss:7.0f} {ok:>7}")
    print()
    for v in variants:
        for n in counts:
            if v != "c" and (v, n) in med and ("c", n) in med:
                print(f"({v})/(c) at {n} new tokens: {med[(v, n)] / med[('c', n)]:.2f}x")
    for v in ("a", "d"):
        if (v, counts[0]) in med and (v, counts[-1]) in med and len(counts) > 1:
            ratio = med[(v, counts[-1])] / med[(v, counts[0])]
            print(f"({v}) rate at {counts[-1]} / rate at {counts[0]}: {ratio:.2f}")
        if results.get(v):
            print(
                f"({v}) ready (load + warmup) s: {_median([r['ready_s'] for r in results[v]]):.1f}"
            )


if __name__ == "__main__":
    main()
