"""Shared fixtures: nothing is downloaded; checkpoints are built with random weights."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"  # the machines reach no hub; fail fast, never hang
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
TOKENIZER_DIR = SHARED / "gpt2-tokenizer"
SHAKESPEARE = SHARED / "data" / "tinyshakespeare.txt"


@pytest.fixture(scope="session", autouse=True)
def _gpt2_home(tmp_path_factory):
    """Tests write history and native.log under a temporary GPT2_HOME, never the user's."""
    saved = os.environ.get("GPT2_HOME")
    os.environ["GPT2_HOME"] = str(tmp_path_factory.mktemp("gpt2_home"))
    yield
    if saved is None:
        os.environ.pop("GPT2_HOME", None)
    else:
        os.environ["GPT2_HOME"] = saved


@pytest.fixture(scope="session")
def shared_tokenizer_dir() -> Path:
    assert TOKENIZER_DIR.is_dir(), f"expected the shared GPT-2 tokenizer at {TOKENIZER_DIR}"
    return TOKENIZER_DIR


@pytest.fixture(scope="session")
def gpt2_tokenizer(shared_tokenizer_dir):
    from gpt2core.tokenizer import load_tokenizer

    return load_tokenizer(shared_tokenizer_dir)


def make_hf_model(n_layer=2, n_head=2, n_embd=32, n_positions=128, seed=0, **kw):
    """A transformers TFGPT2LMHeadModel with random weights (built, ready to save)."""
    import tensorflow as tf
    from transformers import GPT2Config as HFConfig
    from transformers import TFGPT2LMHeadModel

    tf.keras.utils.set_random_seed(seed) if hasattr(tf.keras.utils, "set_random_seed") else None
    tf.random.set_seed(seed)
    cfg = HFConfig(
        n_layer=n_layer,
        n_head=n_head,
        n_embd=n_embd,
        n_positions=n_positions,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        resid_pdrop=0.0,
        **kw,
    )
    model = TFGPT2LMHeadModel(cfg)
    model(tf.constant([[1, 2, 3]]))
    return model


@pytest.fixture(scope="session")
def hf_tiny_dir(tmp_path_factory, shared_tokenizer_dir):
    """transformers' own TF checkpoint (tf_model.h5) of a tiny random GPT-2 + tokenizer."""
    import shutil

    d = tmp_path_factory.mktemp("hf_tiny")
    model = make_hf_model()
    model.save_pretrained(d)
    for f in shared_tokenizer_dir.iterdir():
        shutil.copy(f, d)
    return d


@pytest.fixture(scope="session")
def scratch_tiny_dir(tmp_path_factory, hf_tiny_dir):
    """The same weights saved by gpt2core (config.json + model.safetensors + tokenizer)."""
    from gpt2core.tokenizer import load_tokenizer
    from gpt2core.weights import load_model, save_checkpoint

    model, _ = load_model(hf_tiny_dir)
    d = tmp_path_factory.mktemp("scratch_tiny") / "ckpt"
    save_checkpoint(model, d, tokenizer=load_tokenizer(hf_tiny_dir))
    return d


@pytest.fixture(scope="module")
def scratch_lm(scratch_tiny_dir):
    """The tiny checkpoint run by gpt2core (one per test module)."""
    from gpt2core.specs import load_lm

    return load_lm(f"scratch:{scratch_tiny_dir}")


@pytest.fixture(scope="module")
def pretrained_lm(scratch_tiny_dir):
    """The same checkpoint run by transformers' TFGPT2LMHeadModel (one per test module)."""
    from gpt2core.specs import load_lm

    return load_lm(f"pretrained:{scratch_tiny_dir}")
