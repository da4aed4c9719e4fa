"""The scratch decoder: KV cache in variables updated in place, attention over buckets of
the written prefix, one trace for every prompt length, ids identical to transformers'."""

import numpy as np
import pytest

from tests.conftest import make_hf_model

PROMPT = [7454, 2402, 257, 640]


@pytest.fixture(scope="module")
def pair():
    """transformers' model and gpt2core's, same random weights, a 1,024-position window
    (so a long generation crosses every cache bucket: 64, 128, 256, 512, 1024)."""
    from gpt2core.config import GPT2Config
    from gpt2core.model import GPT2
    from gpt2core.weights import _hf_name_from_tf, assign_tensors

    # a wider init than GPT-2's 0.02 spreads the logits, so greedy decoding wanders over
    # the vocabulary instead of repeating one token, and has no near-ties
    hf = make_hf_model(n_layer=2, n_head=2, n_embd=32, n_positions=1024, initializer_range=0.3)
    ours = GPT2(GPT2Config(n_layer=2, n_head=2, n_embd=32, n_positions=1024))
    assign_tensors(ours, {_hf_name_from_tf(w.name): w.numpy() for w in hf.weights}, "hf")
    return hf, ours


def _lm(model, gpt2_tokenizer):
    from gpt2core.generate import ScratchLM

    return ScratchLM(model, gpt2_tokenizer)


def _greedy(lm, prompt, n):
    from gpt2core.sampling import Settings

    lm.encode = lambda _text: list(prompt)
    return lm.generate("", Settings(greedy=True, max_new_tokens=n, stop_at_eos=False))


def _hf_greedy(hf, prompt, n):
    import tensorflow as tf

    out = hf.generate(
        tf.constant([prompt]),
        max_new_tokens=n,
        do_sample=False,
        pad_token_id=50256,
        eos_token_id=None,
    )
    return out.numpy()[0].tolist()


@pytest.mark.parametrize("n", [96, pytest.param(600, marks=pytest.mark.slow)])
def test_greedy_ids_equal_transformers_across_every_cache_size(pair, gpt2_tokenizer, n):
    hf, ours = pair
    lm = _lm(ours, gpt2_tokenizer)
    summary = _greedy(lm, PROMPT, n)
    ref = _hf_greedy(hf, PROMPT, n)
    assert summary.output_ids == ref
    assert len(set(ref[len(PROMPT) :])) > 10  # a real walk over the vocabulary, not one token
    windows = {size for t, size in lm.decoder.compiled if t == 1}
    assert max(windows) == (1024 if n == 600 else 128)  # attended a prefix, not 1,024 rows


@pytest.mark.parametrize("in_place_from", [512, 128])
def test_step_logits_equal_full_forward_after_in_place_updates(pair, monkeypatch, in_place_from):
    """Windowed steps, and (from the 128-row window on, when IN_PLACE_FROM is 128) steps
    that attend over the whole variables, give the full forward pass's logits."""
    import tensorflow as tf

    from gpt2core.generate import ScratchDecoder

    monkeypatch.setattr(ScratchDecoder, "IN_PLACE_FROM", in_place_from)
    _, ours = pair
    dec = ScratchDecoder(ours)
    ids = np.random.RandomState(0).randint(0, 50257, 140).tolist()
    got = [dec.prefill(ids[:5])]
    variables = [v for kv in dec._variables() for v in kv]
    for t in range(5, 140):  # crosses the 64- and 128-row windows
        got.append(dec.step(ids[t]))
    full = ours(tf.constant([ids])).numpy()[0]  # (T, V)
    np.testing.assert_allclose(np.stack(got), full[4:], atol=1e-5)
    # the same variables (updated in place, never replaced), holding the prompt's keys
    assert [v for kv in dec._kv for v in kv] == variables
    _, _, ref = ours.call_with_cache(tf.constant([ids]), ours.init_cache(1, 140), 0)
    np.testing.assert_allclose(dec._kv[1][0].numpy()[:, :, :140], ref[1][0].numpy(), atol=1e-5)


def test_prefill_scores_its_last_real_position_and_caches_every_position(pair):
    """The prefill's last block computes its output for the scored position only (the
    rows after it are padding, the rows before it unused); every block still writes every
    position's keys and values. Prompts padded (5 -> 16, 17 -> 32, 300 -> 512) and not."""
    import tensorflow as tf

    from gpt2core.generate import ScratchDecoder

    _, ours = pair
    ids = np.random.RandomState(1).randint(0, 50257, 300).tolist()
    full = ours(tf.constant([ids])).numpy()[0]  # (T, V)
    _, _, ref = ours.call_with_cache(tf.constant([ids]), ours.init_cache(1, 300), 0)
    for n in (2, 5, 16, 17, 300):
        dec = ScratchDecoder(ours)
        np.testing.assert_allclose(dec.prefill(ids[:n]), full[n - 1], atol=1e-5)
        for (k, v), (k_ref, v_ref) in zip(dec._kv, ref, strict=True):
            np.testing.assert_allclose(k.numpy()[:, :, :n], k_ref.numpy()[:, :, :n], atol=1e-5)
            np.testing.assert_allclose(v.numpy()[:, :, :n], v_ref.numpy()[:, :, :n], atol=1e-5)


@pytest.mark.parametrize("window", [64, 1024, "whole"])
def test_step_updates_the_cache_without_copying_it(pair, window):
    """XLA must update the cache variables in place: no copy instruction of a whole
    layer's cache, at a small window, at the largest (n_positions rows), where a window
    that was the whole variable once made XLA copy every cache variable twice per step,
    and in the step that attends over the whole variables. (Copies fused into other
    work are not seen here: the whole-cache step keeps one, for the attention's operand,
    see ScratchDecoder's docstring.)"""
    import tensorflow as tf

    from gpt2core.generate import ScratchDecoder

    _, ours = pair
    dec = ScratchDecoder(ours)
    dec.prefill(PROMPT)
    c = ours.config
    if window == "whole":
        window = c.n_positions + 1
        hlo = dec._full_fn.experimental_get_compiler_ir(
            tf.constant([[1]]), tf.constant(c.n_positions - 10), tf.constant(0)
        )(stage="optimized_hlo")
    else:
        hlo = dec._fn.experimental_get_compiler_ir(
            tf.constant([[1]]), tf.constant(window - 10), tf.constant(0), dec._window(window)
        )(stage="optimized_hlo")
    whole = f"f32[1,{c.n_head},{c.n_positions + 1},{c.head_size}]"  # the variables
    window_rows = f"f32[1,{c.n_head},{window},{c.head_size}]"
    assert whole in hlo  # the variables are there ...
    copies = [
        line
        for line in hlo.splitlines()
        if f"{whole}{{3,2,1,0}} copy(" in line or f"{window_rows}{{3,2,1,0}} copy(" in line
    ]
    assert copies == []  # ... and never copied


def test_one_trace_for_every_prompt_length_and_window(pair, gpt2_tokenizer):
    _, ours = pair
    lm = _lm(ours, gpt2_tokenizer)
    for n in (1, 3, 17, 40, 60, 300, 700):  # prompt buckets 16 .. 1024, windows 64 .. 1024
        prompt = np.random.RandomState(n).randint(0, 50257, n).tolist()
        _greedy(lm, prompt, 20)
    assert lm.decoder.traces == 2  # the windowed function, and the whole-variable step
    assert len(lm.decoder.compiled) >= 8  # many XLA shapes, one Python trace


def test_sliding_window_continues_like_a_fresh_prefill(gpt2_tokenizer):
    """When the window fills, the context slides and decoding goes on; the tokens after the
    slide are the ones a fresh generation from the slid context produces."""
    from gpt2core.config import GPT2Config
    from gpt2core.generate import ScratchLM
    from gpt2core.model import GPT2

    model = GPT2(GPT2Config(n_layer=2, n_head=2, n_embd=32, n_positions=64))
    model.build_weights()
    for w in model.weights:  # spread the logits (see `pair`)
        w.assign(w * 15.0 if len(w.shape) == 2 else w)
    lm = ScratchLM(model, gpt2_tokenizer)
    summary = _greedy(lm, PROMPT, 100)  # 4 + 100 > 64: slides at least once
    assert summary.new_tokens == 100 and summary.stop_reason == "max_new_tokens"
    ids = summary.output_ids
    # first slide: after position 64 the context is the last 48 tokens
    context = ids[: 64 + 1][-48:]
    fresh = _greedy(lm, context, 10).output_ids[len(context) :]
    assert ids[65 : 65 + 10] == fresh


@pytest.mark.parametrize("prompt_len,new", [(4, 100), (70, 200), (300, 30)])
def test_compile_for_compiles_every_shape_the_generation_uses(
    pair, gpt2_tokenizer, prompt_len, new
):
    """`gpt2 generate` compiles before it streams, so its ttft and tok/s are the model's:
    the generation after compile_for runs no shape that was not compiled already."""
    from gpt2core.sampling import Settings

    _, ours = pair
    lm = _lm(ours, gpt2_tokenizer)
    prompt = np.random.RandomState(prompt_len).randint(0, 50257, prompt_len).tolist()
    lm.encode = lambda _text: list(prompt)
    settings = Settings(greedy=True, max_new_tokens=new, stop_at_eos=False)
    lm.compile_for("", settings)
    before = set(lm.decoder.compiled)
    assert before  # it compiled something (so the check below can fail)
    _greedy(lm, prompt, new)
    assert lm.decoder.compiled == before


def test_probed_steps_and_whole_cache_steps_share_one_cache(pair, monkeypatch):
    """A view switched on mid-reply asks for probes, which run the windowed function, while
    the other steps past IN_PLACE_FROM attend over the whole variables: both write the same
    cache, so mixing them (and stepping back) gives the windowed steps' logits."""
    from gpt2core.generate import ScratchDecoder

    _, ours = pair
    ids = np.random.RandomState(1).randint(0, 50257, 200).tolist()

    def run(in_place_from):
        monkeypatch.setattr(ScratchDecoder, "IN_PLACE_FROM", in_place_from)
        dec = ScratchDecoder(ours)
        out = [dec.prefill(ids[:5])]
        for t in range(5, 200):
            probes = {"attention"} if t % 3 == 0 else set()
            out.append(dec.step(ids[t], probes=probes))
            if t == 150:  # undo two steps (step mode's Backspace), then redo them
                dec.index -= 2
                out = out[:-2]
                out.append(dec.step(ids[149]))
                out.append(dec.step(ids[150]))
        return np.stack(out), dec

    windowed, _ = run(10**9)  # never the whole-cache step
    mixed, dec = run(64)  # whole-cache steps from the 64-row window on
    assert (1, 256) in dec.compiled and dec.traces == 3  # windowed, whole-cache, probed
    np.testing.assert_allclose(mixed, windowed, atol=1e-5)


def test_a_one_token_prompt_runs_as_a_step(pair):
    """Unconditional text (the end-of-text token) and the trainer's samples ("\\n") start
    from one token: that prefill is the step's shape, so it compiles nothing of its own."""
    import tensorflow as tf

    from gpt2core.generate import ScratchDecoder

    _, ours = pair
    dec = ScratchDecoder(ours)
    got = [dec.prefill([50256]), dec.step(11), dec.step(7454)]
    assert dec.compiled == {(1, 64)}  # no (16, 64) prefill shape
    full = ours(tf.constant([[50256, 11, 7454]])).numpy()[0]  # (T, V)
    np.testing.assert_allclose(np.stack(got), full, atol=1e-5)


def test_background_shapes_cover_every_shape_even_when_n_positions_is_no_power_of_two(
    gpt2_tokenizer,
):
    """After the background compile, neither a reply that fills the whole window nor a
    prompt longer than the last power of two compiles anything more: the last window and
    the last prompt bucket are n_positions rows (100 here), not a power of two."""
    from gpt2core.config import GPT2Config
    from gpt2core.model import GPT2

    lm = _lm(GPT2(GPT2Config(n_layer=1, n_head=2, n_embd=16, n_positions=100)), gpt2_tokenizer)
    assert (1, 64) in lm.background_shapes() and (1, 100) in lm.background_shapes()
    assert (100, 100) in lm.background_shapes()  # prompts of 65..100 tokens
    for shape in lm.background_shapes():
        assert lm.compile_shape(shape)
    assert lm.background_shapes() == []
    before = set(lm.decoder.compiled)
    _greedy(lm, PROMPT, 90)  # positions 4 .. 94: windows 64 and 100
    _greedy(lm, list(range(1000, 1080)), 5)  # an 80-token prompt: padded to 100 rows
    assert lm.decoder.compiled == before
