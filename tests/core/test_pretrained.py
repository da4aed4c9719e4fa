"""The pretrained backend: transformers' model streamed by one XLA-compiled function over a
padded past; its greedy ids are those of transformers' own ``generate``."""

import pytest

from gpt2core.sampling import Settings

PROMPT = "The meaning of life is"


@pytest.fixture(scope="module")
def lm(hf_tiny_dir):
    from gpt2core.specs import load_lm

    return load_lm(f"pretrained:{hf_tiny_dir}")


def _generate_ids(lm, ids, n):
    import tensorflow as tf

    out = lm.model.generate(
        tf.constant([ids]), max_new_tokens=n, do_sample=False, pad_token_id=50256, eos_token_id=None
    )
    return out.numpy()[0].tolist()


@pytest.mark.parametrize("n", [10, 100])  # 100: the past grows from 64 to 128 slots
def test_compiled_stream_equals_generate(lm, n):
    ids = lm.encode(PROMPT)
    summary = lm.generate(PROMPT, Settings(greedy=True, max_new_tokens=n, stop_at_eos=False))
    assert lm.compiled and "eager" not in lm.description
    assert summary.output_ids == _generate_ids(lm, ids, n)


def test_one_trace_for_every_prompt_length(lm):
    lm.generate("x", Settings(greedy=True, max_new_tokens=2))
    traces = lm.traces
    assert traces == 1
    for k in (1, 9, 30, 70):
        lm.generate(" a" * k, Settings(greedy=True, max_new_tokens=5))
    assert lm.traces == traces


def test_falls_back_to_eager_when_compiling_fails(hf_tiny_dir):
    from gpt2core.specs import load_lm

    lm = load_lm(f"pretrained:{hf_tiny_dir}")

    def broken(*args):
        raise ValueError("unsupported op\nsecond line")

    lm._fn = broken
    ids = lm.encode(PROMPT)
    summary = lm.generate(PROMPT, Settings(greedy=True, max_new_tokens=12, stop_at_eos=False))
    assert not lm.compiled
    assert lm.description.endswith("(eager: XLA could not compile it: unsupported op)")
    assert summary.output_ids == _generate_ids(lm, ids, 12)
