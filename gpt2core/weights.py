"""Checkpoint directories <-> gpt2core variables, in Hugging Face's GPT-2 layout.

A checkpoint is a directory: ``config.json`` + ``model.safetensors`` (HF's PyTorch
tensor names: ``wte.weight``, ``h.{i}.attn.c_attn.weight`` as [in, out], ...) + the
tokenizer's files. We also read transformers' TensorFlow layout (``tf_model.h5``, what
``TFGPT2LMHeadModel.save_pretrained`` writes) and hub ids through huggingface_hub.

The variable names follow from the model's own layer names, so the mapping is a rule
(Dense kernel -> weight, LayerNorm gamma/beta -> weight/bias, Embedding -> weight),
not a table.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np

from gpt2core.config import CONFIG_NAME, ConfigError, GPT2Config
from gpt2core.errors import UserError

SAFETENSORS_NAME = "model.safetensors"
TF_H5_NAME = "tf_model.h5"
# Buffers, not parameters: the causal-mask constants of HF's PyTorch GPT-2.
_SKIPPED = re.compile(r"(^|\.)attn\.(bias|masked_bias)$|^lm_head\.weight$")


class CheckpointError(UserError):
    """A checkpoint that cannot be used: always names the file and the problem."""


# -- variable names -------------------------------------------------------------------


def _layer_params(prefix: str, layer) -> Iterator[tuple[str, object]]:
    from gpt2core._tf import keras
    from gpt2core.model import Linear

    if isinstance(layer, keras.layers.LayerNormalization):
        yield f"{prefix}.weight", layer.gamma
        yield f"{prefix}.bias", layer.beta
    elif isinstance(layer, Linear):
        yield f"{prefix}.weight", layer.kernel  # (in, out), as HF's Conv1D
        yield f"{prefix}.bias", layer.bias
    elif isinstance(layer, keras.layers.Embedding):
        yield f"{prefix}.weight", layer.embeddings
    else:  # a container layer: recurse into its named sub-layers
        for child in layer._layers:
            if child.weights:
                yield from _layer_params(f"{prefix}.{child.name}", child)


def hf_variables(model) -> dict[str, object]:
    """HF GPT-2 tensor name -> Keras variable, for every parameter of ``model``."""
    model.build_weights()
    out: dict[str, object] = {}
    for layer in (model.wte, model.wpe, *model.h, model.ln_f):
        out.update(_layer_params(layer.name, layer))
    return out


# -- reading --------------------------------------------------------------------------


def _hf_name_from_tf(name: str) -> str:
    """'.../transformer/h_._0/attn/c_attn/weight:0' -> 'h.0.attn.c_attn.weight'."""
    name = name.rsplit("transformer/", 1)[-1].removesuffix(":0")
    name = name.replace("h_._", "h.").replace("/", ".")
    name = re.sub(
        r"\.(gamma|beta|embeddings)$",
        lambda m: {"gamma": ".weight", "beta": ".bias", "embeddings": ".weight"}[m.group(1)],
        name,
    )
    return name


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: truncated or not a safetensors file ({e})") from None


def read_tf_h5(path: Path) -> dict[str, np.ndarray]:
    import h5py

    tensors: dict[str, np.ndarray] = {}
    try:
        with h5py.File(path, "r") as f:

            def visit(name, obj):
                if isinstance(obj, h5py.Dataset):
                    tensors[_hf_name_from_tf(name)] = np.asarray(obj)

            f.visititems(visit)
    except OSError as e:
        raise CheckpointError(f"{path}: truncated or not an HDF5 file ({e})") from None
    return tensors


def _normalise_names(tensors: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = {}
    for name, value in tensors.items():
        name = name.removeprefix("transformer.")
        if not _SKIPPED.search(name):
            out[name] = value
    return out


def assign_tensors(model, tensors: Mapping[str, np.ndarray], source: str | os.PathLike) -> None:
    """Copy HF-named tensors into ``model``; every parameter must be present with its shape."""
    tensors = _normalise_names(tensors)
    variables = hf_variables(model)
    missing = [n for n in variables if n not in tensors]
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise CheckpointError(f"{source}: missing tensors {', '.join(missing[:3])}{more}")
    for name, var in variables.items():
        value = tensors[name]
        want = tuple(var.shape)
        if value.shape != want:
            if value.size != int(np.prod(want)) or len(want) != 1:
                raise CheckpointError(
                    f"{source}: {name} has shape {tuple(value.shape)} but config.json "
                    f"implies {want}: the config does not match the tensors"
                )
            value = value.reshape(want)  # HF TF stores biases as (1, n)
        var.assign(value.astype(np.float32))


# -- hub ids and directories -----------------------------------------------------------

_HUB_PATTERNS = [
    CONFIG_NAME,
    SAFETENSORS_NAME,
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.json",
    "merges.txt",
    "special_tokens_map.json",
    "generation_config.json",
]


_HUB_ID = re.compile(r"[A-Za-z0-9][\w.\-]*(/[A-Za-z0-9][\w.\-]*)?")


def looks_like_path(spec: str) -> bool:
    """True unless ``spec`` has the form of a hub id ("gpt2", "owner/name")."""
    return not _HUB_ID.fullmatch(spec) or spec.endswith((".", "-"))


def resolve(spec: str, *, download: bool = True, weights: bool = True) -> Path:
    """A local checkpoint directory for a directory path or a hub id (cache first)."""
    path = Path(spec).expanduser()
    if path.is_dir():
        return path
    if looks_like_path(spec):
        if path.exists():
            raise CheckpointError(f"{spec}: not a directory (a checkpoint is a directory)")
        raise CheckpointError(f"{spec}: no such checkpoint directory")
    patterns = _HUB_PATTERNS if weights else [p for p in _HUB_PATTERNS if p != SAFETENSORS_NAME]
    return _hub_snapshot(spec, download=download, patterns=patterns)


def _hub_snapshot(repo_id: str, *, download: bool, patterns: list[str]) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError

    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns, local_files_only=True))
    except HFValidationError:
        raise CheckpointError(f"{repo_id!r} is neither a directory nor a hub id") from None
    except Exception:
        pass  # not cached: try the network below
    if not download or os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false"):
        raise CheckpointError(
            f"{repo_id!r} is not a local directory, and as a hub id it is not in the Hugging "
            f"Face cache while downloads are off (HF_HUB_OFFLINE): connect once, or give a "
            f"checkpoint directory"
        )
    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns))
    except Exception as e:
        raise CheckpointError(
            f"{repo_id!r} is not a local directory, and as a hub id it is not in the Hugging "
            f"Face cache and could not be downloaded ({type(e).__name__}): connect once, or "
            f"give a checkpoint directory"
        ) from None


def load_config(directory: Path) -> GPT2Config:
    try:
        return GPT2Config.load(directory)
    except ConfigError as e:
        raise CheckpointError(str(e)) from None


def read_tensors(directory: Path) -> tuple[dict[str, np.ndarray], Path]:
    st, h5 = directory / SAFETENSORS_NAME, directory / TF_H5_NAME
    if st.is_file():
        return read_safetensors(st), st
    if h5.is_file():
        return read_tf_h5(h5), h5
    raise CheckpointError(f"{directory}: no {SAFETENSORS_NAME} or {TF_H5_NAME} (no weights)")


def load_model(spec: str | os.PathLike):
    """Load a GPT-2 from a checkpoint directory or hub id. Returns (model, directory)."""
    from gpt2core.model import GPT2

    directory = resolve(str(spec))
    config = load_config(directory)
    tensors, source = read_tensors(directory)
    model = GPT2(config)
    assign_tensors(model, tensors, source)
    return model, directory


# -- writing --------------------------------------------------------------------------


def model_tensors(model) -> dict[str, np.ndarray]:
    return {name: np.ascontiguousarray(var.numpy()) for name, var in hf_variables(model).items()}


def save_checkpoint(
    model, directory: str | os.PathLike, tokenizer=None, extra=None, *, beside=False
) -> Path:
    """Write config.json + model.safetensors (+ tokenizer files, + ``extra(tmpdir)``).

    Everything is written into a temporary sibling directory first (fsutil's one writer),
    so an interrupted save leaves the old checkpoint (or none), never one that half-loads.

    ``beside=False``: the directory is the checkpoint and is published whole by a rename
    (``DIR/last``). ``beside=True``: the checkpoint shares its directory with files that
    are not part of it (a run directory keeps ``last/`` and ``metrics.jsonl`` beside its
    best model), so each file is moved in by its own rename, ``config.json`` last: a
    directory with a config.json holds a complete checkpoint at every instant. That only
    keeps the set consistent when the files being replaced are those of the same model
    and tokenizer (a training run re-saving its best weights), so a different config.json
    already there is refused.
    """
    from gpt2core import fsutil

    directory = Path(directory)

    def fill(tmp: Path) -> None:
        _write_checkpoint_files(model, tmp, tokenizer, extra)

    if not beside:
        return fsutil.publish_dir(directory, fill)
    if (directory / CONFIG_NAME).is_file():
        try:
            same = load_config(directory) == model.config
        except CheckpointError:
            same = False
        if not same:
            raise CheckpointError(
                f"{directory}: already holds a checkpoint of a different model; not mixing them"
            )
    fsutil.recover_dir(directory / "staging", restore=False)  # debris of an interrupted save
    fsutil.atomic_write_files(directory, fill, last=(CONFIG_NAME,))
    return directory


def _write_checkpoint_files(model, directory: Path, tokenizer, extra) -> None:
    from safetensors.numpy import save_file

    from gpt2core.fsutil import atomic_write

    tensors = model_tensors(model)
    atomic_write(
        directory / SAFETENSORS_NAME, lambda f: save_file(tensors, f, metadata={"format": "pt"})
    )
    if tokenizer is not None:
        tokenizer.save(directory)
    if extra is not None:
        extra(directory)
    model.config.save(directory)


def replace_dir(new: Path, target: Path) -> None:
    """Put the complete directory ``new`` at ``target`` (see ``gpt2core.fsutil.replace_dir``)."""
    from gpt2core import fsutil

    fsutil.replace_dir(new, target)


# -- transformers interop -------------------------------------------------------------


class _SafeOpenMapping(Mapping):
    """A dict-like view of a safetensors ``safe_open`` handle."""

    def __init__(self, handle):
        self._handle = handle

    def __getitem__(self, key):
        return self._handle.get_tensor(key)

    def __iter__(self):
        return iter(self._handle.keys())

    def __len__(self):
        return len(self._handle.keys())

    def get_tensor(self, key):
        return self._handle.get_tensor(key)


def patch_transformers_safetensors() -> None:
    """Let transformers' TF models load PyTorch-layout safetensors (ours, and the hub's).

    transformers 4.57 iterates a safetensors ``safe_open`` handle (``for key in
    pt_state_dict``), which current safetensors does not support ("'safe_open' object is
    not iterable"), so ``TFGPT2LMHeadModel.from_pretrained`` fails on every
    ``model.safetensors``. We wrap the handle in a Mapping before it gets there.
    Idempotent.
    """
    from transformers import modeling_tf_pytorch_utils as pt_utils

    original = pt_utils.load_pytorch_state_dict_in_tf2_model
    if getattr(original, "_gpt2core_patched", False):
        return

    def load(tf_model, pt_state_dict, *args, **kwargs):
        if hasattr(pt_state_dict, "get_tensor") and not hasattr(pt_state_dict, "__iter__"):
            pt_state_dict = _SafeOpenMapping(pt_state_dict)
        return original(tf_model, pt_state_dict, *args, **kwargs)

    load._gpt2core_patched = True
    pt_utils.load_pytorch_state_dict_in_tf2_model = load
