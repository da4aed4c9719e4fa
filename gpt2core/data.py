"""The data pipeline: text files -> tokenizer -> one id array -> train/val split -> batches.

Like nanoGPT's data/shakespeare_char/prepare.py, but in memory: the corpora we train on
here fit in RAM many times over. Batches are random windows of block_size + 1 tokens
(inputs, and the same shifted by one as targets) whose starts come from a stateless RNG
keyed on (seed, step): the batch of step k is the same whether or not the run was
interrupted before it, and every replica of a distributed run can compute it alone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gpt2core.tokenizer import TokenizerError
from gpt2core.train_config import TrainError

ASSETS = Path(__file__).resolve().parent / "assets"
# Corpora that ship with the package, by name; any other name is a path.
BUNDLED = {"shakespeare": ASSETS / "tinyshakespeare.txt"}  # Karpathy's Tiny Shakespeare
VAL_FRACTION = 0.1


def corpus_path(name: str) -> Path:
    """The file a corpus name means: a bundled corpus, or the path itself."""
    return BUNDLED.get(name, Path(name))


def read_corpus(names: tuple[str, ...] | list[str]) -> str:
    """Read and check each file; any problem is one TrainError naming the file."""
    texts = []
    for name in names:
        path = corpus_path(name)
        p = name if name not in BUNDLED else f"{name} ({path})"
        if not path.exists():
            raise TrainError(f"{p}: no such file")
        if not path.is_file():
            raise TrainError(f"{p}: not a file")
        try:
            data = path.read_bytes()
        except OSError as e:
            raise TrainError(f"{p}: cannot read it ({e.strerror or e})") from None
        if not data.strip():
            raise TrainError(f"{p}: the file is empty")
        if b"\x00" in data[:65536]:
            raise TrainError(f"{p}: looks like a binary file (it contains NUL bytes), not text")
        try:
            texts.append(data.decode("utf-8"))
        except UnicodeDecodeError as e:
            raise TrainError(
                f"{p}: not UTF-8 text (invalid byte 0x{data[e.start]:02x} at offset {e.start})"
            ) from None
    return "\n".join(texts)


def build_tokenizer(spec: str, text: str):
    """``char`` (the corpus' characters), ``bpe:N`` (a BPE of N tokens trained on the
    corpus), or a GPT-2 tokenizer by name or directory."""
    from gpt2core.tokenizer import CharTokenizer, load_tokenizer, train_bpe

    if spec == "char":
        return CharTokenizer.from_text(text)
    if spec.startswith("bpe:"):
        try:
            return train_bpe([text], int(spec[4:]))
        except TokenizerError as e:
            raise TrainError(str(e)) from None
    try:
        return load_tokenizer(spec)
    except TokenizerError as e:
        raise TrainError(f"--tokenizer: {e}") from None


def encode_corpus(tokenizer, text: str) -> np.ndarray:
    try:
        return np.asarray(tokenizer.encode(text), dtype=np.int32)  # (N,)
    except TokenizerError as e:
        raise TrainError(f"the corpus does not fit the tokenizer: {e}") from None


def split_ids(ids: np.ndarray, block_size: int) -> tuple[np.ndarray, np.ndarray]:
    """The first 90% of the tokens train, the rest validate (nanoGPT's split)."""
    n = int(len(ids) * (1 - VAL_FRACTION))
    train, val = ids[:n], ids[n:]
    need = block_size + 1
    if len(train) < need or len(val) < need:
        raise TrainError(
            f"the corpus is too short: {len(ids)} tokens give {len(train)} train / {len(val)} "
            f"val, and each split needs at least block_size + 1 = {need} tokens"
        )
    return train, val


def random_windows(ids, block: int, batch_size: int, seed: int, step, stream: int = 0):
    """Random windows for ``step``: inputs (B, T) and targets (B, T), reproducible.

    ``ids`` is a (N,) int32 tensor; ``stream`` separates the training batches (0) from the
    batches that estimate the losses (1), so evaluating never changes what trains."""
    from gpt2core._tf import tf

    n = tf.shape(ids)[0] - block - 1
    key = tf.stack([tf.constant(seed + 1_000_003 * stream, tf.int64), tf.cast(step, tf.int64)])
    starts = tf.random.stateless_uniform([batch_size], key, 0, n + 1, tf.int32)  # (B,)
    idx = starts[:, None] + tf.range(block + 1)[None, :]  # (B, T+1)
    windows = tf.gather(ids, idx)  # (B, T+1)
    return windows[:, :-1], windows[:, 1:]  # (B, T), (B, T)


def val_windows(val_ids: np.ndarray, block: int, batch_size: int, seed: int, key: int):
    """Random validation windows for an estimate (numpy: the split is small)."""
    rng = np.random.default_rng([seed, 2, key])
    starts = rng.integers(0, len(val_ids) - block, batch_size)  # (B,)
    w = np.stack([val_ids[s : s + block + 1] for s in starts]).astype(np.int32)  # (B, T+1)
    return w[:, :-1], w[:, 1:]  # (B, T), (B, T)


def tiling_windows(ids: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray]:
    """Every non-overlapping window of ``ids``: each token is predicted exactly once (the
    whole-split loss, not an estimate)."""
    n = (len(ids) - 1) // block
    x = ids[: n * block].reshape(n, block).astype(np.int32)  # (n, T)
    y = ids[1 : n * block + 1].reshape(n, block).astype(np.int32)  # (n, T)
    return x, y


__all__ = [
    "BUNDLED",
    "corpus_path",
    "read_corpus",
    "build_tokenizer",
    "encode_corpus",
    "split_ids",
    "random_windows",
    "val_windows",
    "tiling_windows",
]
