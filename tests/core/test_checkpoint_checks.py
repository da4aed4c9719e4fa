"""Bad checkpoints, loaded as scratch:DIR (gpt2core) and pretrained:DIR (transformers),
from model.safetensors and from tf_model.h5: each is one CheckpointError line naming the
file, raised before the model's weights are allocated (transformers' from_pretrained is
not even called), except NaN/inf weights, which need reading."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from gpt2core.config import MAX_SIZES, ConfigError, GPT2Config
from gpt2core.errors import UserError
from gpt2core.specs import load_lm
from gpt2core.weights import CheckpointError, expected_shapes, hf_variables

FORMATS = {"safetensors": "model.safetensors", "h5": "tf_model.h5"}


@pytest.fixture
def source(request, scratch_tiny_dir, hf_tiny_dir):
    """(directory of the requested format, its weights file name)."""
    fmt = request.param
    return (scratch_tiny_dir if fmt == "safetensors" else hf_tiny_dir), FORMATS[fmt]


@pytest.fixture
def allocations(monkeypatch):
    """Counts gpt2core models built and transformers models loaded."""
    import transformers

    import gpt2core.model

    calls = []
    real_gpt2 = gpt2core.model.GPT2
    real_from_pretrained = transformers.TFGPT2LMHeadModel.from_pretrained.__func__

    def gpt2(*args, **kwargs):
        calls.append("GPT2")
        return real_gpt2(*args, **kwargs)

    def from_pretrained(cls, *args, **kwargs):
        calls.append("from_pretrained")
        return real_from_pretrained(cls, *args, **kwargs)

    monkeypatch.setattr(gpt2core.model, "GPT2", gpt2)
    monkeypatch.setattr(
        transformers.TFGPT2LMHeadModel, "from_pretrained", classmethod(from_pretrained)
    )
    return calls


def variant(src, tmp_path, **config_changes):
    d = tmp_path / "ck"
    shutil.copytree(src, d)
    if config_changes:
        cfg = json.loads((d / "config.json").read_text())
        cfg.update(config_changes)
        (d / "config.json").write_text(json.dumps(cfg))
    return d


def refused(spec: str, *match: str) -> str:
    with pytest.raises(CheckpointError) as e:
        load_lm(spec)
    message = str(e.value)
    assert "\n" not in message
    for m in match:
        assert m in message, message
    return message


KINDS = ["scratch", "pretrained"]
both_formats = pytest.mark.parametrize("source", list(FORMATS), indirect=True)


@both_formats
@pytest.mark.parametrize("kind", KINDS)
def test_truncated_weights(kind, source, tmp_path, allocations):
    src, name = source
    d = variant(src, tmp_path)
    data = (d / name).read_bytes()
    (d / name).write_bytes(data[: len(data) // 2])
    refused(f"{kind}:{d}", f"{d / name}: truncated")
    assert allocations == []


@both_formats
@pytest.mark.parametrize("kind", KINDS)
def test_weights_we_may_not_read_say_so(kind, source, tmp_path, monkeypatch):
    """A weights file without read permission: safetensors said "No such file or directory"
    and h5py "truncated or not an HDF5 file" (a hostile probe's find, as an unprivileged
    user). Root reads any file: there the kernel's refusal is played by ``open``."""
    import builtins
    import errno
    import os

    from gpt2core import weights

    src, name = source
    d = variant(src, tmp_path)
    (d / name).chmod(0)
    if os.access(d / name, os.R_OK):

        def refuse(path, *a, **k):
            if str(path) == str(d / name):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
            return builtins.open(path, *a, **k)

        monkeypatch.setattr(weights, "open", refuse, raising=False)
    refused(f"{kind}:{d}", f"{d / name}: cannot read it (Permission denied)")


@both_formats
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "change, match",
    [
        ({"n_embd": "32"}, "n_embd must be an integer, got '32'"),
        ({"n_layer": 2.0}, "n_layer must be an integer"),
        ({"n_head": True}, "n_head must be an integer"),
        ({"n_positions": 1_000_000_000}, "n_positions is 1000000000, above"),
        ({"vocab_size": 10**12}, "vocab_size is 1000000000000, above"),
        ({"layer_norm_epsilon": float("nan")}, "layer_norm_epsilon must be a finite number"),
        ({"n_layer": 4}, "config.json says n_layer=4 but the file holds 2: missing tensors h.2"),
        ({"n_layer": 1}, "the file holds 2 layers but config.json says n_layer=1"),
        ({"n_embd": 64}, "wte.weight has shape (50257, 32) but config.json implies (50257, 64)"),
        ({"vocab_size": 50000}, "wte.weight has shape (50257, 32)"),
        ({"n_positions": 64}, "wpe.weight has shape (128, 32)"),
    ],
)
def test_config_that_cannot_describe_the_file(kind, source, change, match, tmp_path, allocations):
    src, name = source
    d = variant(src, tmp_path, **change)
    message = refused(f"{kind}:{d}", match)
    assert str(d) in message
    assert allocations == []  # refused before any model was built


@both_formats
@pytest.mark.parametrize("kind", KINDS)
def test_nan_or_inf_weight_names_the_tensor(kind, source, tmp_path):
    src, name = source
    d = variant(src, tmp_path)
    bad = "h.1.mlp.c_fc.weight"
    if name == "model.safetensors":
        from safetensors.numpy import load_file, save_file

        tensors = load_file(str(d / name))
        tensors[bad][3, 5] = np.nan
        save_file(tensors, str(d / name), metadata={"format": "pt"})
    else:
        import h5py

        with h5py.File(d / name, "r+") as f:
            [path] = [k for k in _datasets(f) if "h_._1/mlp/c_fc/weight" in k]
            value = f[path][...]
            value[3, 5] = np.inf
            f[path][...] = value
    refused(f"{kind}:{d}", f"{d / name}: tensor {bad} holds NaN or infinite values")


def _datasets(f):
    import h5py

    names = []
    f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
    return names


@pytest.mark.parametrize("kind", KINDS)
def test_too_big_for_this_machine_is_refused_before_allocating(
    kind, scratch_tiny_dir, monkeypatch, allocations
):
    import gpt2core.config

    monkeypatch.setattr(gpt2core.config, "available_memory", lambda: 4 * 2**20)
    refused(f"{kind}:{scratch_tiny_dir}", "parameters need about", "GiB free")
    assert allocations == []


def test_weights_transformers_would_leave_random_are_refused(hf_tiny_dir, tmp_path):
    """A tf_model.h5 whose top-level group is renamed: every tensor is there for gpt2core
    (which loads it), but transformers matches none and would run on random weights."""
    import h5py

    d = variant(hf_tiny_dir, tmp_path)
    with h5py.File(d / "tf_model.h5", "r+") as f:
        f.move("transformer", "renamed")
        f.attrs["layer_names"] = ["renamed"]
    assert load_lm(f"scratch:{d}").n_positions == 128
    refused(f"pretrained:{d}", "tf_model.h5: transformers found no weights for transformer")


def test_transformers_own_errors_are_one_line(scratch_tiny_dir, monkeypatch):
    """Anything transformers raises while loading (its errors are untyped: OSError,
    ValueError, TypeError from a broken error constructor, ...) is one line."""
    from transformers import modeling_tf_pytorch_utils

    def fails(*args, **kwargs):
        raise TypeError("__init__() missing 2 required positional arguments\nmore detail")

    monkeypatch.setattr(modeling_tf_pytorch_utils, "load_pytorch_state_dict_in_tf2_model", fails)
    refused(
        f"pretrained:{scratch_tiny_dir}",
        "model.safetensors: transformers cannot load it (TypeError: __init__() missing",
    )


def test_bugs_in_our_own_checks_still_raise(scratch_tiny_dir, monkeypatch):
    """Only transformers' call is caught broadly: a bug in gpt2core is not a user error."""
    import gpt2core.weights

    def broken(*args, **kwargs):
        raise ValueError("a bug")

    monkeypatch.setattr(gpt2core.weights, "validate_tensors", broken)
    for kind in KINDS:
        with pytest.raises(ValueError, match="a bug") as e:
            load_lm(f"{kind}:{scratch_tiny_dir}")
        assert type(e.value) is ValueError


def test_options_gpt2core_does_not_implement_are_refused_for_scratch(scratch_tiny_dir, tmp_path):
    d = variant(scratch_tiny_dir, tmp_path, scale_attn_by_inverse_layer_idx=True)
    refused(f"scratch:{d}", "scale_attn_by_inverse_layer_idx", f"pretrained:{d}")


def test_half_precision_file_loads_and_integer_tensors_do_not(scratch_tiny_dir, tmp_path):
    from safetensors.numpy import load_file, save_file

    from gpt2core.weights import load_model

    ref, _ = load_model(scratch_tiny_dir)
    d = variant(scratch_tiny_dir, tmp_path)
    tensors = load_file(str(d / "model.safetensors"))
    half = {k: v.astype(np.float16) for k, v in tensors.items()}
    save_file(half, str(d / "model.safetensors"), metadata={"format": "pt"})
    model, _ = load_model(d)
    got, want = hf_variables(model), hf_variables(ref)
    np.testing.assert_allclose(got["wte.weight"].numpy(), want["wte.weight"].numpy(), atol=1e-3)
    half["ln_f.bias"] = tensors["ln_f.bias"].astype(np.int32)
    save_file(half, str(d / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="ln_f.bias is int32"):
        load_model(d)


def test_expected_shapes_are_the_models_own():
    from gpt2core.model import GPT2

    config = GPT2Config(n_layer=3, n_head=2, n_embd=16, n_positions=24, vocab_size=50)
    variables = hf_variables(GPT2(config))
    assert expected_shapes(config) == {n: tuple(v.shape) for n, v in variables.items()}
    assert sum(int(np.prod(s)) for s in expected_shapes(config).values()) == config.num_params()


# -- config.json alone (no TensorFlow) ----------------------------------------------------

BASE = {"n_layer": 2, "n_head": 2, "n_embd": 32, "n_positions": 64, "vocab_size": 100}


@pytest.mark.parametrize("key", ["n_layer", "n_head", "n_embd", "n_positions", "vocab_size"])
@pytest.mark.parametrize("value", ["32", 32.0, True, None, [32], -1, 0])
def test_sizes_must_be_positive_json_integers(key, value):
    with pytest.raises(ConfigError, match=key):
        GPT2Config.from_hf_dict({**BASE, key: value})


@pytest.mark.parametrize("key", list(MAX_SIZES))
def test_sizes_have_upper_bounds(key):
    too_big = MAX_SIZES[key] + 1
    if key == "n_head":
        fields = {**BASE, "n_head": too_big, "n_embd": too_big}
    else:
        fields = {**BASE, key: too_big}
    with pytest.raises(ConfigError, match=f"{key} is {too_big}, above this tool's limit"):
        GPT2Config.from_hf_dict(fields)
    ok = {**BASE, key: MAX_SIZES[key]}
    if key == "n_head":
        ok["n_embd"] = MAX_SIZES["n_head"]
    GPT2Config.from_hf_dict(ok)  # the bound itself is accepted (nothing is allocated here)


@pytest.mark.parametrize(
    "key, value",
    [
        ("layer_norm_epsilon", "1e-5"),
        ("layer_norm_epsilon", float("inf")),
        ("layer_norm_epsilon", 0),
        ("resid_pdrop", float("nan")),
        ("resid_pdrop", 1.0),
        ("initializer_range", -0.1),
        ("bos_token_id", "50256"),
        ("eos_token_id", -1),
    ],
)
def test_rates_and_token_ids_are_checked(key, value):
    with pytest.raises(ConfigError, match=f"{key}|dropout"):
        GPT2Config.from_hf_dict({**BASE, key: value})


def test_a_json_file_nested_too_deep_is_refused_before_transformers_reads_it(
    hf_tiny_dir, tmp_path, allocations
):
    """transformers reads every JSON file of a checkpoint it knows (generation_config.json
    here) with json.load, which would recurse ~1,000 frames into a file nested 100,000
    deep: refused first, one line, transformers not called."""
    d = variant(hf_tiny_dir, tmp_path)
    (d / "generation_config.json").write_text("[" * 100_000 + "]" * 100_000)
    refused(f"pretrained:{d}", "generation_config.json", "nested deeper than")
    assert allocations == []


def _checkpoint_files(directory):
    return sorted(p.name for p in directory.iterdir() if p.is_file())


@pytest.mark.parametrize("kind", ["scratch", "pretrained"])
@pytest.mark.parametrize("fmt", ["safetensors", "h5"])
def test_a_fifo_in_place_of_any_checkpoint_file_is_one_line_not_a_hang(
    kind, fmt, scratch_tiny_dir, hf_tiny_dir, tmp_path
):
    """Opening a FIFO to read waits for a writer, forever if none comes: every file a load
    reads (config, weights, tokenizer) is checked before it is opened to read."""
    import os
    import threading

    source = scratch_tiny_dir if fmt == "safetensors" else hf_tiny_dir
    problems = []
    for name in _checkpoint_files(source):
        d = tmp_path / f"{kind}-{fmt}-{name}"
        shutil.copytree(source, d)
        (d / name).unlink()
        os.mkfifo(d / name)
        outcome = []

        def load(d=d, outcome=outcome):
            try:
                load_lm(f"{kind}:{d}")
                outcome.append("loaded")
            except Exception as error:  # noqa: BLE001 (the check below says which)
                outcome.append(error)

        t = threading.Thread(target=load, daemon=True)
        t.start()
        t.join(20)  # a load of this tiny model takes ~1 s
        if t.is_alive():  # unblock the reader so the thread can end
            with open(os.open(d / name, os.O_WRONLY | os.O_NONBLOCK), "wb"):
                pass
            t.join(10)
            problems.append(f"{name}: the load hangs")
            continue
        (e,) = outcome
        # a file the load does not need (a .h5 next to safetensors...) may be a FIFO
        if e == "loaded":
            continue
        if not isinstance(e, UserError) or "\n" in str(e) or name not in str(e):
            problems.append(f"{name}: {e!r}")
    assert not problems, problems
