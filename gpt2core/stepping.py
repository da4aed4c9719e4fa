"""Step mode: drive a model one token at a time, by hand.

At each position the model proposes a token (drawn with the turn's settings and seed)
and shows its candidates; a person accepts the proposal, forces another candidate, or
steps back. Stepping back rewinds the KV cache (the backend moves its write index) and
the sampler's random state, so accepting every proposal gives exactly the tokens a plain
generation with the same seed gives, however many undos happened on the way. Choosing a
different token after stepping back starts a branch; the old continuation is kept.

No UI here: the session core and both front ends drive a ``Stepper``.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

import numpy as np

from gpt2core.errors import UserError
from gpt2core.generate import GenerationSummary, LanguageModel
from gpt2core.sampling import Candidate, Sampler, Settings


class StepError(UserError):
    """A step that cannot be taken (one line)."""


@dataclass(frozen=True)
class StepRecord:
    token_id: int
    forced: bool  # True: a person chose it; False: the model's own pick
    prob: float  # the model's probability for it (softmax of the raw logits)
    rank: int  # 1 = the model's favourite


@dataclass
class Proposal:
    token_id: int  # what the model would pick here, with the turn's settings and seed
    candidates: list[Candidate]  # most likely first; the proposal is marked chosen
    pipeline: object | None = None  # sampling.Pipeline, when asked for


@dataclass
class _Position:
    logits: np.ndarray  # (V,) for the next token
    rng_state: dict  # the sampler's state before it drew this position's proposal
    proposal: Proposal


@dataclass
class Branch:
    tokens: list[StepRecord] = field(default_factory=list)


class Stepper:
    """One turn in step mode. Each call holds the model's lock only while it runs, so the
    front end must not start another generation on this model until ``finish``. Other
    users of the model's cache between two calls (the app's background compiles, an
    ``:inspect``) are noticed (``LanguageModel.cache_writes``): the next call runs this
    turn's positions again before it steps, so what it shows never depends on them."""

    def __init__(self, lm: LanguageModel, prompt: str, settings: Settings, pipeline=False):
        self.lm, self.settings, self.pipeline = lm, settings, pipeline
        settings.validate()
        self.t0 = time.perf_counter()
        self.sampler = Sampler(settings)
        with lm.busy:
            ids, self.dropped = lm.prepare_prompt(prompt, settings)
            self.input_ids = list(ids)
            logits, _ = lm._prefill(list(ids), min(lm.n_positions, len(ids) + 1))
            self._writes = lm.cache_writes  # the count after this turn's own last write
        self.tokens: list[StepRecord] = []
        self.branches: list[Branch] = []  # continuations left by stepping back
        self._undone: list[StepRecord] = []  # tokens stepped back over, newest first
        # what the person did, in order, for a replay: ["accept"], ["force", k, token_id],
        # ["undo"], ["switch", n]
        self.ops: list[list] = []
        self._stack = [self._position(np.asarray(logits))]

    # -- what the front end reads ---------------------------------------------------------
    @property
    def proposal(self) -> Proposal:
        return self._stack[-1].proposal

    @property
    def output_ids(self) -> list[int]:
        return self.input_ids + [r.token_id for r in self.tokens]

    def text(self) -> str:
        return self.lm.tokenizer.decode([r.token_id for r in self.tokens])

    # -- what a person does -------------------------------------------------------------------
    def accept(self) -> StepRecord:
        """Take the model's own pick."""
        record = self._take(self.proposal.token_id, forced=False)
        self.ops.append(["accept"])
        return record

    def force(self, k: int) -> StepRecord:
        """Take candidate ``k`` (1 = the most likely) instead."""
        cands = self.proposal.candidates
        if not 1 <= k <= len(cands):
            raise StepError(f"choose a candidate from 1 to {len(cands)}, not {k}")
        token = cands[k - 1].token_id
        record = self._take(token, forced=token != self.proposal.token_id)
        self.ops.append(["force", k, token])
        return record

    def force_token(self, token_id: int) -> StepRecord:
        """Force the candidate that is ``token_id`` (a replay forces the saved token, not
        the saved rank); a token outside the shown candidates is a StepError."""
        cands = [c.token_id for c in self.proposal.candidates]
        if token_id not in cands:
            raise StepError(f"token {token_id} is not among this step's candidates {cands}")
        return self.force(cands.index(token_id) + 1)

    def undo(self) -> StepRecord:
        """Step back one token: the KV cache and the sampler rewind with it."""
        if not self.tokens:
            raise StepError("nothing to undo: no token was generated yet")
        record = self._undo()
        self.ops.append(["undo"])
        return record

    def _undo(self) -> StepRecord:
        kept = self.output_ids[:-1]
        with self.lm.busy:  # the backend first: if it fails, the turn is as it was
            if self._cache_still_ours(kept):  # else it ran them again: no rows to drop
                self.lm._rewind(len(kept))
            self._writes = self.lm.cache_writes
        record = self.tokens.pop()
        self._stack.pop()
        self._undone.append(record)
        self.sampler.rng.bit_generator.state = copy.deepcopy(self._stack[-1].rng_state)
        # the proposal is drawn again from the restored state: the same one as before
        self._stack[-1] = self._position(self._stack[-1].logits)
        return record

    def switch(self, n: int) -> None:
        """Make branch ``n`` (1-based, as ``branches`` lists them) the current one."""
        if not 1 <= n <= len(self.branches):
            raise StepError(f"no branch {n}: there are {len(self.branches)}")
        target = self.branches.pop(n - 1).tokens
        common = 0
        while (common < min(len(target), len(self.tokens))
               and target[common] == self.tokens[common]):  # fmt: skip
            common += 1
        current = list(self.tokens)
        while len(self.tokens) > common:
            self._undo()
        self._undone = []
        for record in target[common:]:
            self._take(record.token_id, record.forced, branch=False)
        self.branches.append(Branch(current))
        self.ops.append(["switch", n])

    def finish(self, stop: str = "finished") -> GenerationSummary:
        n = len(self.tokens)
        return GenerationSummary(
            model=self.lm.name,
            input_ids=list(self.input_ids),
            output_ids=self.output_ids,
            text=self.text(),
            prompt_tokens=len(self.input_ids),
            new_tokens=n,
            ttft_s=0.0,
            tokens_per_s=0.0,
            stop_reason=stop,
            dropped_tokens=self.dropped,
            wall_s=time.perf_counter() - self.t0,
            settings=self.settings.as_dict(),
        )

    # -- inside -----------------------------------------------------------------------------
    def _position(self, logits: np.ndarray) -> _Position:
        state = copy.deepcopy(self.sampler.rng.bit_generator.state)
        history = self.output_ids
        token, cands = self.sampler(logits, history)
        pipe = self.sampler.explain(logits, history, token) if self.pipeline else None
        return _Position(logits, state, Proposal(token, cands, pipe))

    def _take(self, token: int, forced: bool, branch: bool = True) -> StepRecord:
        if len(self.output_ids) >= self.lm.n_positions:
            raise StepError(f"the context is full ({self.lm.n_positions} tokens)")
        logits = self._stack[-1].logits
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        rank = 1 + int((logits > logits[token]).sum())
        record = StepRecord(token, forced, float(probs[token]), rank)
        with self.lm.busy:  # the backend first: if it fails, the turn is as it was
            self._cache_still_ours(self.output_ids)
            next_logits, _ = self.lm._step(token)
            self._writes = self.lm.cache_writes
        if branch and self._undone:
            if self._undone[-1].token_id == token:  # walking the old path again
                self._undone.pop()
            else:  # a different choice here: the old continuation becomes a branch
                self.branches.append(Branch(list(self.tokens) + self._undone[::-1]))
                self._undone = []
        self.tokens.append(record)
        self._stack.append(self._position(np.asarray(next_logits)))
        return record

    def _cache_still_ours(self, ids: list[int]) -> bool:
        """With the model's lock held: if anything else wrote into its cache since this
        turn's last call, run ``ids`` (this turn's positions so far) into it again and
        return False; True when the cache is as this turn left it."""
        if self.lm.cache_writes == self._writes:
            return True
        self._writes = -1  # if this fails, the next call tries again
        self.lm._prefill(list(ids), min(self.lm.n_positions, len(ids) + 1))
        return False
