"""Generation settings and the next-token sampler shared by every backend.

The sampler runs on the host in NumPy on one (V,) logits vector per step: it costs
well under a millisecond at V = 50,257, and it makes "same seed, same settings, same
output" true for both backends alike. The order of the logits processors is
transformers' own: repetition penalty, temperature, top-k, top-p.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from gpt2core.errors import UserError


class SettingsError(UserError):
    """A setting out of range or of the wrong type; the message names it and its range."""


_RANGES = {
    "temperature": "a number >= 0 (0 means greedy)",
    "top_k": "an integer >= 0 (0 turns it off)",
    "top_p": "a number in (0, 1]",
    "repetition_penalty": "a number > 0 (1 turns it off)",
    "max_new_tokens": "an integer >= 1",
    "seed": "an integer >= 0, or 'none'",
    "greedy": "true or false",
    "stop_at_eos": "true or false",
    "candidates": "an integer from 1 to 50",
}


@dataclass(frozen=True)
class Settings:
    max_new_tokens: int = 64
    temperature: float = 1.0
    top_k: int = 50
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    greedy: bool = False
    seed: int | None = None
    stop_at_eos: bool = True
    candidates: int = 5  # how many next-token candidates each step reports

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        def bad(name: str) -> SettingsError:
            return SettingsError(
                f"{name}={getattr(self, name)!r} is invalid: {name} must be {_RANGES[name]}"
            )

        def is_int(v):
            return isinstance(v, int | np.integer) and not isinstance(v, bool)

        def is_num(v):
            return (is_int(v) or isinstance(v, float)) and np.isfinite(v)

        if not is_num(self.temperature) or self.temperature < 0:
            raise bad("temperature")
        if not is_int(self.top_k) or self.top_k < 0:
            raise bad("top_k")
        if not is_num(self.top_p) or not 0 < self.top_p <= 1:
            raise bad("top_p")
        if not is_num(self.repetition_penalty) or self.repetition_penalty <= 0:
            raise bad("repetition_penalty")
        if not is_int(self.max_new_tokens) or self.max_new_tokens < 1:
            raise bad("max_new_tokens")
        if self.seed is not None and (not is_int(self.seed) or self.seed < 0):
            raise bad("seed")
        if not isinstance(self.greedy, bool):
            raise bad("greedy")
        if not isinstance(self.stop_at_eos, bool):
            raise bad("stop_at_eos")
        if not is_int(self.candidates) or not 1 <= self.candidates <= 50:
            raise bad("candidates")

    @property
    def is_greedy(self) -> bool:
        return self.greedy or self.temperature == 0

    def updated(self, **changes: Any) -> Settings:
        """A copy with typed values changed (raises SettingsError, self unchanged)."""
        unknown = [k for k in changes if k not in _RANGES]
        if unknown:
            raise SettingsError(f"unknown setting {unknown[0]!r} (settings: {', '.join(_RANGES)})")
        return dataclasses.replace(self, **changes)

    def parsed(self, assignments: dict[str, str]) -> Settings:
        """A copy with settings given as strings (``{"top_k": "40"}``), as typed by a person."""
        changes: dict[str, Any] = {}
        for key, text in assignments.items():
            key = key.strip().replace("-", "_")
            if key not in _RANGES:
                raise SettingsError(f"unknown setting {key!r} (settings: {', '.join(_RANGES)})")
            changes[key] = _parse(key, text.strip())
        return self.updated(**changes)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _parse(key: str, text: str) -> Any:
    err = SettingsError(f"{key}={text!r} is invalid: {key} must be {_RANGES[key]}")
    kind = {f.name: f.type for f in dataclasses.fields(Settings)}[key]
    if kind == "bool":
        low = text.lower()
        if low in ("true", "on", "yes", "1"):
            return True
        if low in ("false", "off", "no", "0"):
            return False
        raise err
    if key == "seed" and text.lower() in ("none", "random", ""):
        return None
    try:
        if "int" in kind:
            return int(text)
        value = float(text)
    except ValueError:
        raise err from None
    if not np.isfinite(value):
        raise err
    return value


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

    def __call__(self, logits: np.ndarray, history: list[int]) -> tuple[int, list[Candidate]]:
        """logits: (V,) for the next position; history: ids so far (for the penalty)."""
        raw = np.asarray(logits, dtype=np.float32)  # (V,)
        scores = raw
        s = self.s
        if s.repetition_penalty != 1.0 and history:
            scores = raw.copy()
            seen = np.unique(np.asarray(history, dtype=np.int64))  # (U,)
            seen = seen[seen < scores.shape[0]]
            vals = scores[seen]
            scores[seen] = np.where(
                vals > 0, vals / s.repetition_penalty, vals * s.repetition_penalty
            )
        if s.is_greedy:
            token = int(np.argmax(scores))
        else:
            token = self._sample(scores)
        return token, self._candidates(raw, token)

    def _sample(self, scores: np.ndarray) -> int:
        s = self.s
        ids = None  # None: the whole vocabulary
        if s.top_k and s.top_k < scores.shape[0]:
            ids = np.argpartition(scores, -s.top_k)[-s.top_k :]  # (k,) the k largest
            scores = scores[ids]  # (k,)
        z = scores.astype(np.float64) / s.temperature  # (k|V,)
        probs = np.exp(z - z.max())  # (k|V,)
        probs /= probs.sum()
        if s.top_p < 1.0:
            order = np.argsort(-probs)  # most likely first
            cum = np.cumsum(probs[order])
            # keep the smallest prefix whose mass reaches top_p (always at least one token)
            cut = int(np.searchsorted(cum, s.top_p)) + 1
            keep = order[:cut]
            probs_kept = probs[keep] / probs[keep].sum()
            choice = keep[self._draw(probs_kept)]
        else:
            choice = self._draw(probs)
        return int(ids[choice]) if ids is not None else int(choice)

    def _draw(self, probs: np.ndarray) -> int:
        """Inverse-CDF draw: one uniform number per token, reproducible for a seed."""
        cum = np.cumsum(probs)
        return int(
            min(np.searchsorted(cum, self.rng.random() * cum[-1], side="right"), len(probs) - 1)
        )

    def _candidates(self, raw: np.ndarray, token: int) -> list[Candidate]:
        k = min(self.s.candidates, raw.shape[0])
        m = float(raw.max())
        total = float(
            np.exp(raw - m, dtype=np.float32).sum(dtype=np.float64)
        )  # softmax denominator
        top = np.argpartition(-raw, k - 1)[:k]  # (k,) unordered
        top = top[np.argsort(-raw[top])]  # (k,) most likely first

        def prob(i: int) -> float:
            return float(np.exp(float(raw[i]) - m) / total)

        out = [Candidate(int(i), prob(int(i)), int(i) == token) for i in top]
        if token not in top:  # a sampled token outside the top k is still shown
            out.append(Candidate(token, prob(token), True))
        return out
