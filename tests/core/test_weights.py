"""Bad checkpoints give one clear error naming the file; saves are atomic."""

import json
import shutil

import numpy as np
import pytest

from gpt2core.weights import CheckpointError, load_model, resolve, save_checkpoint


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_truncated_safetensors(tmp_path, scratch_tiny_dir):
    d = _copy(scratch_tiny_dir, tmp_path / "ck")
    data = (d / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"model\.safetensors: truncated"):
        load_model(d)


def test_truncated_h5(tmp_path, hf_tiny_dir):
    d = _copy(hf_tiny_dir, tmp_path / "ck")
    data = (d / "tf_model.h5").read_bytes()
    (d / "tf_model.h5").write_bytes(data[: len(data) // 3])
    with pytest.raises(CheckpointError, match=r"tf_model\.h5"):
        load_model(d)


def test_config_that_does_not_match_the_tensors(tmp_path, scratch_tiny_dir):
    d = _copy(scratch_tiny_dir, tmp_path / "ck")
    cfg = json.loads((d / "config.json").read_text())
    cfg["n_embd"], cfg["n_head"] = 64, 2
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="config does not match the tensors") as e:
        load_model(d)
    assert "model.safetensors" in str(e.value)
    cfg["n_embd"], cfg["n_layer"] = 32, 3
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="missing tensors h.2"):
        load_model(d)


def test_missing_pieces(tmp_path, scratch_tiny_dir):
    d = _copy(scratch_tiny_dir, tmp_path / "ck")
    (d / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="no model.safetensors or tf_model.h5"):
        load_model(d)
    (d / "config.json").unlink()
    with pytest.raises(CheckpointError, match="config.json"):
        load_model(d)
    with pytest.raises(CheckpointError, match="no such checkpoint directory"):
        resolve(str(tmp_path / "missing"))


def test_uncached_hub_id_offline_says_what_to_do():
    with pytest.raises(CheckpointError, match="not in the Hugging Face cache") as e:
        resolve("someone/not-a-cached-model")
    assert "connect once" in str(e.value)


def test_interrupted_save_leaves_the_old_checkpoint(tmp_path, scratch_tiny_dir):
    model, _ = load_model(scratch_tiny_dir)
    target = save_checkpoint(model, tmp_path / "ck")
    before = (target / "model.safetensors").read_bytes()
    model.wte.embeddings.assign(np.zeros(model.wte.embeddings.shape, np.float32))

    def crash(tmp):
        raise KeyboardInterrupt  # e.g. Ctrl-C in the middle of a save

    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(model, target, extra=crash)
    assert (target / "model.safetensors").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]  # no temporary left behind
    load_model(target)


def test_hub_id_loads_from_the_huggingface_cache(tmp_path, monkeypatch, scratch_tiny_dir):
    """A hub id resolves through huggingface_hub's cache without any network."""
    from huggingface_hub import constants

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "models--someone--tiny-gpt2"
    shutil.copytree(scratch_tiny_dir, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    directory = resolve("someone/tiny-gpt2")
    assert directory == repo / "snapshots" / commit
    model, _ = load_model("someone/tiny-gpt2")
    assert model.config.n_layer == 2


# -- loading in blocks of rows (how a 124M wte loads without a second copy) -------------


@pytest.fixture
def small_blocks(monkeypatch):
    """Make every multi-row tensor of the tiny model go through the block path."""
    import gpt2core.weights as w

    monkeypatch.setattr(w, "_BLOCK_BYTES", 512 * 32 * 4)  # 512 rows of a 32-wide tensor


def _arrays(model):
    from gpt2core.weights import model_tensors

    return model_tensors(model)


@pytest.mark.parametrize("fixture", ["scratch_tiny_dir", "hf_tiny_dir"])
def test_block_loading_equals_whole_tensors(request, fixture, monkeypatch):
    import gpt2core.weights as w

    d = request.getfixturevalue(fixture)
    whole, _ = load_model(d)  # default block: the tiny tensors are read whole
    monkeypatch.setattr(w, "_BLOCK_BYTES", 512 * 32 * 4)
    calls = []
    rows = w.TensorFile.rows
    monkeypatch.setattr(w.TensorFile, "rows", lambda self, *a: calls.append(a) or rows(self, *a))
    blocks, _ = load_model(d)
    assert len(calls) > 20  # wte alone (50257 rows) is 99 blocks
    a, b = _arrays(whole), _arrays(blocks)
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    # the model is really loaded: not the zeros it was built with
    assert np.abs(b["wte.weight"]).max() > 0 and np.abs(b["h.1.mlp.c_fc.weight"]).max() > 0


def test_nan_in_a_late_block_is_refused(tmp_path, scratch_tiny_dir, small_blocks):
    from safetensors.numpy import load_file, save_file

    d = _copy(scratch_tiny_dir, tmp_path / "ck")
    tensors = load_file(d / "model.safetensors")
    wte = tensors["wte.weight"].copy()
    wte[-2, 5] = np.nan  # in the last block, after thousands of good ones
    tensors["wte.weight"] = wte
    save_file(tensors, d / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"wte\.weight holds NaN"):
        load_model(d)


def test_float16_file_loads_in_blocks(tmp_path, scratch_tiny_dir, small_blocks):
    from safetensors.numpy import load_file, save_file

    d = _copy(scratch_tiny_dir, tmp_path / "ck")
    tensors = {k: v.astype(np.float16) for k, v in load_file(d / "model.safetensors").items()}
    save_file(tensors, d / "model.safetensors")
    model, _ = load_model(d)
    got = _arrays(model)
    for name, value in tensors.items():
        np.testing.assert_array_equal(got[name], value.astype(np.float32), err_msg=name)
