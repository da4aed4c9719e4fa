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


def test_a_temperature_near_zero_is_greedy_without_overflow_or_warnings():
    """temperature=1e-320 (a hostile probe's): dividing the logits by it made them infinite
    and the probabilities NaN, so the draw was garbage ('zzzz...'), with numpy warnings."""
    import warnings

    from gpt2core.sampling import GREEDY_BELOW

    rng = np.random.default_rng(0)
    for logits in (rng.normal(size=50), -np.abs(rng.normal(size=50)) - 5):  # (V,) mixed, all < 0
        want = int(np.argmax(logits))
        for t in (1e-320, 5e-324, 1e-300, GREEDY_BELOW / 2):
            s = Settings(temperature=t, top_k=0, seed=1)
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # any RuntimeWarning fails the test
                token, cands = Sampler(s)(logits, [])
                pipe = Sampler(s).explain(logits, [], token)
            assert s.is_greedy and token == want, (t, token, want)
            assert all(np.isfinite(c.prob) for c in cands)
            assert pipe is not None
    # just above the threshold it samples, from a very sharp distribution
    assert not Settings(temperature=GREEDY_BELOW).is_greedy


def test_a_repetition_penalty_outside_its_range_is_refused():
    import pytest

    from gpt2core.sampling import SettingsError

    for bad in (1e-320, 0.001, 0.0, -1.0, 101.0, float("inf"), float("nan")):
        with pytest.raises(SettingsError):
            Settings().updated(repetition_penalty=bad).validate()
    for ok in (0.01, 1.0, 1.3, 100.0):
        Settings().updated(repetition_penalty=ok).validate()
