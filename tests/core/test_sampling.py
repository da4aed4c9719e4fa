"""The sampler draws from the distribution the settings describe."""

import numpy as np

from gpt2core.sampling import Sampler, Settings

LOGITS = np.log(np.array([1, 2, 4, 8], np.float32))  # probabilities 1/15, 2/15, 4/15, 8/15


def _freq(settings, n=20000):
    sampler = Sampler(settings)
    counts = np.bincount([sampler(LOGITS, [])[0] for _ in range(n)], minlength=4)
    return counts / n


def test_plain_sampling_matches_the_softmax():
    f = _freq(Settings(top_k=0, seed=0))
    np.testing.assert_allclose(f, np.array([1, 2, 4, 8]) / 15, atol=0.015)


def test_temperature_top_k_and_top_p():
    hot = _freq(Settings(top_k=0, temperature=1e6, seed=1))  # ~uniform
    np.testing.assert_allclose(hot, 0.25, atol=0.015)
    k2 = _freq(Settings(top_k=2, seed=2))  # only the two largest: 1/3, 2/3
    assert k2[0] == k2[1] == 0
    np.testing.assert_allclose(k2[2:], [1 / 3, 2 / 3], atol=0.015)
    p = _freq(Settings(top_k=0, top_p=0.5, seed=3), 2000)  # the top token alone has 8/15
    assert p[3] == 1.0


def test_repetition_penalty_and_candidates():
    s = Sampler(Settings(greedy=True, repetition_penalty=100.0))
    token, cands = s(LOGITS, history=[3])  # the favourite was already said
    assert token == 2
    assert [c.token_id for c in cands[:4]] == [3, 2, 1, 0]
    np.testing.assert_allclose([c.prob for c in cands[:4]], np.array([8, 4, 2, 1]) / 15, rtol=1e-5)
    assert [c.chosen for c in cands[:4]] == [False, True, False, False]
