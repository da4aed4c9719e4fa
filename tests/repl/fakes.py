"""A deterministic fake model for UI and session tests (no TensorFlow)."""

from __future__ import annotations

import threading
import time

import numpy as np

from gpt2core.generate import GRID_MAX, LanguageModel
from gpt2core.specs import SpecError, parse_spec
from gpt2core.tokenizer import CharTokenizer
from gpt2core.weights import CheckpointError

ALPHABET = list(" abcdefghijklmnopqrstuvwxyz.,!?:=_-'/\n0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ[]")


class FakeLM(LanguageModel):
    """Writes `script` one character per step (greedy); candidates are deterministic.
    With `ids` (and a `tokenizer`), it follows that list of token ids instead, staying
    on the last one.

    `delay` slows each step; `gate`, when given, must be set for steps past `gate_after`
    (lets a test hold a generation mid-way)."""

    def __init__(
        self,
        name="fake",
        script="the quick brown fox jumps over the lazy dog. ",
        delay=0.0,
        n_positions=256,
        gate: threading.Event | None = None,
        gate_after=0,
        tokenizer=None,
        ids: list[int] | None = None,
    ):
        self.name, self.script, self.delay, self.ids = name, script, delay, ids
        self.tokenizer = tokenizer or CharTokenizer(ALPHABET)
        self.n_positions = n_positions
        self.description = f"{name}: a fake model for tests"
        self.gate, self.gate_after = gate, gate_after
        self.i = 0
        self.n_context = 0  # prompt length at the last prefill

    PROBES = frozenset({"attention", "attention_grid", "lens"})  # stand-ins, when asked

    @staticmethod
    def _fake_row(n_layer: int, n_head: int, q: int):
        """Query position q's weights over keys 0..q: each head has a favourite key."""
        att = np.zeros((n_layer, n_head, q + 1), np.float32)  # (L, nh, q + 1)
        for layer in range(n_layer):
            for head in range(n_head):
                att[layer, head, (layer + head) % (q + 1)] = 0.75
                att[layer, head] += 0.25 / (q + 1)
        return att

    def _fake_probes(self, target: int, step: int, probes: frozenset[str]) -> dict:
        n_layer, n_head, t = 2, 2, self.n_context + step  # the context the step sees
        lens = [
            [((target + 3 - layer) % self.tokenizer.vocab_size, 0.5), (target, 0.25)]
            for layer in range(n_layer - 1)
        ] + [[(target, 0.9), ((target + 1) % self.tokenizer.vocab_size, 0.05)]]
        probed = {"attention": self._fake_row(n_layer, n_head, t - 1), "lens": lens}
        if "attention_grid" in probes and t <= GRID_MAX:
            grid = np.zeros((n_layer, n_head, t, t), np.float32)  # (L, nh, T, T)
            for q in range(t):
                grid[:, :, q, : q + 1] = self._fake_row(n_layer, n_head, q)
            probed["attention_grid"] = grid
        return probed

    def _logits(self):
        if self.gate is not None and self.i >= self.gate_after:
            self.gate.wait(10)
        if self.delay:
            time.sleep(self.delay)
        v = np.full(self.tokenizer.vocab_size, -4.0, np.float32)
        if self.ids is not None:
            target = self.ids[min(self.i, len(self.ids) - 1)]
        else:
            target = self.tokenizer.encode(self.script[self.i % len(self.script)])[0]
        v[target] = 4.0
        v[(target + 1) % len(v)] = 2.0
        v[(target + 2) % len(v)] = 1.0
        self.target = target
        self.i += 1
        return v

    def _run(self, probes: frozenset[str]):
        v = self._logits()  # (V,); subclasses reshape it
        return v, (self._fake_probes(self.target, self.i - 1, probes) if probes else None)

    def _prefill(self, ids, capacity, probes=frozenset()):
        self.i = 0
        self.n_context = len(ids)
        return self._run(probes)

    def _step(self, token_id, probes=frozenset()):
        return self._run(probes)


class FakeLoader:
    """spec -> FakeLM; `fail` lists specs that raise like an offline hub id would."""

    def __init__(self, fail=(), delay=0.0, models=None, gate: threading.Event | None = None):
        self.fail, self.delay, self.models = set(fail), delay, models or {}
        self.gate = gate  # when given, loading waits until the test sets it
        self.calls = []

    def __call__(self, spec: str) -> LanguageModel:
        self.calls.append(spec)
        parse_spec(spec)
        if self.gate is not None:
            self.gate.wait(30)
        if self.delay:
            time.sleep(self.delay)
        if spec in self.fail:
            raise CheckpointError(f"{spec!r} is not in the Hugging Face cache (offline)")
        if spec.startswith("scratch:/"):
            raise CheckpointError(f"{spec[8:]}: no such checkpoint directory")
        if spec in self.models:
            return self.models[spec]
        return FakeLM(name=spec)


class DirLoader:
    """A checkpoint directory on disk (one small weights file) and a loader that counts
    its loads, each a fresh FakeLM: for the reload-when-its-files-change tests."""

    def __init__(self, root):
        self.dir = root / "ck"
        self.dir.mkdir()
        self.weights = self.dir / "model.safetensors"
        self.weights.write_bytes(b"weights")
        self.spec = f"scratch:{self.dir}"
        self.loads: list[str] = []

    def __call__(self, spec: str) -> LanguageModel:
        self.loads.append(spec)
        return FakeLM(spec, script=str(len(self.loads)))


__all__ = ["FakeLM", "FakeLoader", "DirLoader", "SpecError"]
