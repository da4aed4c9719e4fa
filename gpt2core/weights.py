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

import contextlib
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np

from gpt2core.config import CONFIG_NAME, ConfigError, GPT2Config, check_fits_memory
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


class TensorFile(Mapping):
    """A weights file opened lazily: every tensor's HF name, shape and dtype come from the
    header at once, its data only when asked for. So a file is checked against its config
    before anything big is read or allocated, and loading holds one tensor at a time, not
    a second copy of the model. ``rows`` reads a block of a tensor's first axis, so even
    the largest tensor (wte, 154 MB at 124M) is never held whole outside the model."""

    def __init__(
        self, path: Path, entries: dict[str, tuple[str, tuple[int, ...], str]], read, rows
    ):
        self.path = path
        self._entries = entries  # HF name -> (name in the file, shape, dtype)
        self._read = read  # name in the file -> the whole array
        self._rows = rows  # (name in the file, start, stop) -> array[start:stop]

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {name: shape for name, (_, shape, _) in self._entries.items()}

    def dtype(self, name: str) -> str:
        return self._entries[name][2]

    def __getitem__(self, name: str) -> np.ndarray:
        return self._guard(name, lambda: self._read(self._entries[name][0]))

    def rows(self, name: str, start: int, stop: int) -> np.ndarray:
        """``self[name][start:stop]``, reading only those rows."""
        return self._guard(name, lambda: self._rows(self._entries[name][0], start, stop))

    def _guard(self, name: str, read) -> np.ndarray:
        try:
            return read()
        except (OSError, ValueError, RuntimeError) as e:  # corrupt data past a sound header
            raise CheckpointError(f"{self.path}: cannot read {name} ({_first_line(e)})") from None

    def __iter__(self):
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:200]


def _hf_name(name: str) -> str:
    """A tensor's name in HF's PyTorch layout, whichever layout the file uses."""
    return _hf_name_from_tf(name) if "/" in name else name.removeprefix("transformer.")


def _numpy_dtype_name(safetensors_dtype: str) -> str:
    """'F32' -> 'float32', 'BF16' -> 'bfloat16', 'I64' -> 'int64', 'U8' -> 'uint8'."""
    kinds = {"F": "float", "BF": "bfloat", "I": "int", "U": "uint"}
    kind, bits = safetensors_dtype.rstrip("0123456789"), safetensors_dtype.lstrip("BFIU")
    return f"{kinds[kind]}{bits}" if kind in kinds and bits.isdigit() else safetensors_dtype.lower()


_SAFETENSORS_DTYPES = {"F16": "<f2", "F32": "<f4", "F64": "<f8"}


@contextlib.contextmanager
def read_safetensors(path: Path) -> Iterator[TensorFile]:
    """Open ``model.safetensors`` lazily (safetensors checks at open that the header's
    offsets cover the file exactly, so a truncated file fails here).

    Float data is read with ``pread`` at the header's offsets rather than through
    safetensors' memory map: a mapped file's pages count in the process's RSS until it is
    closed, which would hold a second copy of the model for the length of the load."""
    import json
    import struct

    from safetensors import SafetensorError, safe_open

    try:
        handle = safe_open(str(path), framework="numpy")
        entries = {}
        for key in handle.keys():
            view = handle.get_slice(key)
            dtype = view.get_dtype()
            entries[_hf_name(key)] = (key, tuple(view.get_shape()), _numpy_dtype_name(dtype))
        with open(path, "rb") as f:  # the header safe_open has just validated
            (n,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(n))
    except (SafetensorError, ValueError) as e:
        raise CheckpointError(
            f"{path}: truncated or not a safetensors file ({_first_line(e)})"
        ) from None
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read ({e.strerror or _first_line(e)})") from None
    base = 8 + n  # data offsets count from the end of the header

    def rows(key: str, start: int, stop: int) -> np.ndarray:
        info = header[key]
        dtype = _SAFETENSORS_DTYPES.get(info["dtype"])
        if dtype is None:  # not a float this tool reads: validate_tensors refuses it
            return handle.get_tensor(key)[start:stop]
        shape = tuple(info["shape"])
        row = int(np.prod(shape[1:], dtype=np.int64)) * np.dtype(dtype).itemsize  # bytes
        first = base + info["data_offsets"][0] + start * row
        out = np.empty((stop - start, *shape[1:]), dtype)
        got = os.preadv(fd, [memoryview(out).cast("B")], first) if out.nbytes else 0
        if got != out.nbytes:
            raise OSError(f"short read: {got} of {out.nbytes} bytes")
        return out

    def read(key: str) -> np.ndarray:
        shape = tuple(header[key]["shape"])
        return rows(key, 0, shape[0]) if shape else handle.get_tensor(key)

    fd = os.open(path, os.O_RDONLY)
    try:
        with handle:
            yield TensorFile(path, entries, read, rows)
    finally:
        os.close(fd)


@contextlib.contextmanager
def read_tf_h5(path: Path) -> Iterator[TensorFile]:
    """Open transformers' ``tf_model.h5`` lazily (HDF5 checks the file's recorded end
    against its size at open, so a truncated file fails here)."""
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise CheckpointError(f"{path}: truncated or not an HDF5 file ({_first_line(e)})") from None
    try:
        entries = {}

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                entries[_hf_name(name)] = (name, tuple(obj.shape), str(obj.dtype))

        try:
            f.visititems(visit)
        except (OSError, RuntimeError, ValueError) as e:
            raise CheckpointError(f"{path}: corrupt HDF5 file ({_first_line(e)})") from None
        yield TensorFile(
            path, entries, lambda name: np.asarray(f[name]), lambda name, a, b: f[name][a:b]
        )
    finally:
        f.close()


def expected_shapes(config: GPT2Config, n_inner: int | None = None) -> dict[str, tuple[int, ...]]:
    """HF tensor name -> shape of every parameter a GPT-2 of ``config`` has, worked out from
    the config alone (no TensorFlow), so a file can be checked before a model is built.
    ``n_inner`` is HF's MLP width (None: GPT-2's 4 x n_embd)."""
    c, inner = config.n_embd, n_inner or 4 * config.n_embd
    shapes: dict[str, tuple[int, ...]] = {
        "wte.weight": (config.vocab_size, c),
        "wpe.weight": (config.n_positions, c),
    }
    for i in range(config.n_layer):
        for name, shape in (
            ("ln_1.weight", (c,)),
            ("ln_1.bias", (c,)),
            ("attn.c_attn.weight", (c, 3 * c)),
            ("attn.c_attn.bias", (3 * c,)),
            ("attn.c_proj.weight", (c, c)),
            ("attn.c_proj.bias", (c,)),
            ("ln_2.weight", (c,)),
            ("ln_2.bias", (c,)),
            ("mlp.c_fc.weight", (c, inner)),
            ("mlp.c_fc.bias", (inner,)),
            ("mlp.c_proj.weight", (inner, c)),
            ("mlp.c_proj.bias", (c,)),
        ):
            shapes[f"h.{i}.{name}"] = shape
    shapes["ln_f.weight"] = shapes["ln_f.bias"] = (c,)
    return shapes


_LAYER = re.compile(r"^h\.(\d+)\.")


def _names(names: list[str]) -> str:
    more = f" and {len(names) - 3} more" if len(names) > 3 else ""
    return f"{', '.join(names[:3])}{more}"


def validate_tensors(
    shapes: Mapping[str, tuple[int, ...]],
    expected: Mapping[str, tuple[int, ...]],
    source: str | os.PathLike,
    dtypes: Mapping[str, str] | None = None,
) -> None:
    """Check a file's tensors (HF names -> shapes) against what its config implies: every
    parameter present, none for layers the config does not have, every shape right, every
    dtype a float. transformers would silently start missing layers from random weights;
    we refuse, naming the file and the first tensor at fault."""
    shapes = {n: s for n, s in shapes.items() if not _SKIPPED.search(n)}
    n_layer = sum(1 for n in expected if n.endswith(".ln_1.weight"))
    held = {int(m.group(1)) for n in shapes if (m := _LAYER.match(n))}
    extra = sorted(i for i in held if i >= n_layer)
    if extra:
        raise CheckpointError(
            f"{source}: the file holds {extra[-1] + 1} layers but config.json says "
            f"n_layer={n_layer}: the config does not match the tensors"
        )
    missing = [n for n in expected if n not in shapes]
    if missing:
        hint = ""
        if held and max(held) + 1 < n_layer:
            hint = f"config.json says n_layer={n_layer} but the file holds {max(held) + 1}: "
        raise CheckpointError(f"{source}: {hint}missing tensors {_names(missing)}")
    for name, want in expected.items():
        have = tuple(shapes[name])
        flat_bias = len(want) == 1 and have[-1:] == want and int(np.prod(have)) == want[0]
        if have != want and not flat_bias:  # HF's TF layout stores biases as (1, n)
            raise CheckpointError(
                f"{source}: {name} has shape {have} but config.json implies {want}: "
                f"the config does not match the tensors"
            )
        dtype = (dtypes or {}).get(name, "float32")
        if dtype not in ("float16", "float32", "float64"):
            raise CheckpointError(
                f"{source}: {name} is {dtype}, not a float16/32/64 tensor this tool reads"
            )


def check_finite(name: str, value, source: str | os.PathLike) -> None:
    """Refuse a weight holding NaN or infinity: it would turn every logit into NaN, and
    generation into one token repeated (or a crash in sampling), far from the cause."""
    if not np.isfinite(value).all():
        raise CheckpointError(
            f"{source}: tensor {name} holds NaN or infinite values (a corrupt checkpoint, "
            f"or a run that diverged)"
        )


_BLOCK_BYTES = 8 << 20  # a big tensor is read and assigned this much at a time


def assign_tensors(model, tensors: Mapping[str, np.ndarray], source: str | os.PathLike) -> None:
    """Copy HF-named tensors into ``model``: all checked (names, shapes) before the model's
    weights are built, then read one at a time, cast to float32 and refused if not finite.

    From a file, a big tensor goes in blocks of rows written into the variable in place:
    assigning a whole 154 MB wte held it three times over at once (the array read, its
    float32 tensor, the variable's new buffer), which set the load's peak memory."""
    if not isinstance(tensors, TensorFile):
        tensors = {_hf_name(n): v for n, v in tensors.items()}
    shapes = (
        tensors.shapes
        if isinstance(tensors, TensorFile)
        else {n: tuple(np.shape(v)) for n, v in tensors.items()}
    )
    dtypes = (
        {n: tensors.dtype(n) for n in tensors}
        if isinstance(tensors, TensorFile)
        else {n: str(np.asarray(v).dtype) for n, v in tensors.items()}
    )
    validate_tensors(shapes, expected_shapes(model.config), source, dtypes)
    for name, var in hf_variables(model).items():
        shape = tuple(var.shape)
        block = max(1, _BLOCK_BYTES // (4 * int(np.prod(shape[1:], dtype=np.int64))))
        if isinstance(tensors, TensorFile) and shapes[name] == shape and shape[0] > block:
            for start in range(0, shape[0], block):
                stop = min(start + block, shape[0])
                value = tensors.rows(name, start, stop).astype(np.float32, copy=False)
                check_finite(name, value, source)
                var.value[start:stop].assign(value)  # (rows, ...) written in place
            continue
        value = np.asarray(tensors[name]).reshape(shape).astype(np.float32, copy=False)
        check_finite(name, value, source)  # after the cast: a float64 1e300 is inf here
        var.assign(value)


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
    """A local checkpoint directory for a directory path or a hub id (cache first), with
    no special file in it (see ``_no_special_files``)."""
    path = Path(spec).expanduser()
    try:
        is_dir = path.is_dir()
    except OSError as e:  # a name too long for the filesystem, a loop of links
        raise CheckpointError(f"{spec}: cannot look it up ({e.strerror or e})") from None
    if is_dir:
        return _no_special_files(path)
    if looks_like_path(spec):
        if path.exists():
            raise CheckpointError(f"{spec}: not a directory (a checkpoint is a directory)")
        raise CheckpointError(f"{spec}: no such checkpoint directory")
    patterns = _HUB_PATTERNS if weights else [p for p in _HUB_PATTERNS if p != SAFETENSORS_NAME]
    return _no_special_files(_hub_snapshot(spec, download=download, patterns=patterns))


def _no_special_files(directory: Path) -> Path:
    """``directory``, unless a file in it is a FIFO, socket or device: transformers and
    tokenizers open whichever files they look for (generation_config.json,
    tokenizer_config.json...), and opening a FIFO to read waits for a writer forever."""
    from gpt2core.fsutil import special_entry

    try:
        found = special_entry(directory)
    except OSError as e:
        raise CheckpointError(f"{directory}: cannot list it ({e.strerror or e})") from None
    if found is not None:
        name, kind = found
        raise CheckpointError(f"{directory / name}: is {kind}, not a regular file")
    return directory


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


def weights_file(directory: Path) -> Path:
    """The weights file a checkpoint loads from: model.safetensors first, as transformers
    picks it."""
    for name in (SAFETENSORS_NAME, TF_H5_NAME):
        path = directory / name
        if path.is_file():
            try:  # the readers' own messages for a file we may not read are wrong: safetensors
                with open(path, "rb"):  # says "No such file", h5py "not an HDF5 file"
                    pass
            except OSError as e:
                raise CheckpointError(f"{path}: cannot read it ({e.strerror or e})") from None
            return path
    raise CheckpointError(f"{directory}: no {SAFETENSORS_NAME} or {TF_H5_NAME} (no weights)")


def open_weights(path: Path):
    """A context manager yielding the ``TensorFile`` of a weights file."""
    return read_safetensors(path) if path.name == SAFETENSORS_NAME else read_tf_h5(path)


def check_checkpoint(directory: Path, n_inner: int | None = None) -> tuple[GPT2Config, Path]:
    """Everything about a checkpoint directory that can be checked without building a
    model: config (types, bounds), memory, and the weights file's header (every tensor
    present, shapes matching, nothing extra). Returns (config, weights file)."""
    config = load_config(directory)
    expected = expected_shapes(config, n_inner)
    try:
        check_fits_memory(sum(int(np.prod(s)) for s in expected.values()), str(directory))
    except ConfigError as e:
        raise CheckpointError(str(e)) from None
    path = weights_file(directory)
    with open_weights(path) as tensors:
        validate_tensors(tensors.shapes, expected, path, {n: tensors.dtype(n) for n in tensors})
    return config, path


def load_model(spec: str | os.PathLike):
    """Load a GPT-2 from a checkpoint directory or hub id. Returns (model, directory).

    The checkpoint is checked whole before the model's weights are allocated, and read
    one tensor at a time into them."""
    directory = resolve(str(spec))
    config, path = check_checkpoint(directory)
    raw = GPT2Config.read_dict(directory)  # read (and checked) a moment ago
    unsupported = [k for k, bad in _UNSUPPORTED.items() if bad(raw)]
    if unsupported:
        raise CheckpointError(
            f"{directory / CONFIG_NAME}: uses {', '.join(unsupported)}, which gpt2core's "
            f"GPT-2 does not implement (load it as pretrained:{directory})"
        )
    from gpt2core.model import GPT2  # TensorFlow: only once the checkpoint passed its checks

    model = GPT2(config, init=False)  # zeros: the checkpoint overwrites every weight
    with open_weights(path) as tensors:
        assign_tensors(model, tensors, path)
    return model, directory


# HF GPT-2 options that change the computation; gpt2core implements GPT-2 as published.
_UNSUPPORTED = {
    "n_inner": lambda d: d.get("n_inner") not in (None, 4 * (d.get("n_embd") or 0)),
    "scale_attn_by_inverse_layer_idx": lambda d: bool(d.get("scale_attn_by_inverse_layer_idx")),
    "reorder_and_upcast_attn": lambda d: bool(d.get("reorder_and_upcast_attn")),
    "scale_attn_weights=false": lambda d: d.get("scale_attn_weights", True) is False,
    "add_cross_attention": lambda d: bool(d.get("add_cross_attention")),
}


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
