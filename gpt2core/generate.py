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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from gpt2core.errors import UserError
from gpt2core.sampling import Candidate, Sampler, Settings
from gpt2core.tokenizer import Tokenizer, stream_decoder

LENS_TOP = 10  # tokens per layer in the logit lens
GRID_MAX = 16  # the full T x T attention ("attention_grid") is given for contexts this short


class GenerationError(UserError):
    """A prompt the model cannot run (one-line user error)."""


@dataclass(frozen=True)
class PromptEvent:
    """The first event of a stream: the ids the model will see for the prompt (after any
    cut from the left to fit the context) and how many were cut."""

    input_ids: list[int]
    dropped_tokens: int


@dataclass(frozen=True)
class TokenEvent:
    step: int  # 0-based index of the new token
    token_id: int
    text: str  # text this token completes ('' while a multi-byte character is split)
    candidates: list[Candidate]
    step_s: float  # seconds spent on this token (model + sampling)
    # What the model computed for this step when a view asked (else None): "attention"
    # (n_layer, n_head, T) weights of the predicted position over the context, "lens"
    # (per layer, [(id, prob), ...] top tokens), "pipeline" (a sampling.Pipeline),
    # "attention_grid" (n_layer, n_head, T, T): every context position's weights over
    # the context, row t for the query at position t (only while T <= GRID_MAX).
    probes: dict | None = None


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


Event = PromptEvent | TokenEvent | GenerationSummary
Probes = frozenset[str] | Callable[[], frozenset[str]]


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

    # How many runs have written into the backend's cache (prefills, steps, compiles).
    # Step mode keeps a half-done turn's rows there between key presses without the lock:
    # when this count moves while it is not looking, something else (a background
    # compile, :inspect) wrote over them, and it runs its positions again (stepping.py).
    cache_writes = 0

    # backend hooks ---------------------------------------------------------------------
    # Each runs the model and returns the logits for the next position (V,) and, when
    # ``probes`` (a subset of PROBES) asks for any, what it computed for them (else None).
    def _prefill(
        self, ids: list[int], capacity: int, probes: frozenset[str] = frozenset()
    ) -> tuple[np.ndarray, dict | None]:
        raise NotImplementedError

    def _step(
        self, token_id: int, probes: frozenset[str] = frozenset()
    ) -> tuple[np.ndarray, dict | None]:
        raise NotImplementedError

    def warmup(self) -> None:
        """Compile/allocate what the first generation would (optional)."""

    def compile_for(self, prompt: str, settings: Settings) -> None:
        """Compile what generating from ``prompt`` with ``settings`` will need, so its
        time to first token and tokens/s measure the model, not the compiler (a one-shot
        command calls this; the app compiles in the background instead)."""
        self.warmup()

    def _rewind(self, n: int) -> None:
        """Forget every position from ``n`` on: the next ``_step`` writes position ``n``.
        (Step mode's undo; a backend with a KV cache moves its write index back, since the
        rows after it are masked until overwritten.)"""
        raise NotImplementedError(f"{type(self).__name__} cannot step back")

    def background_shapes(self) -> list:
        """Shapes still to compile so that no later turn waits for the compiler (a front
        end compiles them one at a time while the model is idle)."""
        return []

    def compile_shape(self, shape) -> bool:
        """Compile one of ``background_shapes()`` if the model is idle now; False if it
        is busy (try again later)."""
        return True

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
    # What this backend's hooks can compute per step besides the logits ("pipeline" is
    # the sampler's and always available).
    PROBES: frozenset[str] = frozenset()

    def stream(
        self,
        prompt: str,
        settings: Settings | None = None,
        cancel: threading.Event | None = None,
        slide: bool = True,
        probes: Probes = frozenset(),
    ) -> Iterator[Event]:
        """Yield a ``PromptEvent``, a ``TokenEvent`` per new token, a ``GenerationSummary``.
        ``probes`` (a set, or a callable asked before each step, so a view switched on
        mid-reply gets its data from the next token) names what each step should carry
        besides the logits; nothing is computed for probes nobody asked for."""
        with self.busy:
            yield from self._stream(prompt, settings, cancel, slide, probes)

    @staticmethod
    def _wanted(probes: Probes) -> frozenset[str]:
        return frozenset(probes() if callable(probes) else probes)

    def _stream(self, prompt, settings, cancel, slide, probes=frozenset()) -> Iterator[Event]:
        s = settings or Settings()
        s.validate()
        t0 = time.perf_counter()
        ids, dropped = self.prepare_prompt(prompt, s)
        yield PromptEvent(list(ids), dropped)
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
        want = self._wanted(probes)
        asked = want & self.PROBES  # what the backend computes for this step
        grid = None  # (L, nh, T, T) while "attention_grid" is asked for and T <= GRID_MAX
        logits, computed = self._prefill(context, capacity, asked)  # (V,), probes or None
        t_first = t_last = None
        t_step = t0
        for step in range(s.max_new_tokens):
            if cancel is not None and cancel.is_set():
                stop = "cancelled"
                break
            token, cands = sampler(logits, history)
            probed = None
            if want:
                probed = dict(computed or {})
                if "pipeline" in want:
                    probed["pipeline"] = sampler.explain(logits, history, token)
            grid = _grow_grid(grid, probed) if "attention_grid" in asked else None
            if probed is not None:
                probed.pop("attention_grid", None)
                if grid is not None:
                    probed["attention_grid"] = grid
            new.append(token)
            history.append(token)
            is_eos = s.stop_at_eos and eos is not None and token == eos
            text = "" if is_eos else decoder.push(token)
            pieces.append(text)
            now = time.perf_counter()
            t_first = t_first or now
            t_last = now
            yield TokenEvent(step, token, text, cands, now - t_step, probed)
            t_step = time.perf_counter()
            want = self._wanted(probes)
            asked = want & self.PROBES
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
                logits, computed = self._prefill(context, n_ctx, asked)
            elif "attention_grid" in asked and grid is None and len(context) <= GRID_MAX:
                # the grid was asked for mid-reply: the earlier positions' queries are gone
                # (a step computes one query), so run the short context again as a prefill
                logits, computed = self._prefill(context, capacity, asked)
            else:
                logits, computed = self._step(token, asked)
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


def _grow_grid(grid: np.ndarray | None, probed: dict | None) -> np.ndarray | None:
    """The T x T attention after this step: the backend's own grid when it gave one (a
    prefill, or transformers' full forward), else the last grid with this step's row
    (the new query's weights) added under it; None once the context outgrows GRID_MAX or
    a row is missing."""
    if not probed:
        return None
    full = probed.get("attention_grid")  # (L, nh, T, T)
    if full is not None:
        return full
    row = probed.get("attention")  # (L, nh, T)
    if grid is None or row is None or row.shape[-1] != grid.shape[-1] + 1:
        return None
    t = row.shape[-1]
    if t > GRID_MAX:
        return None
    out = np.zeros((*row.shape[:2], t, t), row.dtype)  # (L, nh, T, T)
    out[:, :, :-1, :-1] = grid  # (L, nh, T-1, T-1): earlier queries put 0 on the new key
    out[:, :, -1] = row  # (L, nh, T): the new query
    return out


# -- the scratch decoder ---------------------------------------------------------------


def bucket(n: int, lo: int, hi: int) -> int:
    """The smallest power of two >= n (at least lo), capped at hi."""
    b = lo
    while b < n:
        b *= 2
    return min(b, hi)


class ScratchDecoder:
    """KV-cache decoding for a gpt2core ``GPT2``: one XLA-compiled function runs both the
    prefill (T prompt tokens) and each step (T = 1).

    Decoding one token reads every weight once (495 MB at 124M), so its speed is memory
    bandwidth; the decoder's job is to add as little traffic as it can to that:

    - The KV cache lives in ``tf.Variable``s (per layer, k and v, each (1, nh,
      n_positions + 1, hs)) that the compiled function updates in place: a step writes one
      row per layer, and no cache goes into or out of the call. The one spare row keeps
      the largest window (n_positions rows) a true slice of the variable: a window that
      was the whole variable made XLA copy every cache variable twice per step (300 MB of
      traffic at 124M, half the rate at the end of a 1,000-token reply).
    - A step attends over the written prefix of the cache only, rounded up to a power of
      two (at least ``MIN_CACHE``, at most n_positions), never over the whole allocation.
      The length of the ``window`` argument carries that size, so the function is traced
      once and XLA compiles it once per (prompt bucket, window bucket) shape.
    - Except for long windows: a window is a slice of the variables, and XLA copies it
      three times per step (to attend over it with the new row, and twice more to take
      that row back out for the variable's write), which grows with the window. From
      ``IN_PLACE_FROM`` rows on, a step instead attends over the whole variables, which
      it updates in place (a second compiled function, ``_full_fn``); XLA still copies
      each variable once for the attention's operand, at one cost whatever the position.
      At 124M on 2 cores: 29-30 tok/s from position 512 to the end, where the windowed
      step fell to 26 by position 600.
    - Prompts are right-padded to a power of two (at least ``MIN_PROMPT``); padding
      positions write junk rows after the prompt, which the causal mask hides and each
      new token overwrites before any query can see it. A one-token prompt runs as a
      step (``prompt_rows``), so it needs no compile of its own.
    - Only the last real position goes through the last block's attention output and MLP
      and through the head (``_hidden_at``: the prefill's other T - 1 positions would cost
      1/16 of its arithmetic at 124M and a (T, V) matmul for nothing), and the head
      multiplies by wte with ``transpose_b``, so no transposed copy of wte is kept.

    ``traces`` counts Python traces of the compiled functions (1 after the first call; 2
    once a step has attended over the whole variables).
    """

    MIN_CACHE = 64
    MIN_PROMPT = 16
    IN_PLACE_FROM = 512  # steps with windows this long attend over the whole variables
    PROBES = frozenset({"attention", "attention_grid", "lens"})

    def __init__(self, model):
        from gpt2core._tf import graph_function, tf

        self.model = model
        self.config = model.config
        self.traces = 0
        self.writes = 0  # runs that wrote into the cache (LanguageModel.cache_writes)
        self.index = 0  # cache rows written so far = position of the next token
        self._kv = None  # made on first use: n_layer x (k, v) variables
        self._windows: dict[int, object] = {}  # window size -> (S,) int32 constant
        self.compiled: set[tuple[int, int]] = set()  # (T, S) shapes run so far
        self.probed: dict | None = None  # the last run's probes, when asked for
        signature = [
            tf.TensorSpec([1, None], tf.int32),  # token_ids (1, T)
            tf.TensorSpec([], tf.int32),  # index: position of token_ids[0, 0]
            tf.TensorSpec([], tf.int32),  # last: which of the T positions to score
            tf.TensorSpec([None], tf.int32),  # window (S,): attend over cache rows < S
        ]
        self._fn = graph_function(self._step_impl, input_signature=signature)
        # one token attending over the whole cache variables, updated in place (no window)
        self._full_fn = graph_function(self._full_impl, input_signature=signature[:3])
        # The same step with the teaching probes (attention rows, logit lens): a second
        # compiled function, traced only when a view asks for them.
        self._probe_fn = graph_function(self._probe_impl, input_signature=signature)

    def _variables(self):
        from gpt2core._tf import tf

        if self._kv is None:
            c = self.config
            shape = [1, c.n_head, c.n_positions + 1, c.head_size]  # + 1: see the docstring
            self._kv = tuple(
                (
                    tf.Variable(tf.zeros(shape), trainable=False, name=f"h.{i}.k_cache"),
                    tf.Variable(tf.zeros(shape), trainable=False, name=f"h.{i}.v_cache"),
                )
                for i in range(c.n_layer)
            )
        return self._kv

    def _step_impl(self, token_ids, index, last, window):
        return self._run_impl(token_ids, index, last, window)

    def _full_impl(self, token_ids, index, last):
        return self._run_impl(token_ids, index, last, None)

    def _probe_impl(self, token_ids, index, last, window):
        return self._run_impl(token_ids, index, last, window, probe=True)

    def _run_impl(self, token_ids, index, last, window, probe=False):
        from tensorflow.compiler.tf2xla.python import xla

        from gpt2core._tf import tf

        self.traces += 1
        c = self.config
        t = tf.shape(token_ids)[1]
        # Each variable is read once and written once, with only its T new rows, so XLA can
        # update it in place (with region analysis on: see gpt2core/__init__.py).
        values = tuple((k.read_value(), v.read_value()) for k, v in self._kv)
        if window is None:  # the whole variables: L x 2 x (1, nh, n_positions + 1, hs)
            cache = values
        else:
            s = tf.shape(window)[0]  # a compile-time constant under XLA
            cache = tuple((k[:, :, :s], v[:, :, :s]) for k, v in values)  # L x 2 x (1, nh, S, hs)
        if probe:
            _, hidden, cache, attention, residuals = self.model.probe_with_cache(
                token_ids, cache, index
            )
            h = tf.gather(hidden, last, axis=1)  # (1, T, C) -> (1, C)
        else:
            h, cache = self._hidden_at(token_ids, cache, index, last)  # (1, C)
        start = tf.stack([0, 0, index, 0])
        size = [1, c.n_head, t, c.head_size]
        for variables, old, new in zip(self._kv, values, cache, strict=True):
            for var, before, after in zip(variables, old, new, strict=True):
                if window is None:
                    var.assign(after)  # the variable with its new rows: in place
                    continue
                rows = xla.dynamic_slice(after, start, size)  # (1, nh, T, hs): the new rows
                var.assign(xla.dynamic_update_slice(before, rows, start))  # in place
        logits = tf.matmul(h, self.model.wte.embeddings, transpose_b=True)[0]  # (V,)
        if not probe:
            return logits
        # attention of the scored position: L x (1, nh, T, S) -> (L, nh, S)
        att = tf.stack([tf.gather(a[0], last, axis=1) for a in attention])
        # every query's weights, the top-left GRID_MAX corner (the prefill of a short
        # prompt is all of it): L x (1, nh, T, S) -> (L, nh, <=G, <=G)
        grid = tf.stack([a[0, :, :GRID_MAX, :GRID_MAX] for a in attention])
        # logit lens: the residual after each block, through ln_f and the tied head,
        # one (L, C) x (C, V) product that reads the head once
        res = tf.stack([tf.gather(r[0], last, axis=0) for r in residuals])  # (L, C)
        lens = tf.matmul(self.model.ln_f(res), self.model.wte.embeddings, transpose_b=True)
        top_p, top_i = tf.math.top_k(tf.nn.softmax(lens, axis=-1), k=LENS_TOP)  # (L, k) x 2
        return logits, att, top_i, top_p, grid

    def _hidden_at(self, token_ids, cache, index, last):
        """The model's ``call_with_cache`` up to ln_f, for the scored position only: every
        block writes all T positions' keys and values into the cache, but the last block
        computes its attention output and MLP for position ``last`` alone (at 124M the
        other rows are 1/16 of a prefill's arithmetic, computed for nothing)."""
        m = self.model
        x = m._embed(token_ids, index)  # (1, T, C)
        new_cache = []
        for i, (block, layer_cache) in enumerate(zip(m.h, cache, strict=True)):
            wanted = last if i == len(m.h) - 1 else None
            x, layer_cache = block.call_with_cache(x, layer_cache, index, last=wanted)
            new_cache.append(layer_cache)  # (k, v), each (1, nh, S, hs)
        return m.ln_f(x)[:, 0], tuple(new_cache)  # (1, 1, C) -> (1, C); the updated cache

    def _window(self, size: int):
        from gpt2core._tf import tf

        w = self._windows.get(size)
        if w is None:
            w = self._windows[size] = tf.range(size, dtype=tf.int32)  # (S,)
        return w

    def run(self, ids: list[int], index: int, last: int, probes=frozenset()) -> np.ndarray:
        """Write ids at positions index.. into the cache; logits after ids[last]. With
        ``probes`` ("attention", "lens"), ``self.probed`` gets them for that position."""
        from gpt2core._tf import tf

        self._variables()
        self.writes += 1
        n = self.config.n_positions
        size = bucket(index + len(ids), self.MIN_CACHE, n)
        if index + len(ids) > size:
            raise ValueError(f"{index + len(ids)} positions do not fit a {n}-position cache")
        args = (
            tf.constant([ids], tf.int32), tf.constant(index), tf.constant(last), self._window(size)
        )  # fmt: skip
        self.probed = None
        if probes & self.PROBES:
            logits, att, top_i, top_p, grid = self._probe_fn(*args)
            context = index + last + 1  # the positions the scored one can see
            ids_, ps = top_i.numpy(), top_p.numpy()
            self.probed = {
                "attention": att.numpy()[:, :, :context],  # (L, nh, context)
                "lens": [
                    [(int(i), float(p)) for i, p in zip(row_i, row_p, strict=True)]
                    for row_i, row_p in zip(ids_, ps, strict=True)
                ],
            }
            if "attention_grid" in probes and index == 0 and context <= GRID_MAX:
                g = grid.numpy()[:, :, :context, :context]  # (L, nh, T, T): a whole prompt
                self.probed["attention_grid"] = g
            return logits.numpy()
        if len(ids) == 1 and size >= self.IN_PLACE_FROM:
            logits = self._full_fn(*args[:3])
        else:
            logits = self._fn(*args)
        self.compiled.add((len(ids), size))
        return logits.numpy()

    def windows(self, first: int, last: int) -> list[int]:
        """The step windows that positions ``first``..``last`` attend over, each once and
        in order: the buckets from bucket(first) up to bucket(last), capped at n_positions."""
        n = self.config.n_positions
        out = [bucket(first, self.MIN_CACHE, n)]
        while out[-1] < bucket(last, self.MIN_CACHE, n):
            out.append(min(out[-1] * 2, n))
        return out

    def prompt_buckets(self, longest: int) -> list[int]:
        """The padded lengths that prompts of 2..``longest`` tokens run as, each once and in
        order: powers of two from MIN_PROMPT, the last capped at n_positions."""
        out = [self.prompt_rows(2)]
        while out[-1] < self.prompt_rows(longest):
            out.append(min(out[-1] * 2, self.config.n_positions))
        return out

    def prompt_rows(self, length: int) -> int:
        """How many rows a prompt of ``length`` tokens runs as: one token as a step (the
        step's shape, compiled anyway: unconditional text and the trainer's samples start
        from one token), longer ones padded to a power of two (at least MIN_PROMPT)."""
        return 1 if length == 1 else bucket(length, self.MIN_PROMPT, self.config.n_positions)

    def prefill(self, ids: list[int], capacity: int = 0, probes=frozenset()) -> np.ndarray:
        """Start a generation: the prompt at positions 0.. (``capacity`` is not needed:
        the cache is sized by the model's window, attended by the written prefix)."""
        padded = self.prompt_rows(len(ids))
        tokens = list(ids) + [0] * (padded - len(ids))  # (Tp,) right-padded with id 0
        logits = self.run(tokens, 0, len(ids) - 1, probes)
        self.index = len(ids)
        return logits

    def step(self, token_id: int, probes=frozenset()) -> np.ndarray:
        logits = self.run([token_id], self.index, 0, probes)
        self.index += 1
        return logits

    def compile(self, prompt_lengths=(), windows=()) -> None:
        """Compile the prefill shapes for these prompt lengths and the step shapes for
        these window sizes now, skipping shapes already compiled (the cache contents are
        scratch afterwards, and ``writes`` says so; with nothing to compile, untouched)."""
        n = self.config.n_positions
        writes = self.writes
        for length in prompt_lengths:
            padded = self.prompt_rows(length)
            if (padded, bucket(padded, self.MIN_CACHE, n)) not in self.compiled:
                self.prefill([0] * length)
        for size in windows:
            size = bucket(size, self.MIN_CACHE, n)
            if (1, size) not in self.compiled:
                self.run([0], size - 1, 0)
        if self.writes != writes:
            self.index = 0


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

    PROBES = ScratchDecoder.PROBES

    @property
    def cache_writes(self) -> int:
        return self.decoder.writes

    def _prefill(self, ids, capacity, probes=frozenset()):
        logits = self.decoder.prefill(ids, capacity, probes)
        return logits, self.decoder.probed

    def _step(self, token_id, probes=frozenset()):
        logits = self.decoder.step(token_id, probes)
        return logits, self.decoder.probed

    def _rewind(self, n: int) -> None:
        self.decoder.index = n  # rows from n on are masked until a step overwrites them

    def warmup(self, capacities: tuple[int, ...] = (128, 256)) -> None:
        """Compile the shapes a typical turn uses (a short prompt; windows of up to 256
        positions), so the first prompts do not wait for XLA."""
        with self.busy:
            windows = self.decoder.windows(1, min(max(capacities), self.n_positions))
            short = ScratchDecoder.MIN_PROMPT  # a short prompt's shape (one token runs as a step)
            self.decoder.compile(prompt_lengths=(short,), windows=windows)

    def compile_for(self, prompt: str, settings: Settings) -> None:
        ids, _ = self.prepare_prompt(prompt, settings)
        n, d = self.n_positions, self.decoder
        windows = d.windows(len(ids) + 1, min(len(ids) + settings.max_new_tokens, n))
        with self.busy:
            d.compile(prompt_lengths=(len(ids),), windows=windows)  # skips what is compiled

    BACKGROUND_PROMPT = 512  # prompts up to this long get their first token without a compile

    def background_shapes(self) -> list[tuple[int, int]]:
        """(T, S) shapes not compiled yet: the prefill of every prompt bucket up to
        BACKGROUND_PROMPT tokens, then the step at every window up to n_positions."""
        d, n = self.decoder, self.n_positions
        rows = d.prompt_buckets(min(self.BACKGROUND_PROMPT, n))
        shapes = [(t, bucket(t, ScratchDecoder.MIN_CACHE, n)) for t in rows]
        shapes += [(1, size) for size in d.windows(1, n)]
        return [s for s in shapes if s not in d.compiled]

    def compile_shape(self, shape: tuple[int, int]) -> bool:
        if not self.busy.acquire(blocking=False):
            return False
        try:
            t, s = shape
            if t == 1:
                self.decoder.compile(windows=(s,))
            else:
                self.decoder.compile(prompt_lengths=(t,))
            self.decoder.compiled.add(shape)
        finally:
            self.busy.release()
        return True


# -- transformers' GPT-2 ---------------------------------------------------------------


class PretrainedLM(LanguageModel):
    """transformers' ``TFGPT2LMHeadModel`` (the reference implementation), streamed with its
    own weights and code, compiled by XLA.

    transformers' XLA ``generate`` keeps ``past_key_values`` at a fixed size (zeros for the
    slots not yet written, an ``attention_mask`` of 0 over them) so that its while-loop body
    has one shape; a stream returns to Python after every token, so here one compiled
    function runs the model on T new tokens against such a padded past and writes their
    keys and values into it at ``index``. The past is padded to a power of two (like the
    scratch decoder's window) and grows by padding. If compiling fails for a checkpoint, the
    model falls back to the eager loop (``past_key_values`` as the model returns them) and
    says so in its description.
    """

    kind = "pretrained"
    MIN_PAST = 64
    MIN_PROMPT = 16

    def __init__(
        self,
        hf_model,
        tokenizer: Tokenizer,
        name: str,
        description: str = "",
        compiled: bool = True,
    ):
        from gpt2core._tf import graph_function, tf

        self.model = hf_model
        self.tokenizer = tokenizer
        self.name = name
        self._description = description
        self.n_positions = int(hf_model.config.n_positions)
        self.num_params = int(sum(int(np.prod(w.shape)) for w in hf_model.weights))
        self.traces = 0
        self.fallback_reason = "" if compiled else "compiled step turned off"
        self._past = None  # eager: the model's own past; compiled: L x (2, 1, nh, P, hs)
        self._mask = None  # compiled: (P,) int32, 1 where the past holds a real position
        self.index = 0
        c = hf_model.config
        layer = tf.TensorSpec([2, 1, c.n_head, None, c.n_embd // c.n_head], tf.float32)
        self._fn = graph_function(
            self._run_impl,
            input_signature=[
                tf.TensorSpec([1, None], tf.int32),  # input_ids (1, T)
                tuple(layer for _ in range(c.n_layer)),  # past, L x (2, 1, nh, P, hs)
                tf.TensorSpec([1, None], tf.int32),  # past_mask (1, P)
                tf.TensorSpec([], tf.int32),  # index: position of input_ids[0, 0]
                tf.TensorSpec([], tf.int32),  # last: which of the T positions to score
            ],
        )

    @property
    def description(self) -> str:
        if self.fallback_reason:
            return f"{self._description} (eager: {self.fallback_reason})"
        return self._description

    @description.setter
    def description(self, text: str) -> None:
        self._description = text

    @property
    def compiled(self) -> bool:
        return not self.fallback_reason

    def _run_impl(self, input_ids, past, past_mask, index, last):
        from tensorflow.compiler.tf2xla.python import xla

        from gpt2core._tf import tf

        self.traces += 1
        t = tf.shape(input_ids)[1]
        p = tf.shape(past_mask)[1]
        mask = tf.concat([past_mask, tf.ones_like(input_ids)], axis=1)  # (1, P + T)
        positions = index + tf.range(t)[None]  # (1, T)
        out = self.model.transformer(
            input_ids=input_ids,
            past_key_values=past,
            attention_mask=mask,
            position_ids=positions,
            use_cache=True,
            training=False,
        )
        hidden = tf.gather(out.last_hidden_state, [last], axis=1)  # (1, T, C) -> (1, 1, C)
        # the model's own head (TFGPT2LMHeadModel.call), on the one position we need
        logits = tf.matmul(hidden, self.model.transformer.wte.weights, transpose_b=True)
        new_past = []
        for present in out.past_key_values:  # (2, 1, nh, P + T, hs): past, then the T new
            rows = present[:, :, :, p:]  # (2, 1, nh, T, hs)
            start = tf.stack([0, 0, 0, index, 0])
            new_past.append(xla.dynamic_update_slice(present[:, :, :, :p], rows, start))
        return logits[0, 0], tuple(new_past)  # (V,), L x (2, 1, nh, P, hs)

    def _grow(self, size: int) -> None:
        """Pad the past (and its mask) to ``size`` slots."""
        from gpt2core._tf import tf

        if self._past is None:
            c = self.model.config
            shape = [2, 1, c.n_head, size, c.n_embd // c.n_head]
            self._past = tuple(tf.zeros(shape) for _ in range(c.n_layer))
            self._mask = np.zeros(size, np.int32)
            return
        old = int(self._past[0].shape[3])
        if size > old:
            pad = [[0, 0]] * 3 + [[0, size - old], [0, 0]]
            self._past = tuple(tf.pad(x, pad) for x in self._past)  # (2, 1, nh, P', hs)
            self._mask = np.concatenate([self._mask, np.zeros(size - old, np.int32)])

    def _run_compiled(self, ids: list[int], last: int, real: int) -> np.ndarray:
        from gpt2core._tf import tf

        n = self.n_positions
        self.cache_writes += 1
        self._grow(bucket(self.index + len(ids), self.MIN_PAST, n))
        logits, self._past = self._fn(
            tf.constant([ids], tf.int32),
            self._past,
            tf.constant(self._mask[None]),
            tf.constant(self.index),
            tf.constant(last),
        )
        self._mask[self.index : self.index + real] = 1
        self.index += real
        return logits.numpy()

    def _run_eager(self, ids):
        from gpt2core._tf import tf

        self.cache_writes += 1
        out = self.model(
            input_ids=tf.constant([ids], tf.int32), past_key_values=self._past, use_cache=True
        )
        self._past = out.past_key_values
        return out.logits[0, -1].numpy()  # (V,)

    PROBES = frozenset({"attention", "attention_grid", "lens"})

    def _probe(self, ids: list[int], probes: frozenset[str]) -> dict:
        """Attention and logit lens for the position after ``ids``, from transformers' own
        ``output_attentions`` and ``output_hidden_states`` (one more forward pass over the
        context, run only while a view asks for them); every position's attention too when
        ``probes`` asks for "attention_grid"."""
        from gpt2core._tf import tf

        out = self.model(
            input_ids=tf.constant([ids], tf.int32),
            output_attentions=True,
            output_hidden_states=True,
            training=False,
        )
        att = np.stack([a[0, :, -1, :].numpy() for a in out.attentions])  # (L, nh, T)
        hidden = out.hidden_states  # (L + 1) x (1, T, C): embeddings, then each block
        # transformers' last hidden state has been through ln_f already; the others not
        # (its layer was built for (B, T, C) inputs: keep the time axis, (1, 1, C) each)
        rows = [self.model.transformer.ln_f(h[:, -1:])[0] for h in hidden[1:-1]]  # (1, C)
        rows.append(hidden[-1][0, -1:])  # (1, C)
        res = tf.concat(rows, axis=0)  # (L, C)
        lens = tf.matmul(res, self.model.transformer.wte.embeddings, transpose_b=True)  # (L, V)
        top_p, top_i = tf.math.top_k(tf.nn.softmax(lens, axis=-1), k=LENS_TOP)  # (L, k) x 2
        probed = {
            "attention": att,
            "lens": [
                [(int(i), float(p)) for i, p in zip(row_i, row_p, strict=True)]
                for row_i, row_p in zip(top_i.numpy(), top_p.numpy(), strict=True)
            ],
        }
        if "attention_grid" in probes and len(ids) <= GRID_MAX:
            # the forward ran every position's query already: (L, nh, T, T)
            probed["attention_grid"] = np.stack([a[0].numpy() for a in out.attentions])
        return probed

    def _prefill(self, ids, capacity, probes=frozenset()):
        self._ids = list(ids)
        logits = self._prefill_logits(ids)
        return logits, (self._probe(self._ids, probes) if probes else None)

    def _prefill_logits(self, ids):
        self._past = None
        self.index = 0
        if self.compiled:
            padded = bucket(len(ids), self.MIN_PROMPT, self.n_positions)
            tokens = list(ids) + [0] * (padded - len(ids))  # right-padded: causal mask hides it
            try:
                return self._run_compiled(tokens, len(ids) - 1, len(ids))
            except Exception as e:  # noqa: BLE001 - any compile failure: run eager instead
                first = (str(e).strip().splitlines() or [type(e).__name__])[0]
                self.fallback_reason = f"XLA could not compile it: {first[:120]}"
                self._past = None
        return self._run_eager(ids)

    def _rewind(self, n: int) -> None:
        self._ids = self._ids[:n]
        if self.compiled:
            self._mask[n:] = 0  # the attention mask hides the rows until they are rewritten
            self.index = n
        else:  # the model's own past: (2, 1, nh, T, hs) per layer, keep the first n
            self._past = tuple(p[:, :, :, :n] for p in self._past)

    def _step(self, token_id, probes=frozenset()):
        self._ids.append(token_id)
        if self.compiled:
            logits = self._run_compiled([token_id], 0, 1)
        else:
            logits = self._run_eager([token_id])
        return logits, (self._probe(self._ids, probes) if probes else None)

    def warmup(self) -> None:
        """Compile a short prompt and the steps of a short reply (a 64-slot past); longer
        pasts compile when a generation first needs them."""
        with self.busy:
            self._prefill([0], 1)
            if self.compiled:
                self._step(0)
            self._past, self._mask, self.index = None, None, 0
