"""The architecture is GPT-2's: causal, pre-LN, eps 1e-5, tied head, GPT-2's init."""

import numpy as np
import pytest

from gpt2core.config import GPT2Config, preset


@pytest.fixture(scope="module")
def tiny():
    from gpt2core.model import GPT2

    return GPT2(preset("tiny")).build_weights()


def test_causal_mask_future_tokens_do_not_change_the_past(tiny):
    import tensorflow as tf

    a = np.array([[10, 20, 30, 40, 50, 60]], np.int32)
    b = a.copy()
    b[0, 4:] = [999, 1234]
    la, lb = tiny(tf.constant(a)).numpy(), tiny(tf.constant(b)).numpy()
    np.testing.assert_allclose(la[:, :4], lb[:, :4], atol=1e-6)
    assert np.abs(la[:, 4:] - lb[:, 4:]).max() > 1e-4  # and the future does change


def test_structure_matches_gpt2(tiny):
    from gpt2core.weights import hf_variables

    names = set(hf_variables(tiny))
    assert "lm_head.weight" not in names  # tied to wte
    assert {
        "wte.weight",
        "wpe.weight",
        "h.0.attn.c_attn.weight",
        "h.1.mlp.c_proj.bias",
        "ln_f.weight",
    } <= names
    assert (
        sum(int(np.prod(v.shape)) for v in hf_variables(tiny).values()) == tiny.config.num_params()
    )
    for ln in (tiny.h[0].ln_1, tiny.h[0].ln_2, tiny.ln_f):
        assert ln.epsilon == 1e-5
    assert tuple(tiny.h[0].attn.c_attn.kernel.shape) == (32, 96)  # fused qkv, [in, out]


def test_init_follows_gpt2():
    from gpt2core.model import GPT2

    cfg = GPT2Config(n_layer=8, n_head=4, n_embd=256, n_positions=64, vocab_size=1000)
    m = GPT2(cfg).build_weights()
    std = lambda v: float(np.std(v.numpy()))  # noqa: E731
    assert std(m.wte.embeddings) == pytest.approx(0.02, rel=0.05)
    assert std(m.h[0].mlp.c_fc.kernel) == pytest.approx(0.02, rel=0.05)
    assert std(m.h[0].mlp.c_proj.kernel) == pytest.approx(0.02 / np.sqrt(16), rel=0.05)
    assert std(m.h[0].attn.c_proj.kernel) == pytest.approx(0.02 / np.sqrt(16), rel=0.05)


def test_cached_decoding_equals_full_forward(tiny):
    import tensorflow as tf

    ids = np.random.RandomState(1).randint(0, 50257, (1, 12)).astype(np.int32)
    full = tiny(tf.constant(ids)).numpy()
    cache = tiny.init_cache(1, 16)
    logits, _, cache = tiny.call_with_cache(tf.constant(ids[:, :8]), cache, 0)
    steps = [logits.numpy()]
    for t in range(8, 12):
        logits, _, cache = tiny.call_with_cache(tf.constant(ids[:, t : t + 1]), cache, t)
        steps.append(logits.numpy())
    np.testing.assert_allclose(np.concatenate(steps, axis=1), full, atol=1e-5)


def test_build_weights_makes_what_a_first_call_makes():
    """``build_weights`` builds layer by layer instead of tracing a first call: the same
    variables in the same order, with the same paths, and the same random init under one
    seed (so runs saved before keep their ``model/{i}`` state and their seeds' weights)."""
    import re

    import keras
    import tensorflow as tf

    from gpt2core.model import GPT2

    cfg = GPT2Config(vocab_size=61, n_positions=16, n_layer=2, n_head=2, n_embd=8, dropout=0.1)
    keras.utils.set_random_seed(5)
    built = GPT2(cfg, name="gpt2").build_weights()
    keras.utils.set_random_seed(5)
    called = GPT2(cfg, name="gpt2")
    called(tf.zeros([1, 1], tf.int32))  # Keras' own lazy build

    def paths(model):  # a dropout's seed state is numbered by how many were made before
        return [re.sub(r"seed_generator_\d+", "seed_generator", v.path) for v in model.variables]

    assert paths(built) == paths(called)
    assert paths(built)[0] == "gpt2/wte/embeddings"
    assert len(built.variables) > len(built.trainable_variables)  # dropout seeds included
    for a, b in zip(built.variables, called.variables, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    x = tf.constant([[1, 2, 3]])
    np.testing.assert_array_equal(built(x).numpy(), called(x).numpy())
