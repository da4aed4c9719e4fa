"""Decoding speed on the same random 124M GPT-2 weights, greedy, 4-token prompt, 96 new
tokens, one machine, one run:

  (a) gpt2core's decoder (ScratchLM: XLA prefill + step, pre-allocated KV cache)
  (b) transformers' TFGPT2LMHeadModel.generate, eager
  (c) the same generate under tf.function(jit_compile=True)
  (d) the pretrained backend's stream (TFGPT2LMHeadModel + past_key_values)

For each: end-to-end tokens/s (96 / wall time of the whole generation), time to first
token, prefill time of a 1,000-token prompt, peak RSS (each variant runs in its own
process). Greedy ids of (a), (c) and (d) are checked against (b). The ratio (a)/(b) is
printed last.

    uv run python benchmarks/generate.py [--new-tokens 96] [--skip c]
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


def run_variant(name: str, ckpt: str, n: int) -> dict:
    from gpt2core._tf import tf
    from gpt2core.sampling import Settings

    settings = Settings(greedy=True, max_new_tokens=n, stop_at_eos=False)
    out: dict = {"variant": name}
    if name in ("a", "d"):
        from gpt2core.specs import load_lm

        lm = load_lm(("scratch:" if name == "a" else "pretrained:") + ckpt)

        def gen(ids, k):
            lm.encode = lambda _text: list(ids)
            return lm.generate("", settings.updated(max_new_tokens=k))

        gen(PROMPT, n)  # warm-up: compiles the shapes (cache buckets) this run uses
        gen(_long_prompt(), 1)
        t = time.perf_counter()
        s = gen(PROMPT, n)
        wall = time.perf_counter() - t
        out.update(
            ids=s.output_ids, wall_s=wall, ttft_s=s.ttft_s, decode_tokens_per_s=s.tokens_per_s
        )
        t = time.perf_counter()
        gen(_long_prompt(), 1)
        out["prefill_1000_s"] = time.perf_counter() - t
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
        gen(PROMPT, n)  # warm-up (and, for XLA, compilation of these shapes)
        gen(PROMPT, first)
        gen(_long_prompt(), first)
        t = time.perf_counter()
        ids = gen(PROMPT, n).numpy()[0].tolist()
        wall = time.perf_counter() - t
        t = time.perf_counter()
        gen(PROMPT, first)
        ttft = time.perf_counter() - t
        t = time.perf_counter()
        gen(_long_prompt(), first)
        out.update(ids=ids, wall_s=wall, ttft_s=ttft, prefill_1000_s=time.perf_counter() - t)
    out["tokens_per_s"] = n / out["wall_s"]
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


LABELS = {
    "a": "gpt2core decoder (XLA, KV cache)",
    "b": "HF TFGPT2LMHeadModel.generate eager",
    "c": "HF generate, XLA (ttft/prefill: 2 tokens)",
    "d": "pretrained backend stream",
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--new-tokens", type=int, default=96)
    ap.add_argument("--skip", default="", help="variants to skip, e.g. 'c'")
    ap.add_argument("--variant", help=argparse.SUPPRESS)
    ap.add_argument("--ckpt", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.variant:
        print("RESULT " + json.dumps(run_variant(args.variant, args.ckpt, args.new_tokens)))
        return

    tmp = Path(tempfile.mkdtemp(prefix="bench-gpt2-"))
    try:
        print("building a random 124M GPT-2 checkpoint...", flush=True)
        make_checkpoint(tmp)
        results = {}
        for v in "abcd":
            if v in args.skip:
                continue
            print(f"running ({v}) {LABELS[v]}...", flush=True)
            proc = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--variant",
                    v,
                    "--ckpt",
                    str(tmp),
                    "--new-tokens",
                    str(args.new_tokens),
                ],
                capture_output=True,
                text=True,
                cwd=ROOT,
                env={**os.environ, "HF_HUB_OFFLINE": "1"},
            )
            line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
            if line is None:
                print(f"  failed:\n{proc.stderr[-3000:]}")
                continue
            results[v] = json.loads(line[7:])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(
        f"\nmachine: {platform.machine()}, {os.cpu_count()} cores; 124M GPT-2 (random "
        f"weights), greedy, 4-token prompt, {args.new_tokens} new tokens\n"
    )
    print(
        f"{'variant':46} {'tok/s':>7} {'ttft s':>7} {'prefill 1000 s':>15} {'peak RSS MB':>12} "
        f"{'ids = (b)':>9}"
    )
    ref = results.get("b", {}).get("ids")
    for v, r in results.items():
        same = "-" if ref is None or v == "b" else ("yes" if r["ids"] == ref else "NO")
        print(
            f"({v}) {LABELS[v]:42} {r['tokens_per_s']:7.1f} {r['ttft_s']:7.3f} "
            f"{r['prefill_1000_s']:15.3f} {r['peak_rss_mb']:12.0f} {same:>9}"
        )
    if "a" in results:
        print(
            f"\n(a) decode rate after the first token: {results['a']['decode_tokens_per_s']:.1f} "
            f"tok/s"
        )
    if "a" in results and "b" in results:
        ratio = results["a"]["tokens_per_s"] / results["b"]["tokens_per_s"]
        print(f"ratio (a)/(b) tokens/s: {ratio:.2f}x")


if __name__ == "__main__":
    main()
