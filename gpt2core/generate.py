"""Streaming generation: one interface over the scratch and the pretrained GPT-2.

``LanguageModel.stream(prompt, settings)`` yields a ``TokenEvent`` per new token, then
one ``GenerationSummary``. The loop (context window, sampling, UTF-8-safe text, stop
reasons, cancellation, timing) lives here once; a backend only supplies

    _prefill(ids, capacity) -> (V,) logits for the position after ids
    _step(token_id)          -> (V,) logits for the position after token_id

``ScratchLM`` runs gpt2core's model with a pre-allocated KV cache and XLA-compiled
prefill and step functions; ``PretrainedLM`` runs transformers' ``TFGPT2LMHeadModel``
with its own ``past_key_values``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from gpt2core.errors import UserError
from gpt2core.sampling import Candidate, Sampler, Settings
from gpt2core.tokenizer import Tokenizer, stream_decoder


class GenerationError(UserError):
    """A prompt the model cannot run (one-line user error)."""


@dataclass(frozen=True)
class TokenEvent:
    step: int  # 0-based index of the new token
    token_id: int
    text: str  # text this token completes ('' while a multi-byte character is split)
    candidates: list[Candidate]
    step_s: float  # seconds spent on this token (model + sampling)


@dataclass(frozen=True)
class GenerationSummary:
    model: str
    input_ids: list[int]  # the prompt as the model saw it (after any left cut)
    output_ids: list[int]  # input_ids + new tokens, as GPT-2's generate returns
    text: str  # the new text
    prompt_tokens: int
    new_tokens: int
    ttft_s: float  # time to first token, prefill included
    tokens_per_s: float  # decode rate after the first token
    stop_reason: str  # eos | max_new_tokens | cancelled | context
    dropped_tokens: int = 0  # prompt tokens cut from the left to fit the context
    wall_s: float = 0.0
    settings: dict = field(default_factory=dict)


Event = TokenEvent | GenerationSummary


def prompt_budget(n_positions: int, max_new_tokens: int) -> int:
    """How many prompt tokens to keep: room for max_new_tokens, but never under half the
    window (longer generations slide the window instead)."""
    return max(n_positions - max_new_tokens, n_positions // 2)


class LanguageModel:
    """A GPT-2 behind the one interface every front end uses."""

    kind = "model"  # "scratch" or "pretrained"
    name = "model"
    description = ""  # one line: what it is, its size, where it came from
    tokenizer: Tokenizer
    n_positions: int
    num_params: int = 0

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text)

    @property
    def busy(self) -> threading.RLock:
        """Held while the model generates or warms up: a backend keeps per-generation state
        (the KV cache), so two threads must not drive one model at once."""
        lock = self.__dict__.get("_busy")
        if lock is None:
            lock = self.__dict__.setdefault("_busy", threading.RLock())
        return lock

    # backend hooks ---------------------------------------------------------------------
    def _prefill(self, ids: list[int], capacity: int) -> np.ndarray:
        raise NotImplementedError

    def _step(self, token_id: int) -> np.ndarray:
        raise NotImplementedError

    def warmup(self) -> None:
        """Compile/allocate what the first generation would (optional)."""

    def prepare_prompt(self, prompt: str, settings: Settings) -> tuple[list[int], int]:
        """The ids the model will see for ``prompt``, and how many were cut from the left
        to leave room for ``max_new_tokens`` (see ``prompt_budget``)."""
        ids = self.encode(prompt)
        if not ids:
            if self.tokenizer.eos_id is None:
                raise GenerationError("the prompt is empty (this model has no start token)")
            ids = [self.tokenizer.eos_id]  # GPT-2 starts unconditional text after <|endoftext|>
        keep = prompt_budget(self.n_positions, settings.max_new_tokens)
        dropped = max(0, len(ids) - keep)
        return ids[dropped:], dropped  # cut from the left: the most recent text matters most

    # the loop ----------------------------------------------------------------------------
    def stream(
        self,
        prompt: str,
        settings: Settings | None = None,
        cancel: threading.Event | None = None,
        slide: bool = True,
    ) -> Iterator[Event]:
        with self.busy:
            yield from self._stream(prompt, settings, cancel, slide)

    def _stream(self, prompt, settings, cancel, slide) -> Iterator[Event]:
        s = settings or Settings()
        s.validate()
        t0 = time.perf_counter()
        ids, dropped = self.prepare_prompt(prompt, s)
        eos = self.tokenizer.eos_id
        n_ctx = self.n_positions

        sampler = Sampler(s)
        decoder = stream_decoder(self.tokenizer)
        context = list(ids)  # the tokens inside the model's window now
        history = list(ids)  # prompt + new, for the repetition penalty
        new: list[int] = []
        pieces: list[str] = []
        stop = "max_new_tokens"
        capacity = min(n_ctx, len(ids) + s.max_new_tokens)
        logits = self._prefill(context, capacity)  # (V,)
        t_first = t_last = None
        t_step = t0
        for step in range(s.max_new_tokens):
            if cancel is not None and cancel.is_set():
                stop = "cancelled"
                break
            token, cands = sampler(logits, history)
            new.append(token)
            history.append(token)
            is_eos = s.stop_at_eos and eos is not None and token == eos
            text = "" if is_eos else decoder.push(token)
            pieces.append(text)
            now = time.perf_counter()
            t_first = t_first or now
            t_last = now
            yield TokenEvent(step, token, text, cands, now - t_step)
            t_step = time.perf_counter()
            if is_eos:
                stop = "eos"
                break
            if step == s.max_new_tokens - 1:
                break
            if cancel is not None and cancel.is_set():
                stop = "cancelled"
                break
            context.append(token)
            if len(context) > n_ctx:  # the window is full
                if not slide:
                    stop = "context"
                    break
                context = context[-(n_ctx - n_ctx // 4) :]  # slide: keep the last 3/4
                logits = self._prefill(context, n_ctx)
            else:
                logits = self._step(token)
        tail = decoder.flush()
        if tail:
            pieces.append(tail)
        end = time.perf_counter()
        n = len(new)
        rate = (n - 1) / (t_last - t_first) if n > 1 and t_last > t_first else 0.0
        yield GenerationSummary(
            model=self.name,
            input_ids=list(ids),
            output_ids=list(ids) + new,
            text="".join(pieces),
            prompt_tokens=len(ids),
            new_tokens=n,
            ttft_s=(t_first - t0) if t_first else 0.0,
            tokens_per_s=rate,
            stop_reason=stop,
            dropped_tokens=dropped,
            wall_s=end - t0,
            settings=s.as_dict(),
        )

    def generate(self, prompt: str, settings: Settings | None = None, **kw) -> GenerationSummary:
        """Run ``stream`` to the end and return its summary."""
        summary = None
        for event in self.stream(prompt, settings, **kw):
            summary = event
        assert isinstance(summary, GenerationSummary)
        return summary


# -- the scratch decoder ---------------------------------------------------------------


def bucket(n: int, lo: int, hi: int) -> int:
    """The smallest power of two >= n (at least lo), capped at hi."""
    b = lo
    while b < n:
        b *= 2
    return min(b, hi)


class ScratchDecoder:
    """KV-cache decoding for a gpt2core ``GPT2``, with XLA-compiled prefill and step.

    The cache is allocated once per generation for ``capacity`` positions, rounded up to
    a power of two, and grows (by padding) only if a generation outlives it. Prompt
    lengths are padded to a power of two too, so the compiled functions see a handful of
    shapes, never one per prompt length or per token. ``traces`` counts Python traces.
    """

    MIN_CACHE = 64
    MIN_PROMPT = 16

    def __init__(self, model):
        from gpt2core._tf import tf

        self.model = model
        self.config = model.config
        self.traces = 0
        # the tied head, laid out (C, V) for decoding (see GPT2.call_with_cache); a copy
        # taken now, so a decoder is made after the weights are final
        self.head_kernel = tf.Variable(tf.transpose(model.wte.embeddings), trainable=False)
        layer = tf.TensorSpec([2, 1, self.config.n_head, None, self.config.head_size], tf.float32)
        spec_cache = tuple(layer for _ in range(self.config.n_layer))
        self._prefill_fn = tf.function(
            self._prefill_impl,
            input_signature=[
                tf.TensorSpec([1, None], tf.int32),
                spec_cache,
                tf.TensorSpec([], tf.int32),
            ],
            jit_compile=True,
        )
        self._step_fn = tf.function(
            self._step_impl,
            input_signature=[
                tf.TensorSpec([1, 1], tf.int32),
                spec_cache,
                tf.TensorSpec([], tf.int32),
            ],
            jit_compile=True,
        )
        self.cache = None
        self.index = 0
        self._stepped_sizes: set[int] = set()

    def _prefill_impl(self, token_ids, cache, last):
        self.traces += 1
        logits, cache = self.model.call_with_cache(
            token_ids, cache, 0, logits_index=last, head_kernel=self.head_kernel
        )
        return logits[:, 0], cache  # (1, V), L x (2, 1, nh, S, hs)

    def _step_impl(self, token_id, cache, index):
        self.traces += 1
        logits, cache = self.model.call_with_cache(
            token_id, cache, index, head_kernel=self.head_kernel
        )
        return logits[:, 0], cache  # (1, V), L x (2, 1, nh, S, hs)

    def prefill(self, ids: list[int], capacity: int) -> np.ndarray:
        from gpt2core._tf import tf

        n_ctx = self.config.n_positions
        size = bucket(max(capacity, len(ids)), self.MIN_CACHE, n_ctx)
        padded = bucket(len(ids), self.MIN_PROMPT, size)
        tokens = np.zeros([1, padded], np.int32)  # (1, Tp) right-padded with id 0
        tokens[0, : len(ids)] = ids
        # Padding positions write junk K/V after the prompt; the causal mask never lets a
        # real position see them, and each new token overwrites its slot before use.
        cache = self.model.init_cache(1, size)
        logits, self.cache = self._prefill_fn(tf.constant(tokens), cache, tf.constant(len(ids) - 1))
        self.index = len(ids)
        if size not in self._stepped_sizes:
            # XLA compiles the step once per cache size: do it now, inside time-to-first-token,
            # so the decode rate measures decoding. The result is discarded.
            self._step_fn(
                tf.zeros([1, 1], tf.int32), self.cache, tf.constant(min(self.index, size - 1))
            )
            self._stepped_sizes.add(size)
        return logits.numpy()[0]

    def step(self, token_id: int) -> np.ndarray:
        from gpt2core._tf import tf

        size = int(self.cache[0].shape[3])
        if self.index >= size:  # outgrew the cache: double it (bounded by n_positions)
            bigger = bucket(self.index + 1, self.MIN_CACHE, self.config.n_positions)
            pad = [[0, 0]] * 3 + [[0, bigger - size], [0, 0]]
            # each layer: (2, 1, nh, S, hs) -> (2, 1, nh, S', hs)
            self.cache = tuple(tf.pad(c, pad) for c in self.cache)
        logits, self.cache = self._step_fn(
            tf.constant([[token_id]], tf.int32), self.cache, tf.constant(self.index, tf.int32)
        )
        self.index += 1
        return logits.numpy()[0]


class ScratchLM(LanguageModel):
    kind = "scratch"

    def __init__(self, model, tokenizer: Tokenizer, name: str = "scratch", description: str = ""):
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.description = description
        self.n_positions = model.config.n_positions
        self.num_params = model.config.num_params()
        self.decoder = ScratchDecoder(model)

    def _prefill(self, ids, capacity):
        return self.decoder.prefill(ids, capacity)

    def _step(self, token_id):
        return self.decoder.step(token_id)

    def warmup(self, capacities: tuple[int, ...] = (128, 256)) -> None:
        """Compile the shapes a typical turn uses (a short prompt; caches of 128 and 256
        positions), so the first prompts do not wait for XLA."""
        with self.busy:
            for capacity in capacities:
                self.decoder.prefill([0], min(capacity, self.n_positions))


# -- transformers' GPT-2 ---------------------------------------------------------------


class PretrainedLM(LanguageModel):
    """transformers' ``TFGPT2LMHeadModel`` (the reference implementation), streamed with
    its own ``past_key_values``, exactly as its ``generate`` does it."""

    kind = "pretrained"

    def __init__(self, hf_model, tokenizer: Tokenizer, name: str, description: str = ""):
        self.model = hf_model
        self.tokenizer = tokenizer
        self.name = name
        self.description = description
        self.n_positions = int(hf_model.config.n_positions)
        self.num_params = int(sum(int(np.prod(w.shape)) for w in hf_model.weights))
        self._past = None

    def _run(self, ids):
        from gpt2core._tf import tf

        out = self.model(
            input_ids=tf.constant([ids], tf.int32), past_key_values=self._past, use_cache=True
        )
        self._past = out.past_key_values
        return out.logits[0, -1].numpy()  # (V,)

    def _prefill(self, ids, capacity):
        self._past = None
        return self._run(ids)

    def _step(self, token_id):
        return self._run([token_id])
