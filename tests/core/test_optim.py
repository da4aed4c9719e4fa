"""The flat AdamW against Keras' AdamW: the same steps, the same state layout, so a run saved
by one optimizer resumes on the other."""

import numpy as np
import pytest

from gpt2core.config import GPT2Config
from gpt2core.optim import FlatAdamW, KerasAdamW, decays

CFG = GPT2Config(vocab_size=61, n_positions=16, n_layer=2, n_head=2, n_embd=8)
ADAMW = dict(beta_1=0.9, beta_2=0.99, weight_decay=0.1, epsilon=1e-8)


def _model(seed=3):
    from gpt2core._tf import keras
    from gpt2core.model import GPT2

    keras.utils.set_random_seed(seed)
    return GPT2(CFG).build_weights()


def _grads(model, n, seed=7):
    """n steps of random gradients, large and small (Adam's update depends on their scale)."""
    rng = np.random.default_rng(seed)
    return [
        [
            rng.normal(0, 10.0 ** rng.integers(-4, 1), v.shape).astype(np.float32)
            for v in model.trainable_variables
        ]
        for _ in range(n)
    ]


def _optimizer(kind, model):
    """``kind`` over the model's weights; its learning rate follows its own step count, as
    the trainer's schedule does."""
    opt = kind(model.trainable_variables, learning_rate=lambda: lr(opt), **ADAMW)
    return opt


def _pair():
    """Two models with the same weights, one under each optimizer."""
    a, b = _model(), _model()
    for va, vb in zip(a.trainable_variables, b.trainable_variables, strict=True):
        np.testing.assert_array_equal(va.numpy(), vb.numpy())
    return a, _optimizer(FlatAdamW, a), b, _optimizer(KerasAdamW, b)


def lr(opt):
    from gpt2core._tf import tf

    return 1e-2 / tf.cast(opt.iterations + 1, tf.float32)  # () changes every step


def _run(opt, grads):
    from gpt2core._tf import graph_function, tf

    step = graph_function(lambda *g: opt.apply(list(g)))
    for g in grads:
        step(*[tf.constant(x) for x in g])


def _assert_same(model_a, opt_a, model_b, opt_b):
    for va, vb in zip(model_a.trainable_variables, model_b.trainable_variables, strict=True):
        np.testing.assert_allclose(va.numpy(), vb.numpy(), rtol=1e-5, atol=1e-7, err_msg=va.name)
    sa, sb = opt_a.state(), opt_b.state()
    assert [np.shape(x) for x in sa] == [np.shape(x) for x in sb]
    assert int(sa[0]) == int(sb[0])
    for x, y in zip(sa[1:], sb[1:], strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-12)


def test_flat_adamw_takes_the_steps_keras_adamw_takes():
    a, flat, b, ref = _pair()
    grads = _grads(a, 6)
    _run(flat, grads)
    _run(ref, grads)
    moved = [
        np.abs(va.numpy() - vb).max()
        for va, vb in zip(
            a.trainable_variables, [v.numpy() for v in _model().trainable_variables], strict=True
        )
    ]
    assert min(moved) > 1e-4  # every variable moved, so equal weights mean equal steps
    _assert_same(a, flat, b, ref)


def test_state_moves_between_the_two_mid_run():
    """Three steps on one optimizer, its state and weights into the other, three more: the
    same as six steps on either (a run saved on one device resumes on many, and back)."""
    grads = _grads(_model(), 6)
    a, flat, b, ref = _pair()
    _run(flat, grads)
    _run(ref, grads)  # the references: six steps each
    for first, second in ((FlatAdamW, KerasAdamW), (KerasAdamW, FlatAdamW)):
        m1, m2 = _model(), _model()
        o1, o2 = _optimizer(first, m1), _optimizer(second, m2)
        _run(o1, grads[:3])
        for v1, v2 in zip(m1.trainable_variables, m2.trainable_variables, strict=True):
            v2.assign(v1.numpy())
        o2.load_state(o1.state())
        _run(o2, grads[3:])
        _assert_same(m2, o2, a, flat)
        _assert_same(m2, o2, b, ref)


def test_decay_follows_keras_exclusions():
    """The flat optimizer's decay mask and Keras' exclusions pick the same variables, and
    both decay weight matrices only."""
    model = _model()
    ref = KerasAdamW(model.trainable_variables, learning_rate=1e-3, **ADAMW)
    picked = {v.path: decays(v) for v in model.trainable_variables}
    assert picked == {v.path: ref.keras._use_weight_decay(v) for v in model.trainable_variables}
    assert {len(v.shape) for v in model.trainable_variables if decays(v)} == {2}
    assert not any("embeddings" in p for p, d in picked.items() if d)
    assert any(d for d in picked.values()) and not all(d for d in picked.values())


@pytest.mark.parametrize("which", ["count", "shape"])
def test_state_that_does_not_fit_is_a_value_error(which):
    model = _model()
    flat = FlatAdamW(model.trainable_variables, learning_rate=lambda: 1e-3, **ADAMW)
    state = flat.state()
    bad = state[:-1] if which == "count" else [state[0], np.zeros((3, 3), np.float32), *state[2:]]
    with pytest.raises(ValueError):
        flat.load_state(bad)
    ref = KerasAdamW(model.trainable_variables, learning_rate=1e-3, **ADAMW)
    with pytest.raises(ValueError):
        ref.load_state(bad)
