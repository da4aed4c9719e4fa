"""GPT-2 hyperparameters: one frozen dataclass, a dict of presets, HF config.json in and out.

No TensorFlow here: the CLI reads configs before it decides to import anything heavy.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpt2core.errors import UserError

CONFIG_NAME = "config.json"


class ConfigError(UserError):
    """A config that cannot describe a GPT-2 (a user error, reported as one line)."""


@dataclass(frozen=True)
class GPT2Config:
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    n_positions: int = 1024  # the context window, "block size" in nanoGPT
    vocab_size: int = 50257
    # GPT-2 uses 1e-5; Keras' LayerNormalization defaults to 1e-3, which changes every
    # activation slightly and breaks parity with the published weights.
    layer_norm_epsilon: float = 1e-5
    dropout: float = 0.0  # HF has three (embd/attn/resid_pdrop); we use one for all
    initializer_range: float = 0.02
    bos_token_id: int = 50256
    eos_token_id: int = 50256

    def __post_init__(self) -> None:
        for name in ("n_layer", "n_head", "n_embd", "n_positions", "vocab_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if self.n_embd % self.n_head:
            raise ConfigError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")

    @property
    def head_size(self) -> int:
        return self.n_embd // self.n_head

    def replace(self, **changes: Any) -> GPT2Config:
        return dataclasses.replace(self, **changes)

    def num_params(self) -> int:
        """Parameter count (the LM head is tied to wte, so counted once)."""
        c, L = self.n_embd, self.n_layer
        per_block = (
            2 * 2 * c + (c * 3 * c + 3 * c) + (c * c + c) + (c * 4 * c + 4 * c) + (4 * c * c + c)
        )
        return self.vocab_size * c + self.n_positions * c + L * per_block + 2 * c

    # -- HF config.json ----------------------------------------------------------------
    def to_hf_dict(self) -> dict[str, Any]:
        return {
            "architectures": ["GPT2LMHeadModel"],
            "model_type": "gpt2",
            "activation_function": "gelu_new",
            "n_layer": self.n_layer,
            "n_head": self.n_head,
            "n_embd": self.n_embd,
            "n_positions": self.n_positions,
            "n_ctx": self.n_positions,
            "vocab_size": self.vocab_size,
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "embd_pdrop": self.dropout,
            "attn_pdrop": self.dropout,
            "resid_pdrop": self.dropout,
            "initializer_range": self.initializer_range,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": self.eos_token_id,
            "tie_word_embeddings": True,
        }

    @classmethod
    def from_hf_dict(cls, d: dict[str, Any]) -> GPT2Config:
        if d.get("model_type", "gpt2") != "gpt2":
            raise ConfigError(f"model_type is {d.get('model_type')!r}, not 'gpt2'")
        act = d.get("activation_function", "gelu_new")
        if act not in ("gelu_new", "gelu_pytorch_tanh"):
            raise ConfigError(f"activation_function {act!r} is not GPT-2's tanh GELU")
        try:
            return cls(
                n_layer=int(d["n_layer"]),
                n_head=int(d["n_head"]),
                n_embd=int(d["n_embd"]),
                n_positions=int(d.get("n_positions", d.get("n_ctx", 1024))),
                vocab_size=int(d["vocab_size"]),
                layer_norm_epsilon=float(d.get("layer_norm_epsilon", 1e-5)),
                dropout=float(d.get("resid_pdrop", 0.0)),
                initializer_range=float(d.get("initializer_range", 0.02)),
                bos_token_id=int(d.get("bos_token_id") or 50256),
                eos_token_id=int(d.get("eos_token_id") or 50256),
            )
        except KeyError as e:
            raise ConfigError(f"missing key {e.args[0]!r}") from None
        except (TypeError, ValueError) as e:
            raise ConfigError(str(e)) from None

    @classmethod
    def load(cls, directory: str | os.PathLike) -> GPT2Config:
        path = Path(directory) / CONFIG_NAME
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path}: no config.json (not a checkpoint directory)") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"{path}: not valid JSON ({e})") from None
        if not isinstance(d, dict):
            raise ConfigError(f"{path}: expected a JSON object")
        try:
            return cls.from_hf_dict(d)
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None

    def save(self, directory: str | os.PathLike) -> None:
        from gpt2core.fsutil import atomic_write_text

        atomic_write_text(Path(directory) / CONFIG_NAME, json.dumps(self.to_hf_dict(), indent=2))


PRESETS: dict[str, GPT2Config] = {
    "gpt2": GPT2Config(),
    "gpt2-medium": GPT2Config(n_layer=24, n_head=16, n_embd=1024),
    "gpt2-large": GPT2Config(n_layer=36, n_head=20, n_embd=1280),
    "gpt2-xl": GPT2Config(n_layer=48, n_head=25, n_embd=1600),
    # Small enough for unit tests; real GPT-2 vocabulary so it pairs with the real tokenizer.
    "tiny": GPT2Config(n_layer=2, n_head=2, n_embd=32, n_positions=128),
    # nanoGPT's shakespeare_char CPU recipe; vocab_size is set by the tokenizer at train time.
    "shakespeare-cpu": GPT2Config(n_layer=4, n_head=4, n_embd=128, n_positions=64),
}


def preset(name: str) -> GPT2Config:
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown preset {name!r} (choose from {', '.join(PRESETS)})") from None
