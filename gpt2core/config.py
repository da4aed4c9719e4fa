"""GPT-2 hyperparameters: one frozen dataclass, a dict of presets, HF config.json in and out.

No TensorFlow here: the CLI reads configs before it decides to import anything heavy.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpt2core import jsontext
from gpt2core.errors import UserError

CONFIG_NAME = "config.json"

# Upper bounds on the sizes a config may ask for. GPT-2 XL is 48 layers x 1600 wide with
# 1024 positions and 50257 tokens; these leave room for far larger models, yet refuse a
# typo such as ``n_positions: 1000000000`` (a 128 GB position table) before anything is
# allocated. Whether a model within them fits this machine is ``check_fits_memory``'s job.
MAX_SIZES = {
    "n_layer": 1024,
    "n_head": 1024,
    "n_embd": 65536,
    "n_positions": 131072,
    "vocab_size": 4_194_304,
}


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
        for name, most in MAX_SIZES.items():
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
            if value > most:
                raise ConfigError(f"{name} is {value}, above this tool's limit of {most}")
        if self.n_embd % self.n_head:
            raise ConfigError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        for name, low, high in (
            ("dropout", 0.0, 1.0),
            ("layer_norm_epsilon", 0.0, 1.0),
            ("initializer_range", 0.0, 10.0),
        ):
            value = getattr(self, name)
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            if not ok or not low <= value < high or (name == "layer_norm_epsilon" and not value):
                raise ConfigError(f"{name} must be a number in [{low:g}, {high:g}), got {value!r}")

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
        """Read HF's config.json keys strictly: a size must be a JSON integer (``"32"`` or
        ``32.5`` is refused, not coerced), a rate a JSON number."""
        if d.get("model_type", "gpt2") != "gpt2":
            raise ConfigError(f"model_type is {d.get('model_type')!r}, not 'gpt2'")
        act = d.get("activation_function", "gelu_new")
        if act not in ("gelu_new", "gelu_pytorch_tanh"):
            raise ConfigError(f"activation_function {act!r} is not GPT-2's tanh GELU")
        n_positions = d.get("n_positions", d.get("n_ctx", 1024))
        return cls(
            n_layer=_integer(d, "n_layer"),
            n_head=_integer(d, "n_head"),
            n_embd=_integer(d, "n_embd"),
            n_positions=_integer({"n_positions": n_positions}, "n_positions"),
            vocab_size=_integer(d, "vocab_size"),
            layer_norm_epsilon=_number(d, "layer_norm_epsilon", 1e-5),
            dropout=_number(d, "resid_pdrop", 0.0),
            initializer_range=_number(d, "initializer_range", 0.02),
            bos_token_id=_token_id(d, "bos_token_id"),
            eos_token_id=_token_id(d, "eos_token_id"),
        )

    @staticmethod
    def read_dict(directory: str | os.PathLike) -> dict[str, Any]:
        """The raw JSON object of ``directory/config.json`` (one-line errors)."""
        from gpt2core.fsutil import read_regular

        path = Path(directory) / CONFIG_NAME
        try:
            d = jsontext.loads(read_regular(path).decode("utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path}: no config.json (not a checkpoint directory)") from None
        except ValueError as e:  # not JSON or UTF-8, a number too long, nested too deep
            raise ConfigError(f"{path}: not valid JSON ({e})") from None
        except OSError as e:  # a directory, no permission, an I/O error
            raise ConfigError(f"{path}: cannot read ({e.strerror or e})") from None
        if not isinstance(d, dict):
            raise ConfigError(f"{path}: expected a JSON object")
        return d

    @classmethod
    def load(cls, directory: str | os.PathLike) -> GPT2Config:
        d = cls.read_dict(directory)
        try:
            return cls.from_hf_dict(d)
        except ConfigError as e:
            raise ConfigError(f"{Path(directory) / CONFIG_NAME}: {e}") from None

    def save(self, directory: str | os.PathLike) -> None:
        from gpt2core.fsutil import atomic_write_text

        atomic_write_text(Path(directory) / CONFIG_NAME, json.dumps(self.to_hf_dict(), indent=2))


def available_memory() -> int | None:
    """Bytes this process may still allocate: the kernel's MemAvailable, lowered to what a
    cgroup (a container's memory limit) leaves; None where neither can be read."""
    found: list[int] = []
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError):
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        current = Path("/sys/fs/cgroup/memory.current").read_text().strip()
        if limit != "max":
            found.append(max(0, int(limit) - int(current)))
    except (OSError, ValueError):
        pass
    if not found:
        try:
            found.append(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
        except (OSError, ValueError, AttributeError):
            return None
    return min(found)


def check_fits_memory(n_params: int, what: str, copies: float = 2.0) -> None:
    """Refuse, as one line, a model whose fp32 weights (times ``copies``: loading holds the
    variables plus what is being read into them) exceed the memory this machine has free,
    before TensorFlow tries and dies with ResourceExhaustedError."""
    need = int(n_params * 4 * copies)
    free = available_memory()
    if free is not None and need > free:
        raise ConfigError(
            f"{what}: {n_params / 1e6:,.0f}M parameters need about {need / 2**30:,.1f} GiB "
            f"to load, and this machine has {free / 2**30:,.1f} GiB free"
        )


def _integer(d: dict[str, Any], key: str) -> int:
    if key not in d:
        raise ConfigError(f"missing key {key!r}")
    value = d[key]
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigError(f"{key} must be an integer, got {value!r} ({type(value).__name__})")
    return value


def _number(d: dict[str, Any], key: str, default: float) -> float:
    value = d.get(key, default)
    if value is None:
        return default
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise ConfigError(f"{key} must be a finite number, got {value!r}")
    return float(value)


def _token_id(d: dict[str, Any], key: str) -> int:
    value = d.get(key)
    if value is None:
        return 50256  # GPT-2's <|endoftext|>
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ConfigError(f"{key} must be a non-negative integer or null, got {value!r}")
    return value


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
