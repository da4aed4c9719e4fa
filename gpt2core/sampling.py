"""Generation settings and the next-token sampler shared by every backend.

The sampler runs on the host in NumPy on one (V,) logits vector per step: it costs
well under a millisecond at V = 50,257, and it makes "same seed, same settings, same
output" true for both backends alike.

Sampling is an ordered list of small named stages, in transformers' order: repetition
penalty, temperature, top-k, top-p; then the draw (greedy: the argmax). Each stage maps
``Scores`` (logits over all or part of the vocabulary) to ``Scores``, so ``STAGES`` is the
one place to add one, and ``Sampler.explain`` (only when asked: it costs a few (V,)
softmaxes) shows a teacher what each stage did to the candidates by softmaxing every
stage's output. For a seed, the stages draw exactly the tokens the single-function
sampler before them drew (tests/core/test_sampling_pipeline.py keeps a frozen copy).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gpt2core.errors import UserError


class SettingsError(UserError):
    """A setting out of range or of the wrong type; the message names it and its range."""


# -- settings ------------------------------------------------------------------------------


def _is_int(v: Any) -> bool:
    return isinstance(v, int | np.integer) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return (_is_int(v) or isinstance(v, float)) and bool(np.isfinite(v))


def _parse_bool(text: str) -> bool:
    low = text.lower()
    if low in ("true", "on", "yes", "1"):
        return True
    if low in ("false", "off", "no", "0"):
        return False
    raise ValueError(text)


def _parse_float(text: str) -> float:
    value = float(text)
    if not np.isfinite(value):
        raise ValueError(text)
    return value


def _parse_seed(text: str) -> int | None:
    return None if text.lower() in ("none", "random", "") else int(text)


def _setting(
    default: Any,
    range_: str,
    parse: Callable[[str], Any],
    ok: Callable[[Any], bool],
    user: bool = True,
) -> Any:
    """A setting's one declaration: its default, the range people are told, the parser for
    what they type, the check, and whether :set and --help offer it (``user``)."""
    meta = {"range": range_, "parse": parse, "ok": ok, "user": user}
    return field(default=default, metadata=meta)


# A temperature below this samples as greedy: the limit T -> 0 puts all the mass on the top
# logit anyway, and dividing by a temperature near float's smallest (1e-320) made the
# logits infinite and the probabilities NaN (a draw of garbage, with numpy's warnings).
GREEDY_BELOW = 1e-6


@dataclass(frozen=True)
class Settings:
    """Every generation setting, declared once (fields in pipeline order)."""

    temperature: float = _setting(
        1.0,
        f"a number >= 0 (0, or below {GREEDY_BELOW:g}, means greedy)",
        _parse_float,
        lambda v: _is_num(v) and v >= 0,
    )
    top_k: int = _setting(
        50, "an integer >= 0 (0 turns it off)", int, lambda v: _is_int(v) and v >= 0
    )
    top_p: float = _setting(
        1.0, "a number in (0, 1]", _parse_float, lambda v: _is_num(v) and 0 < v <= 1
    )
    repetition_penalty: float = _setting(  # outside 0.01..100 a logit overflows or is erased
        1.0,
        "a number from 0.01 to 100 (1 turns it off)",
        _parse_float,
        lambda v: _is_num(v) and 0.01 <= v <= 100,
    )
    max_new_tokens: int = _setting(  # 100,000: about an hour at 124M on a laptop
        64, "an integer from 1 to 100000", int, lambda v: _is_int(v) and 1 <= v <= 100_000
    )
    seed: int | None = _setting(
        None,
        "an integer >= 0, or 'none'",
        _parse_seed,
        lambda v: v is None or (_is_int(v) and v >= 0),
    )
    greedy: bool = _setting(False, "true or false", _parse_bool, lambda v: isinstance(v, bool))
    # internal: the front ends set these; people are not offered them
    stop_at_eos: bool = _setting(
        True, "true or false", _parse_bool, lambda v: isinstance(v, bool), user=False
    )
    candidates: int = _setting(  # how many next-token candidates each step reports
        5, "an integer from 1 to 50", int, lambda v: _is_int(v) and 1 <= v <= 50, user=False
    )

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not f.metadata["ok"](value):
                raise SettingsError(
                    f"{f.name}={value!r} is invalid: {f.name} must be {f.metadata['range']}"
                )

    @property
    def is_greedy(self) -> bool:
        return self.greedy or self.temperature < GREEDY_BELOW

    def updated(self, **changes: Any) -> Settings:
        """A copy with typed values changed (raises SettingsError, self unchanged)."""
        for key in changes:
            _known(key)
        return dataclasses.replace(self, **changes)

    def parsed(self, assignments: dict[str, str]) -> Settings:
        """A copy with settings given as strings (``{"top_k": "40"}``), as typed by a person."""
        changes: dict[str, Any] = {}
        for key, text in assignments.items():
            key = _known(key.strip().replace("-", "_"))
            text = text.strip()
            try:
                changes[key] = _FIELDS[key].metadata["parse"](text)
            except ValueError:
                raise SettingsError(
                    f"{key}={text!r} is invalid: {key} must be {_RANGES[key]}"
                ) from None
        return self.updated(**changes)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_FIELDS = {f.name: f for f in dataclasses.fields(Settings)}
_RANGES = {name: f.metadata["range"] for name, f in _FIELDS.items()}
# the settings people set (:set, its completions, the CLI); the rest are internal
USER_SETTINGS: tuple[str, ...] = tuple(n for n, f in _FIELDS.items() if f.metadata["user"])


def setting_range(name: str) -> str:
    """What a setting accepts, in words ("a number in (0, 1]")."""
    return _RANGES[_known(name)]


def _known(key: str) -> str:
    if key not in _FIELDS:
        raise SettingsError(f"unknown setting {key!r} (settings: {', '.join(USER_SETTINGS)})")
    return key


# -- the stages ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Scores:
    """Logits over the vocabulary, or over the part of it a cut kept (``ids``)."""

    z: np.ndarray  # (n,) logits, f32 from the model or f64 once scaled
    ids: np.ndarray | None = None  # (n,) token ids of z; None: z is the whole (V,)

    def take(self, keep: np.ndarray) -> Scores:
        """The entries at positions ``keep`` of z, ids following."""
        return Scores(self.z[keep], keep if self.ids is None else self.ids[keep])  # (n,) -> (m,)

    def token(self, i: int) -> int:
        return int(i) if self.ids is None else int(self.ids[i])


def _softmax(z: np.ndarray) -> np.ndarray:
    """Probabilities in float64, computed as the draw always has (max-shifted exp)."""
    z = z.astype(np.float64)  # (n,)
    p = np.exp(z - z.max())  # (n,)
    p /= p.sum()
    return p


def repetition_penalty(x: Scores, s: Settings, history: Sequence[int]) -> Scores:
    """CTRL's penalty: tokens already in the text get their logit divided by the penalty
    when positive and multiplied when negative, so either way they become less likely."""
    if s.repetition_penalty == 1.0 or len(history) == 0:
        return x
    z = x.z.copy()  # (V,)
    seen = np.unique(np.asarray(history, dtype=np.int64))  # (U,)
    seen = seen[seen < z.shape[0]]  # (U',)
    vals = z[seen]  # (U',)
    with np.errstate(over="ignore"):  # a huge negative logit times the penalty is -inf
        z[seen] = np.where(vals > 0, vals / s.repetition_penalty, vals * s.repetition_penalty)
    return Scores(z, x.ids)


def temperature(x: Scores, s: Settings, history: Sequence[int]) -> Scores:
    """Divides the logits by T: below 1 sharpens the distribution, above 1 flattens it.
    T = 0 is its limit, all the mass on the top logit (ties share it); so is any T below
    GREEDY_BELOW."""
    if s.temperature == 1.0:
        return x
    if s.temperature < GREEDY_BELOW:  # only explain() runs this stage for a greedy setting
        top = x.take(np.flatnonzero(x.z == x.z.max()))  # (V,) -> (t,) the tied maxima
        return Scores(np.zeros(top.z.shape), top.ids)  # (t,) equal logits: equal shares
    return Scores(x.z.astype(np.float64) / s.temperature, x.ids)  # (V,) -> (V,)


def top_k(x: Scores, s: Settings, history: Sequence[int]) -> Scores:
    """Keeps the k largest logits; the rest of the vocabulary can no longer be drawn."""
    if not s.top_k or s.top_k >= x.z.shape[0]:
        return x
    return x.take(np.argpartition(x.z, -s.top_k)[-s.top_k :])  # (V,) -> (k,) unordered


def top_p(x: Scores, s: Settings, history: Sequence[int]) -> Scores:
    """Nucleus sampling: keeps the most likely tokens until their mass reaches top_p
    (always at least one token)."""
    if s.top_p >= 1.0:
        return x
    probs = _softmax(x.z)  # (n,)
    order = np.argsort(-probs)  # (n,) most likely first
    cum = np.cumsum(probs[order])  # (n,)
    cut = int(np.searchsorted(cum, s.top_p)) + 1  # the shortest prefix reaching top_p
    return x.take(order[:cut])  # (n,) -> (m,) most likely first


@dataclass(frozen=True)
class Stage:
    name: str  # the setting it reads, so the pipeline view can show that setting's value
    apply: Callable[[Scores, Settings, Sequence[int]], Scores]  # returns x itself when off
    sampling_only: bool  # a warper in transformers' terms: greedy decoding skips it


STAGES: tuple[Stage, ...] = (
    Stage("repetition_penalty", repetition_penalty, sampling_only=False),
    Stage("temperature", temperature, sampling_only=True),
    Stage("top_k", top_k, sampling_only=True),
    Stage("top_p", top_p, sampling_only=True),
)


def top_ids(x: np.ndarray, n: int) -> np.ndarray:
    """The n largest entries' ids, largest first, ties to the lower id. (V,) -> (n,)

    Cheaper than an argpartition of the whole vocabulary (~30 us against ~500 us at
    V = 50,257): view x as (32, V // 32), take each column's maximum, and look only in the
    columns whose maximum reaches the n-th largest column maximum; every top-n entry is
    in one of them (or in the < 32 entries left over, which are always looked at)."""
    n = min(n, x.shape[0])
    rows = 32
    cols = x.shape[0] // rows
    cand = np.arange(x.shape[0])  # (V,)
    if cols > 4 * n:
        full = rows * cols
        cmax = x[:full].reshape(rows, cols).max(axis=0)  # (V,) -> (32, cols) -> (cols,)
        thr = np.partition(cmax, cols - n)[cols - n]  # the n-th largest column maximum
        hit = np.flatnonzero(cmax >= thr)  # (h,) h >= n
        near = (np.arange(rows)[:, None] * cols + hit).ravel()  # (32 * h,) their entries
        if near.shape[0] >= n:  # fewer only for NaN logits: then look at them all
            cand = np.concatenate([near, cand[full:]])  # (32 * h + V % 32,)
    order = np.lexsort((cand, -x[cand]))[:n]  # by value desc, then id
    return cand[order]


# -- the sampler ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    token_id: int
    prob: float  # the model's probability (softmax of the raw logits)
    chosen: bool


class Sampler:
    """Chooses each next token; seeded per generation so runs reproduce."""

    def __init__(self, settings: Settings):
        self.s = settings
        self.rng = np.random.default_rng(settings.seed)
        self.stages = tuple(st for st in STAGES if not (settings.is_greedy and st.sampling_only))

    def __call__(self, logits: np.ndarray, history: Sequence[int]) -> tuple[int, list[Candidate]]:
        """logits: (V,) for the next position; history: ids so far (for the penalty)."""
        raw = np.asarray(logits, dtype=np.float32)  # (V,)
        x = Scores(raw)
        for stage in self.stages:
            x = stage.apply(x, self.s, history)
        if self.s.is_greedy:
            token = x.token(np.argmax(x.z))
        else:
            token = x.token(self._draw(_softmax(x.z)))
        return token, self._candidates(raw, token)

    def explain(self, logits: np.ndarray, history: Sequence[int], token: int) -> Pipeline:
        """What each stage did for the step that chose ``token`` from these ``logits`` and
        ``history`` (the history as it was before ``token``). Draws no random number."""
        return pipeline(self.s, logits, history, token)

    def _draw(self, probs: np.ndarray) -> int:
        """Inverse-CDF draw: one uniform number per token, reproducible for a seed."""
        cum = np.cumsum(probs)
        return int(
            min(np.searchsorted(cum, self.rng.random() * cum[-1], side="right"), len(probs) - 1)
        )

    def _candidates(self, raw: np.ndarray, token: int) -> list[Candidate]:
        m = float(raw.max())
        with np.errstate(over="ignore"):  # -3e38 - 3e38 is -inf: exp gives 0, rightly
            total = float(np.exp(raw - m, dtype=np.float32).sum(dtype=np.float64))  # (V,) -> ()
        top = top_ids(raw, self.s.candidates)  # (k,) most likely first

        def prob(i: int) -> float:
            return float(np.exp(float(raw[i]) - m) / total)

        out = [Candidate(int(i), prob(int(i)), int(i) == token) for i in top]
        if token not in top:  # a sampled token outside the top k is still shown
            out.append(Candidate(token, prob(token), True))
        return out


# -- the pipeline probe --------------------------------------------------------------------


@dataclass(frozen=True)
class Pipeline:
    """The probabilities of a few tokens after each sampling stage, for one step.

    ``stages`` is ("logits", "repetition_penalty", "temperature", "top_k", "top_p"), plus
    "greedy" when the settings are greedy; column j of every row is the whole-vocabulary
    distribution after stage j (a cut sets the rest to 0 and renormalises).

    Greedy settings still show the temperature, top-k and top-p columns, as if sampling:
    a teacher changes T and wants to see what it does, and none of the three can change
    the argmax (T > 0 keeps the order, both cuts keep the top token), so the pick is the
    same either way. The final "greedy" column is then the one-hot on the pick, which is
    what the draw uses: entropy 0 bits and chosen_prob 1.
    """

    stages: tuple[str, ...]
    active: tuple[bool, ...]  # False where the stage changed nothing (its setting is off)
    kept: tuple[int, ...]  # tokens with a probability > 0 after each stage
    rows: tuple[tuple[int, tuple[float, ...]], ...]  # (token_id, a prob per stage)
    entropy_bits: float  # of the final distribution
    token: int  # the chosen token
    chosen_rank: int  # 1 + how many raw logits are larger: 1 = the model's favourite
    chosen_prob: float  # its probability in the final distribution


def stage_distributions(
    settings: Settings, logits: np.ndarray, history: Sequence[int]
) -> list[tuple[str, bool, np.ndarray]]:
    """(name, active, (V,) probabilities) for the raw logits ("logits") and after each
    stage: the softmax of what the stage handed on, 0 where a cut removed the token.
    ``active`` is False where the stage changed nothing (its setting is off)."""
    raw = np.asarray(logits, dtype=np.float32)  # (V,)

    def dense(x: Scores) -> np.ndarray:  # stage output -> (V,) probabilities
        if x.ids is None:
            return _softmax(x.z)
        p = np.zeros(raw.shape[0])  # (V,)
        p[x.ids] = _softmax(x.z)  # (n,) scattered into (V,)
        return p

    x = Scores(raw)
    out = [("logits", True, dense(x))]
    for stage in STAGES:
        y = stage.apply(x, settings, history)
        out.append((stage.name, y is not x, dense(y) if y is not x else out[-1][2]))
        x = y
    return out


def pipeline(
    settings: Settings, logits: np.ndarray, history: Sequence[int], token: int
) -> Pipeline:
    """Runs every stage again on these logits and reports the rows of the top
    ``settings.candidates`` raw tokens, plus the chosen one when it is not among them.
    Costs a few (V,) softmaxes: call it only while someone is looking."""
    raw = np.asarray(logits, dtype=np.float32)  # (V,)
    columns = stage_distributions(settings, raw, history)
    if settings.is_greedy:
        one_hot = np.zeros(raw.shape[0])  # (V,)
        one_hot[token] = 1.0
        columns.append(("greedy", True, one_hot))
    dists = [d for _, _, d in columns]
    final = dists[-1]  # (V,)
    live = final[final > 0]  # (n,)
    shown = [int(i) for i in top_ids(raw, settings.candidates)]
    if token not in shown:
        shown.append(int(token))
    return Pipeline(
        stages=tuple(name for name, _, _ in columns),
        active=tuple(on for _, on, _ in columns),
        kept=tuple(int(np.count_nonzero(d)) for d in dists),
        rows=tuple((i, tuple(float(d[i]) for d in dists)) for i in shown),
        entropy_bits=float(0.0 - (live * np.log2(live)).sum()),  # 0.0 -: never -0.0
        token=int(token),
        chosen_rank=int(np.count_nonzero(raw > raw[token])) + 1,
        chosen_prob=float(final[token]),
    )
