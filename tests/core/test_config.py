import json

import pytest

from gpt2core.config import PRESETS, ConfigError, GPT2Config, preset


def test_presets_have_the_published_shapes():
    assert PRESETS["gpt2"].num_params() == 124_439_808  # GPT-2 small, tied head
    assert PRESETS["gpt2-medium"].num_params() == 354_823_168
    s = preset("shakespeare-cpu")
    assert (s.n_layer, s.n_head, s.n_embd, s.n_positions) == (4, 4, 128, 64)
    assert PRESETS["gpt2"].layer_norm_epsilon == 1e-5


def test_hf_config_round_trip(tmp_path):
    cfg = GPT2Config(n_layer=3, n_head=4, n_embd=64, n_positions=96, vocab_size=65, dropout=0.1)
    cfg.save(tmp_path)
    d = json.loads((tmp_path / "config.json").read_text())
    assert d["n_ctx"] == 96 and d["resid_pdrop"] == 0.1 and d["model_type"] == "gpt2"
    assert GPT2Config.load(tmp_path) == cfg


def test_reads_transformers_config(tmp_path):
    from transformers import GPT2Config as HFConfig

    HFConfig(n_layer=2, n_head=2, n_embd=32).save_pretrained(tmp_path)
    cfg = GPT2Config.load(tmp_path)
    assert (cfg.n_layer, cfg.n_embd, cfg.n_positions, cfg.vocab_size) == (2, 32, 1024, 50257)


@pytest.mark.parametrize("bad", [dict(n_embd=30, n_head=4), dict(n_layer=0), dict(dropout=1.5)])
def test_invalid_configs_are_rejected(bad):
    with pytest.raises(ConfigError):
        GPT2Config(**bad)


def test_bad_config_file_names_the_file(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match="config.json"):
        GPT2Config.load(tmp_path)
    with pytest.raises(ConfigError, match="unknown preset"):
        preset("huge")


@pytest.mark.parametrize(
    "text",
    [
        "[" * 100_000 + "]" * 100_000,  # json.loads: RecursionError, not JSONDecodeError
        '{"n_layer": ' + "1" * 5000 + "}",  # a ValueError, not JSONDecodeError
    ],
)
def test_config_json_cannot_read_is_one_error(tmp_path, text):
    (tmp_path / "config.json").write_text(text)
    with pytest.raises(ConfigError, match="config.json: not valid JSON"):
        GPT2Config.load(tmp_path)
