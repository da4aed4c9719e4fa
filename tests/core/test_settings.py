"""Each setting is declared once, on Settings; :set, its help and completions follow it.
Also the cheap top-n selection the candidates use."""

import dataclasses

import numpy as np
import pytest

from gpt2core.sampling import USER_SETTINGS, Settings, SettingsError, setting_range, top_ids
from repl.commands import BY_NAME, help_text

FIELDS = dataclasses.fields(Settings)


def test_every_setting_declares_its_range_parser_and_check():
    for f in FIELDS:
        assert set(f.metadata) == {"range", "parse", "ok", "user"}, f.name
        assert f.metadata["parse"](str(f.default)) == f.default  # what :settings shows
        assert f.metadata["ok"](f.default)
        assert setting_range(f.name) == f.metadata["range"]


def test_set_offers_exactly_the_user_settings():
    people = (
        "temperature",
        "top_k",
        "top_p",
        "repetition_penalty",
        "max_new_tokens",
        "seed",
        "greedy",
    )
    assert USER_SETTINGS == people
    assert BY_NAME["set"].completions == tuple(f"{k}=" for k in people)
    line = next(x for x in help_text().splitlines() if x.startswith(":set"))
    assert all(k in line for k in people)
    assert "candidates" not in line and "stop_at_eos" not in line
    # internal settings are still accepted from code and the front ends
    assert Settings().parsed({"candidates": "10", "stop-at-eos": "off"}).candidates == 10


@pytest.mark.parametrize("f", FIELDS, ids=lambda f: f.name)
def test_a_bad_value_names_the_setting_and_its_range(f):
    text = "maybe" if f.type == "bool" else "abc"
    with pytest.raises(SettingsError) as e:
        Settings().parsed({f.name: text})
    assert str(e.value) == f"{f.name}='{text}' is invalid: {f.name} must be {f.metadata['range']}"
    with pytest.raises(SettingsError) as e:  # typed values go through the same check
        Settings(**{f.name: -7 if f.name != "seed" else "7"})
    assert f"{f.name} must be {f.metadata['range']}" in str(e.value)


def test_unknown_settings_list_the_user_settings():
    for attempt in (
        lambda: Settings().parsed({"colour": "red"}),
        lambda: Settings().updated(colour=1),
    ):
        with pytest.raises(SettingsError) as e:
            attempt()
        assert str(e.value) == f"unknown setting 'colour' (settings: {', '.join(USER_SETTINGS)})"


@pytest.mark.parametrize("vocab", [7, 100, 1000, 50257])
def test_top_ids_is_a_full_sort_prefix(vocab):
    rng = np.random.default_rng(vocab)
    for trial in range(30):
        x = rng.standard_normal(vocab).astype(np.float32)
        if trial % 3 == 1:
            x = np.round(x * 2).astype(np.float32)  # ties: the lower id first
        if trial % 3 == 2:
            x[rng.random(vocab) < 0.9] = -np.inf
        for n in (1, 5, 50):
            want = np.lexsort((np.arange(vocab), -x))[:n]
            np.testing.assert_array_equal(top_ids(x, n), want)
