"""The teaching probes: attention weights and the logit lens, from gpt2core's compiled
step and from transformers' own outputs, against each other and against first principles;
the sampling pipeline riding on the token events; nothing computed when nobody asks."""

import numpy as np
import pytest

from gpt2core.generate import GRID_MAX, PromptEvent, TokenEvent
from gpt2core.sampling import Settings

PROMPT = "Once upon a time there was a"
ALL = frozenset({"attention", "lens", "pipeline"})
GRID = frozenset({"attention", "attention_grid"})


def _tokens(lm, probes, n=6, prompt=PROMPT):
    s = Settings(max_new_tokens=n, greedy=True, stop_at_eos=False)
    return [e for e in lm.stream(prompt, s, probes=probes) if isinstance(e, TokenEvent)]


def _hf_reference(pretrained_lm, ids):
    """transformers' attentions and hidden states for the last position of ids."""
    import tensorflow as tf

    hf = pretrained_lm.model
    out = hf(tf.constant([ids]), output_attentions=True, output_hidden_states=True)
    att = np.stack([a[0, :, -1, :].numpy() for a in out.attentions])  # (L, nh, T)
    hs = out.hidden_states
    rows = [hf.transformer.ln_f(h[:, -1:]).numpy()[0, 0] for h in hs[1:-1]]
    rows.append(hs[-1][0, -1].numpy())
    lens = np.stack(rows) @ hf.transformer.wte.embeddings.numpy().T  # (L, V)
    lens = np.exp(lens - lens.max(-1, keepdims=True))
    return att, lens / lens.sum(-1, keepdims=True), out.logits[0, -1].numpy()


@pytest.mark.parametrize("backend", ["scratch", "pretrained"])
def test_attention_and_lens_equal_transformers_outputs(backend, scratch_lm, pretrained_lm):
    lm = scratch_lm if backend == "scratch" else pretrained_lm
    events = _tokens(lm, frozenset({"attention", "lens"}))
    ids = lm.encode(PROMPT)
    for k, e in enumerate(events):
        context = ids + [x.token_id for x in events[:k]]  # what the scored position saw
        att, lens, logits = _hf_reference(pretrained_lm, context)
        got = e.probes["attention"]
        assert got.shape == att.shape == (2, 2, len(context))
        np.testing.assert_allclose(got, att, atol=1e-4)
        np.testing.assert_allclose(got.sum(-1), 1.0, atol=1e-5)  # each row a distribution
        for layer, row in enumerate(e.probes["lens"]):
            top = [i for i, _ in row]
            np.testing.assert_allclose([p for _, p in row], lens[layer][top], atol=1e-4)
            assert top[0] == int(np.argmax(lens[layer]))
        # the lens's last row is the model's own next-token distribution
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        assert e.probes["lens"][-1][0][0] == int(np.argmax(probs)) == e.token_id
        np.testing.assert_allclose(e.probes["lens"][-1][0][1], probs.max(), atol=1e-4)


def _hf_grid(pretrained_lm, ids):
    """transformers' attention of every position of ids: (L, nh, T, T)."""
    import tensorflow as tf

    out = pretrained_lm.model(tf.constant([ids]), output_attentions=True)
    return np.stack([a[0].numpy() for a in out.attentions])


def _check_grid(e, context, pretrained_lm):
    grid = e.probes["attention_grid"]
    assert grid.shape == (2, 2, len(context), len(context))
    np.testing.assert_allclose(grid, _hf_grid(pretrained_lm, context), atol=1e-4)
    np.testing.assert_allclose(grid.sum(-1), 1.0, atol=1e-5)  # every row a distribution
    future = np.triu(np.ones(grid.shape[-2:], bool), k=1)  # (T, T): keys after the query
    assert (grid[:, :, future] == 0).all()
    np.testing.assert_array_equal(grid[:, :, -1], e.probes["attention"])  # the newest row


@pytest.mark.parametrize("backend", ["scratch", "pretrained"])
def test_attention_grid_equals_transformers_while_the_context_is_short(
    backend, scratch_lm, pretrained_lm
):
    """The T x T grid (the prompt's from the prefill, then a row per step) is
    transformers' full attention for the context at every step, until T > GRID_MAX."""
    lm = scratch_lm if backend == "scratch" else pretrained_lm
    ids = lm.encode(PROMPT)
    n = GRID_MAX - len(ids) + 3  # the last steps see more than GRID_MAX tokens
    events = _tokens(lm, GRID, n=n)
    for k, e in enumerate(events):
        context = ids + [x.token_id for x in events[:k]]
        if len(context) > GRID_MAX:
            assert "attention_grid" not in e.probes and "attention" in e.probes
        else:
            _check_grid(e, context, pretrained_lm)
    assert sum("attention_grid" in e.probes for e in events) == GRID_MAX - len(ids) + 1


def test_attention_grid_asked_for_mid_reply(scratch_lm, pretrained_lm):
    """Switched on mid-reply, the grid is whole from the next token (the short context is
    run again), and the reply is the one written with no probes at all."""
    plain = [e.token_id for e in _tokens(scratch_lm, frozenset(), n=6)]
    asked = iter([frozenset()] * 2 + [frozenset({"attention"})] + [GRID] * 10)
    events = _tokens(scratch_lm, lambda: next(asked), n=6)
    assert [e.token_id for e in events] == plain
    assert ["attention_grid" in (e.probes or {}) for e in events] == [False] * 3 + [True] * 3
    ids = scratch_lm.encode(PROMPT)
    for k, e in enumerate(events[3:], start=3):
        _check_grid(e, ids + plain[:k], pretrained_lm)


def test_attention_puts_nothing_after_the_query(scratch_lm):
    """From a 16-token padded prefill and steps over 64-slot windows: the weights over the
    context only, every row summing to 1 (positions after the query got exactly 0)."""
    events = _tokens(scratch_lm, frozenset({"attention"}), n=4)
    n_prompt = len(scratch_lm.encode(PROMPT))
    for k, e in enumerate(events):
        att = e.probes["attention"]
        assert att.shape[-1] == n_prompt + k
        np.testing.assert_allclose(att.sum(-1), 1.0, atol=1e-5)
        assert (att >= 0).all()


def test_probes_are_computed_only_when_asked(scratch_lm, pretrained_lm, monkeypatch):
    """With no view asking, the compiled probe step never runs and no event carries
    probes; a callable asked per step switches them on mid-reply."""

    def boom(*args):
        raise RuntimeError("a probe was computed although nobody asked")

    for lm in (scratch_lm, pretrained_lm):
        if lm is scratch_lm:
            monkeypatch.setattr(lm.decoder, "_probe_fn", boom)
        else:
            monkeypatch.setattr(lm, "_probe", boom)
        events = _tokens(lm, frozenset(), n=5)
        assert all(e.probes is None for e in events)
        monkeypatch.undo()
    asked = iter([frozenset()] * 3 + [ALL] * 10)
    events = _tokens(scratch_lm, lambda: next(asked), n=5)
    assert [e.probes is not None for e in events] == [False, False, False, True, True]
    assert set(events[-1].probes) == ALL


def test_the_pipeline_rides_on_each_token(scratch_lm):
    s = Settings(max_new_tokens=5, temperature=0.9, top_k=20, top_p=0.8, seed=3)
    events = list(scratch_lm.stream(PROMPT, s, probes=frozenset({"pipeline"})))
    assert isinstance(events[0], PromptEvent) and events[0].input_ids
    for e in events[1:-1]:
        pipe = e.probes["pipeline"]
        assert pipe.token == e.token_id and pipe.chosen_prob > 0
        assert pipe.stages[0] == "logits"


@pytest.mark.slow
def test_probes_at_the_124m_shape(gpt2_tokenizer):
    """GPT-2 small's shape (12 layers x 12 heads, 768 wide, 50257 tokens), random weights,
    one prefill: the compiled probe step against transformers' own outputs."""
    import tensorflow as tf

    from gpt2core.config import PRESETS
    from gpt2core.generate import ScratchLM
    from gpt2core.model import GPT2
    from gpt2core.weights import _hf_name_from_tf, assign_tensors
    from tests.conftest import make_hf_model

    hf = make_hf_model(n_layer=12, n_head=12, n_embd=768, n_positions=1024, seed=5)
    ours = GPT2(PRESETS["gpt2"])
    assign_tensors(
        ours, {_hf_name_from_tf(w.name): w.numpy() for w in hf.weights}, "TFGPT2LMHeadModel"
    )
    lm = ScratchLM(ours, gpt2_tokenizer)
    ids = lm.encode(PROMPT)  # 7 tokens
    (event,) = _tokens(lm, GRID | {"lens"}, n=1)

    out = hf(tf.constant([ids]), output_attentions=True, output_hidden_states=True)
    ref = np.stack([a[0].numpy() for a in out.attentions])  # (12, 12, T, T)
    att = event.probes["attention"]  # (12, 12, T): the predicted position's row
    assert att.shape == (12, 12, len(ids))
    np.testing.assert_allclose(att, ref[:, :, -1], atol=1e-4)
    np.testing.assert_allclose(att.sum(-1), 1.0, atol=1e-5)
    grid = event.probes["attention_grid"]  # (12, 12, T, T): every position's row
    np.testing.assert_allclose(grid, ref, atol=1e-4)
    assert (grid[:, :, np.triu(np.ones((len(ids),) * 2, bool), k=1)] == 0).all()

    # the lens: each block's output through ln_f and the tied head (the last hidden state
    # comes out of transformers already through ln_f)
    hs = out.hidden_states  # 13 x (1, T, C)
    rows = [hf.transformer.ln_f(h[:, -1:]).numpy()[0, 0] for h in hs[1:-1]] + [hs[-1][0, -1]]
    logits = np.stack(rows) @ hf.transformer.wte.embeddings.numpy().T  # (12, V)
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)  # (12, V)
    # random weights spread the mass (every p is about 1e-4): compare relative to p
    for layer, row in enumerate(event.probes["lens"]):
        top = [i for i, _ in row]
        assert top == list(np.argsort(-probs[layer])[: len(top)])
        np.testing.assert_allclose([p for _, p in row], probs[layer][top], rtol=1e-3, atol=1e-7)
    # the last row is the next-token distribution: transformers' logits, and the pick
    final = out.logits[0, -1].numpy()
    p_next = np.exp(final - final.max())
    p_next /= p_next.sum()
    last = event.probes["lens"][-1]
    np.testing.assert_allclose([p for _, p in last], p_next[[i for i, _ in last]], rtol=1e-3)
    assert last[0][0] == int(np.argmax(p_next)) == event.token_id
