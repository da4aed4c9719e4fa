"""The sampling pipeline probe against an independent NumPy computation, and the staged
sampler against a frozen copy of the draw it replaced (same seed, same tokens)."""

import itertools

import numpy as np
import pytest

from gpt2core import sampling
from gpt2core.sampling import Pipeline, Sampler, Settings, stage_distributions

GRID = list(
    itertools.product(
        [0.5, 1.0, 1.7],  # temperature
        [0, 1, 5, 50],  # top_k
        [0.3, 0.9, 1.0],  # top_p
        [1.0, 1.3],  # repetition_penalty
    )
)
STAGES = ("logits", "repetition_penalty", "temperature", "top_k", "top_p")


# -- the reference: transformers' recipe written out on the whole vocabulary ---------------


def _softmax(x):
    e = np.exp(x - x.max())
    return e / e.sum()


def reference(logits, history, t, k, p, r):
    """(V,) probabilities after each stage, masking removed tokens with -inf the way
    transformers' logits processors do; ties at a cut keep the lower ids. Also returns
    the logits after the penalty."""
    x = np.array(logits, dtype=np.float32)
    cols = [_softmax(x.astype(np.float64))]
    if r != 1.0:
        with np.errstate(over="ignore"):  # -3e38 * 1.3 is -inf in float32, as it should be
            for i in set(history):  # in the logits' own dtype, as transformers does
                x[i] = x[i] / np.float32(r) if x[i] > 0 else x[i] * np.float32(r)
    x = x.astype(np.float64)
    penalised = x.copy()
    cols.append(_softmax(x))
    x = x / t
    cols.append(_softmax(x))
    ids = np.arange(x.shape[0])
    if 0 < k < x.shape[0]:
        keep = np.lexsort((ids, -x))[:k]
        x = np.where(np.isin(ids, keep), x, -np.inf)
    cols.append(_softmax(x))
    if p < 1.0:
        probs = _softmax(x)
        order = np.lexsort((ids, -probs))
        mass_before = np.concatenate([[0.0], np.cumsum(probs[order])[:-1]])
        x = np.where(np.isin(ids, order[mass_before < p]), x, -np.inf)
    cols.append(_softmax(x))
    return cols, penalised


def _logits(kind, rng, vocab=1000):
    x = rng.standard_normal(vocab).astype(np.float32) * 3
    if kind == "ties":
        x = np.round(x / 2).astype(np.float32)  # a few distinct values, many equal
    elif kind == "flat":
        x = np.zeros(64, np.float32)  # every token equally likely
    elif kind == "-inf":
        x[rng.random(vocab) < 0.97] = -np.inf  # ~30 finite: fewer than top_k = 50
    elif kind == "huge":
        x[7] = 3e38  # all the mass on one token, whatever the temperature
        x[8] = -3e38
    return x


def _history(x, rng):
    top = np.argsort(-x)[:3]  # the favourites were already said: the penalty matters
    return [int(i) for i in top] + [int(i) for i in rng.integers(0, x.shape[0], 20)] + [8]


def _check_columns(got, want, exact):
    for (name, _, g), w, stage in zip(got, want, STAGES, strict=True):
        assert name == stage
        assert g.shape == w.shape and np.isclose(g.sum(), 1.0)
        # which of several equal logits a cut keeps is arbitrary: the multiset is not
        np.testing.assert_allclose(np.sort(g), np.sort(w), rtol=1e-5, atol=1e-12, err_msg=name)
        if exact:
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("kind", ["random", "ties", "flat", "-inf", "huge"])
def test_stages_match_an_independent_computation(kind):
    rng = np.random.default_rng(sum(map(ord, kind)))
    for t, k, p, r in GRID:
        x = _logits(kind, rng)
        hist = _history(x, rng)
        s = Settings(temperature=t, top_k=k, top_p=p, repetition_penalty=r, seed=0)
        want, pen = reference(x, hist, t, k, p, r)
        got = stage_distributions(s, x, hist)
        _check_columns(got, want, exact=kind in ("random", "huge"))
        assert [on for _, on, _ in got] == [True, r != 1.0, t != 1.0, 0 < k < x.size, p < 1.0]

        sampler = Sampler(s)
        for _ in range(10):
            token, cands = sampler(x, hist)
            pipe = sampler.explain(x, hist, token)
            final = want[-1]
            assert isinstance(pipe, Pipeline) and pipe.stages == STAGES
            assert pipe.token == token and pipe.chosen_prob > 0  # inside the final support
            if kind in ("random", "huge"):
                assert final[token] > 0
                np.testing.assert_allclose(pipe.chosen_prob, final[token], rtol=1e-5)
            else:  # ties: any of several equal tokens may be the kept one, not a lesser one
                assert got[-1][2][token] > 0
                assert pen[token] >= pen[final > 0].min()
            live = final[final > 0]
            assert pipe.entropy_bits == pytest.approx(-(live * np.log2(live)).sum(), abs=1e-6)
            assert pipe.chosen_rank == 1 + np.sum(x > x[token])
            assert pipe.kept == tuple(int(np.count_nonzero(c)) for c in want)
            assert [i for i, _ in pipe.rows[: len(cands)]] == [c.token_id for c in cands]
            assert token in [i for i, _ in pipe.rows]
            for i, probs in pipe.rows:
                want_row = [c[i] for c in want] if kind in ("random", "huge") else None
                if want_row is not None:
                    np.testing.assert_allclose(probs, want_row, rtol=1e-5, atol=1e-12)
                np.testing.assert_allclose(probs[0], cands_prob(cands, i, x), rtol=1e-5)


def cands_prob(cands, i, x):
    """The probe's first column is the same softmax the candidates report."""
    for c in cands:
        if c.token_id == i:
            return c.prob
    return _softmax(x.astype(np.float64))[i]


def test_rows_are_the_top_candidates_and_the_chosen_token():
    x = np.log(np.array([1, 2, 4, 8, 16, 32, 64], np.float32))
    s = Settings(top_k=0, temperature=50.0, candidates=2, seed=4)  # nearly uniform draws
    sampler = Sampler(s)
    seen_outside = False
    for _ in range(50):
        token, _ = sampler(x, [])
        pipe = sampler.explain(x, [], token)
        ids = [i for i, _ in pipe.rows]
        assert ids[:2] == [6, 5]
        assert ids[2:] == ([] if token in (5, 6) else [token])
        assert pipe.chosen_rank == 7 - token
        seen_outside |= token < 5
    assert seen_outside


def test_draws_follow_the_final_column():
    """The probe shows what the sampler does: draw frequencies match its last column."""
    x = np.array([3.0, 2.5, 2.0, 1.5, 1.0, 0.5, 0.0, -1.0, -2.0, -3.0], np.float32)
    for t, k, p, r in [(0.7, 6, 0.8, 1.3), (1.5, 0, 0.95, 1.0), (1.0, 3, 1.0, 2.0)]:
        s = Settings(temperature=t, top_k=k, top_p=p, repetition_penalty=r, seed=11)
        sampler = Sampler(s)
        n = 6000
        counts = np.bincount([sampler(x, [0])[0] for _ in range(n)], minlength=x.size)
        final = stage_distributions(s, x, [0])[-1][2]
        assert np.all(counts[final == 0] == 0)
        np.testing.assert_allclose(counts / n, final, atol=0.02)


def test_greedy_shows_the_stages_then_a_one_hot():
    rng = np.random.default_rng(5)
    x = _logits("random", rng)
    hist = _history(x, rng)
    s = Settings(greedy=True, temperature=0.7, top_k=5, top_p=0.5, repetition_penalty=1.3)
    token, _ = Sampler(s)(x, hist)
    pipe = Sampler(s).explain(x, hist, token)
    want, _ = reference(x, hist, 0.7, 5, 0.5, 1.3)
    assert pipe.stages == (*STAGES, "greedy")
    assert token == int(np.argmax(want[1]))  # the argmax after the penalty...
    assert all(int(np.argmax(c)) == token for c in want[1:])  # ...which no warper moves
    for i, probs in pipe.rows:
        np.testing.assert_allclose(probs[:-1], [c[i] for c in want], rtol=1e-5, atol=1e-12)
        assert probs[-1] == (1.0 if i == token else 0.0)
    assert pipe.entropy_bits == 0.0 and pipe.chosen_prob == 1.0 and pipe.kept[-1] == 1


def test_temperature_zero_is_its_limit():
    x = np.array([1.0, 3.0, -2.0, 3.0, 0.5], np.float32)  # two equal favourites
    s = Settings(temperature=0.0)
    token, _ = Sampler(s)(x, [])
    assert token == 1  # argmax: the first of equals
    cols = dict((n, c) for n, _, c in stage_distributions(s, x, []))
    np.testing.assert_array_equal(cols["temperature"], [0, 0.5, 0, 0.5, 0])
    pipe = Sampler(s).explain(x, [], token)
    assert pipe.stages[-1] == "greedy" and pipe.chosen_prob == 1.0


def test_the_probe_costs_nothing_when_off(monkeypatch):
    """No view open: the sampler never builds the pipeline and never softmaxes the whole
    vocabulary (the probe's cost); only the k or fewer survivors of the cuts."""

    def boom(*a, **k):
        raise AssertionError("the pipeline was computed")

    sizes = []
    real_softmax = sampling._softmax

    def counting_softmax(z):
        sizes.append(z.shape[0])
        return real_softmax(z)

    monkeypatch.setattr(sampling, "pipeline", boom)
    monkeypatch.setattr(sampling, "stage_distributions", boom)
    monkeypatch.setattr(sampling, "_softmax", counting_softmax)
    rng = np.random.default_rng(0)
    x = _logits("random", rng, vocab=5000)
    for t, k, p, r in GRID:
        sizes.clear()
        sampler = Sampler(Settings(temperature=t, top_k=k, top_p=p, repetition_penalty=r))
        for _ in range(3):
            sampler(x, [1, 2, 3])
        if k:
            assert max(sizes) <= k
        assert len(sizes) == 3 * (1 + (p < 1.0))  # the draw, and top-p's own
    sizes.clear()
    Sampler(Settings(greedy=True, top_p=0.5, repetition_penalty=1.3))(x, [1])
    assert sizes == []


# -- the staged sampler draws exactly the tokens the sampler it replaced drew ----------------


def _old_call(s, rng, logits, history):
    """The sampler before the stages, frozen: argpartition's order, one uniform number per
    token, inverse CDF."""
    scores = np.asarray(logits, dtype=np.float32)
    if s.repetition_penalty != 1.0 and history:
        scores = scores.copy()
        seen = np.unique(np.asarray(history, dtype=np.int64))
        vals = scores[seen]
        r = s.repetition_penalty
        scores[seen] = np.where(vals > 0, vals / r, vals * r)
    if s.is_greedy:
        return int(np.argmax(scores))
    ids = None
    if s.top_k and s.top_k < scores.shape[0]:
        ids = np.argpartition(scores, -s.top_k)[-s.top_k :]
        scores = scores[ids]
    z = scores.astype(np.float64) / s.temperature
    probs = np.exp(z - z.max())
    probs /= probs.sum()
    keep = np.arange(probs.shape[0])
    if s.top_p < 1.0:
        order = np.argsort(-probs)
        cut = int(np.searchsorted(np.cumsum(probs[order]), s.top_p)) + 1
        keep = order[:cut]
        probs = probs[keep] / probs[keep].sum()
    cum = np.cumsum(probs)
    j = min(np.searchsorted(cum, rng.random() * cum[-1], side="right"), len(probs) - 1)
    choice = keep[j]
    return int(ids[choice]) if ids is not None else int(choice)


@pytest.mark.parametrize("vocab", [1000, 50257])
def test_same_seed_same_tokens_as_before(vocab):
    rng = np.random.default_rng(vocab)
    steps = 40 if vocab == 1000 else 4
    for t, k, p, r in [*GRID, (0.0, 50, 1.0, 1.3)]:
        for greedy in (False, True) if t == 1.0 and k == 50 else (False,):
            s = Settings(
                temperature=t, top_k=k, top_p=p, repetition_penalty=r, greedy=greedy, seed=9
            )
            sampler, old_rng = Sampler(s), np.random.default_rng(9)
            hist = [int(i) for i in rng.integers(0, vocab, 10)]
            for step in range(steps):
                x = rng.standard_normal(vocab).astype(np.float32) * 3
                if step % 3 == 0:
                    x = np.round(x).astype(np.float32)  # ties: argpartition's order matters
                want = _old_call(s, old_rng, x, hist)
                got, _ = sampler(x, hist)
                assert got == want, (s, step)
                hist.append(got)
