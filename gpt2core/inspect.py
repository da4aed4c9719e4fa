"""One look inside: a forward pass over a prompt, and for the next token the candidates,
the logit lens (what each layer would predict) and where each layer's heads look.

The same data the app's views show while a reply streams, for one position, as a value
(``Inspection``) that ``gpt2 inspect`` prints as tables or JSON and line mode's
``:inspect`` prints as text. Both backends give it: gpt2core from its compiled step,
transformers from ``output_attentions`` / ``output_hidden_states``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gpt2core.generate import LanguageModel, PromptEvent, TokenEvent
from gpt2core.sampling import Settings
from gpt2core.tokenizer import piece


@dataclass(frozen=True)
class Inspection:
    model: str
    input_ids: list[int]
    pieces: list[str]
    next: list[tuple[int, float]]  # the model's most likely next tokens, with probabilities
    lens: list[list[tuple[int, float]]]  # per layer, its top tokens (last row = the model's)
    attention: np.ndarray  # (n_layer, n_head, T): the last position's weights over the prompt
    entropy_bits: float  # of the model's next-token distribution
    dropped_tokens: int = 0
    # (n_layer, n_head, T, T): every position's weights, row q over keys 0..q; only for
    # prompts of up to GRID_MAX tokens (None otherwise). Its last row is ``attention``.
    attention_grid: np.ndarray | None = None

    def most_attended(self, layer: int, k: int = 3) -> list[tuple[int, float]]:
        """(position, weight) of the k positions layer ``layer`` looks at most, heads averaged."""
        row = self.attention[layer].mean(axis=0)  # (nh, T) -> (T,)
        order = np.argsort(-row)[:k]
        return [(int(i), float(row[i])) for i in order]

    def strongest_head(self, layer: int) -> tuple[int, int, float]:
        """(head, position, weight): the head of ``layer`` that puts the most weight on a
        single position, and that position."""
        att = self.attention[layer]  # (nh, T)
        head, pos = np.unravel_index(int(np.argmax(att)), att.shape)
        return int(head), int(pos), float(att[head, pos])

    def first_layer_of_final_pick(self) -> int | None:
        """The first layer whose top token is already the model's final top token."""
        final = self.lens[-1][0][0]
        return next((i for i, row in enumerate(self.lens) if row and row[0][0] == final), None)

    def as_json(self) -> dict:
        return {
            "model": self.model,
            "input_ids": self.input_ids,
            "pieces": self.pieces,
            "next": [[i, round(p, 6)] for i, p in self.next],
            "lens": [[[i, round(p, 6)] for i, p in row] for row in self.lens],
            "attention": np.round(self.attention, 6).tolist(),
            "entropy_bits": round(self.entropy_bits, 6),
            "dropped_tokens": self.dropped_tokens,
            "attention_grid": None
            if self.attention_grid is None
            else np.round(self.attention_grid, 6).tolist(),
        }


def inspect(lm: LanguageModel, prompt: str, top: int = 5) -> Inspection:
    """Run ``prompt`` through ``lm`` once and look at the position after it."""
    top = max(1, min(int(top), 10))
    # no cuts and temperature 1: the pipeline's final distribution is the model's own
    settings = Settings(max_new_tokens=1, temperature=1.0, top_k=0, top_p=1.0, seed=0,
                        candidates=top)  # fmt: skip
    probes = frozenset({"attention", "attention_grid", "lens", "pipeline"})
    prompt_event = token = None
    for event in lm.stream(prompt, settings, probes=probes):
        if isinstance(event, PromptEvent):
            prompt_event = event
        elif isinstance(event, TokenEvent):
            token = event
    assert prompt_event is not None and token is not None and token.probes is not None
    ids = prompt_event.input_ids
    grid = token.probes.get("attention_grid")  # (L, nh, T, T) while T <= GRID_MAX
    if grid is not None and np.shape(grid)[-1] != len(ids):
        grid = None
    # the candidates are the top ``top`` by the model's probability (a sampled token from
    # outside them is appended last; the sort and the cut drop it)
    cands = sorted(((c.token_id, c.prob) for c in token.candidates), key=lambda x: -x[1])
    cands = cands[:top]
    return Inspection(
        model=lm.name,
        input_ids=list(ids),
        pieces=[piece(lm.tokenizer, i) for i in ids],
        next=cands,
        lens=[row[:top] for row in token.probes["lens"]],
        attention=np.asarray(token.probes["attention"]),
        entropy_bits=float(token.probes["pipeline"].entropy_bits),
        dropped_tokens=prompt_event.dropped_tokens,
        attention_grid=None if grid is None else np.asarray(grid),
    )
