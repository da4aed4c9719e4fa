"""gpt2core computes the same function as transformers' TFGPT2LMHeadModel, both ways."""

import numpy as np
import pytest

from tests.conftest import make_hf_model


def _logits_diff(hf, ours, ids):
    import tensorflow as tf

    return float(np.abs(hf(tf.constant(ids)).logits.numpy() - ours(tf.constant(ids)).numpy()).max())


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


def _ours_greedy(model, tokenizer, prompt, n):
    from gpt2core.generate import ScratchLM
    from gpt2core.sampling import Settings

    lm = ScratchLM(model, tokenizer)
    lm.encode = lambda text: list(prompt)  # feed ids directly
    return lm.generate("", Settings(greedy=True, max_new_tokens=n, stop_at_eos=False)).output_ids


def test_tiny_parity_logits_and_greedy(hf_tiny_dir, gpt2_tokenizer):
    from transformers import TFGPT2LMHeadModel

    from gpt2core.weights import load_model

    hf = TFGPT2LMHeadModel.from_pretrained(hf_tiny_dir)
    ours, _ = load_model(hf_tiny_dir)  # reads tf_model.h5, transformers' TF layout
    ids = np.random.RandomState(0).randint(0, 50257, (2, 100)).astype(np.int32)
    assert _logits_diff(hf, ours, ids) <= 1e-4
    prompt = [7454, 2402, 257, 640]
    assert _ours_greedy(ours, gpt2_tokenizer, prompt, 64) == _hf_greedy(hf, prompt, 64)


def test_gpt2core_checkpoint_loads_in_transformers(scratch_tiny_dir, hf_tiny_dir):
    from transformers import TFGPT2LMHeadModel

    from gpt2core.weights import load_model, patch_transformers_safetensors

    ours, _ = load_model(scratch_tiny_dir)
    patch_transformers_safetensors()
    hf = TFGPT2LMHeadModel.from_pretrained(scratch_tiny_dir)  # model.safetensors, PT names
    ids = np.arange(40, dtype=np.int32).reshape(1, 40) * 97
    assert _logits_diff(hf, ours, ids) <= 1e-4
    original = TFGPT2LMHeadModel.from_pretrained(hf_tiny_dir)
    assert _logits_diff(original, ours, ids) <= 1e-4


def test_checkpoint_uses_hf_tensor_names(scratch_tiny_dir):
    from safetensors import safe_open

    with safe_open(str(scratch_tiny_dir / "model.safetensors"), "np") as f:
        keys = set(f.keys())
        assert f.metadata() == {"format": "pt"}
        assert f.get_tensor("h.0.attn.c_attn.weight").shape == (32, 96)  # [in, out]
        assert f.get_tensor("h.0.attn.c_attn.bias").shape == (96,)
    assert {"wte.weight", "wpe.weight", "ln_f.bias", "h.1.mlp.c_fc.weight"} <= keys


def test_loads_transformer_prefix_and_skips_buffers(tmp_path, scratch_tiny_dir):
    import shutil

    from safetensors.numpy import load_file, save_file

    from gpt2core.weights import load_model

    tensors = load_file(str(scratch_tiny_dir / "model.safetensors"))
    prefixed = {f"transformer.{k}": v for k, v in tensors.items()}
    prefixed["transformer.h.0.attn.bias"] = np.ones((1, 1, 128, 128), np.float32)
    prefixed["lm_head.weight"] = tensors["wte.weight"]
    shutil.copy(scratch_tiny_dir / "config.json", tmp_path)
    save_file(prefixed, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    ours, _ = load_model(tmp_path)
    np.testing.assert_array_equal(ours.wte.embeddings.numpy(), tensors["wte.weight"])


@pytest.mark.slow
def test_full_124m_shape_parity(gpt2_tokenizer):
    """The real GPT-2 small shape (random weights): logits and 64 greedy tokens agree."""
    from gpt2core.config import PRESETS
    from gpt2core.model import GPT2
    from gpt2core.weights import _hf_name_from_tf, assign_tensors

    hf = make_hf_model(n_layer=12, n_head=12, n_embd=768, n_positions=1024, seed=3)
    tensors = {_hf_name_from_tf(w.name): w.numpy() for w in hf.weights}
    ours = GPT2(PRESETS["gpt2"])
    assign_tensors(ours, tensors, "TFGPT2LMHeadModel")
    ids = np.random.RandomState(0).randint(0, 50257, (1, 128)).astype(np.int32)
    assert _logits_diff(hf, ours, ids) <= 1e-4
    prompt = [7454, 2402, 257, 640]
    assert _ours_greedy(ours, gpt2_tokenizer, prompt, 64) == _hf_greedy(hf, prompt, 64)
