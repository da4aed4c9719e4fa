"""Every function gpt2core compiles is traced without AutoGraph (``graph_function``).

AutoGraph transpiles each traced Python function into a generated module before tracing
it; our traced code has no Python control flow on tensors, so that only cost time (about
0.6 s of the 124M decoder's trace). A subprocess traces every compiled function the tool
has (the training step, the eval, the sampler's decoder, the probe step, the pretrained
backend's step) and lists the modules AutoGraph generated: there must be none."""

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import SHAKESPEARE

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import json, sys
from gpt2core.train import TrainConfig, train
from gpt2core.sampling import Settings
from gpt2core.specs import load_lm

corpus, out, hf_dir = sys.argv[1:4]
cfg = TrainConfig(
    corpus=(corpus,), out=out, preset="shakespeare-cpu", n_layer=2, n_embd=32, n_head=2,
    block_size=32, batch_size=4, max_iters=3, eval_interval=2, eval_iters=1,
)
train(cfg, sample=True)  # the step, the eval and the sampler's decoder
lm = load_lm(f"scratch:{out}")
lm.generate("To be", Settings(greedy=True, max_new_tokens=3))  # prefill and step
lm.decoder.step(5, probes=frozenset({"attention", "lens"}))  # the probe step
pre = load_lm(f"pretrained:{hf_dir}")
pre.generate("To be", Settings(greedy=True, max_new_tokens=3))  # transformers' step
assert pre.compiled, pre.description
print(json.dumps(sorted(m for m in sys.modules if m.startswith("__autograph_generated"))))
"""


def test_no_compiled_function_goes_through_autograph(tmp_path, hf_tiny_dir):
    corpus = tmp_path / "c.txt"
    corpus.write_text(SHAKESPEARE.read_text(encoding="utf-8")[:20_000], encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(corpus), str(tmp_path / "run"), str(hf_tiny_dir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    generated = json.loads(proc.stdout.strip().splitlines()[-1])
    assert generated == [], f"AutoGraph converted code: {generated}"


def test_tensorflow_is_imported_with_its_objects_frozen_for_the_collector():
    """gpt2core imports TensorFlow with the collector off and freezes what it left: later
    full collections (which hold the interpreter lock, stalling a streaming decoder) walk
    only newer objects. The collector is back on afterwards, or stays off if it was."""
    code = (
        "import gc, sys\n"
        "off = sys.argv[1] == 'off'\n"
        "if off: gc.disable()\n"
        "import gpt2core._tf\n"
        "print(gc.isenabled(), gc.get_freeze_count(), len(gc.get_objects()))\n"
    )
    for state in ("on", "off"):
        out = subprocess.run(
            [sys.executable, "-c", code, state], cwd=ROOT, capture_output=True, text=True,
            timeout=300,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr[-2000:]
        enabled, frozen, tracked = out.stdout.split()
        assert enabled == ("True" if state == "on" else "False")
        assert int(frozen) > 100_000  # TensorFlow's and Keras' objects
        assert int(tracked) < int(frozen) // 10  # what a full collection still walks
