"""gpt2core.jsontext: JSON from outside, every failure a ValueError, and a text nested
too deep refused without the parser ever recursing into it."""

from __future__ import annotations

import json

import pytest

from gpt2core import jsontext


def test_nesting_up_to_the_limit_parses_and_one_more_is_a_value_error():
    deepest = jsontext.MAX_DEPTH
    assert jsontext.loads("[" * deepest + "]" * deepest) == json.loads(
        "[" * deepest + "]" * deepest
    )
    with pytest.raises(ValueError, match=f"nested deeper than {deepest} levels"):
        jsontext.loads("[" * (deepest + 1) + "]" * (deepest + 1))
    with pytest.raises(ValueError, match="nested deeper"):
        jsontext.loads('{"a": ' * (deepest + 1) + "1" + "}" * (deepest + 1))
    with pytest.raises(ValueError, match="nested deeper"):
        jsontext.loads(("[" * 100_000 + "]" * 100_000).encode())  # bytes, as json.loads takes


def test_brackets_inside_strings_are_not_nesting():
    text = json.dumps({"s": "[" * 10_000, "t": '\\"[{' * 1000, "u": ["]" * 500]})
    assert jsontext.loads(text) == json.loads(text)
    # an escaped quote does not end the string: the brackets after it are still inside
    text = '["\\"' + "[" * 1000 + '"]'
    assert jsontext.loads(text) == ['"' + "[" * 1000]


def test_a_deep_text_never_reaches_the_parser(monkeypatch):
    """The reason for measuring first: json.loads reaches RecursionError ~1,000 frames
    down, where a finaliser or the unraisable-exception hook can fail in turn and print
    "Exception ignored in ..." to stderr (seen in CI through a replay file)."""
    calls = []
    monkeypatch.setattr(jsontext.json, "loads", lambda *a, **k: calls.append(a))
    with pytest.raises(ValueError):
        jsontext.loads("[" * 100_000 + "]" * 100_000)
    assert calls == []


def test_other_failures_are_value_errors():
    for text in ("{not json", "[1, 2", '{"n": ' + "9" * 5000 + "}"):
        with pytest.raises(ValueError):
            jsontext.loads(text)


def test_too_deep_file_finds_the_deep_one_and_skips_tokenizer_json(tmp_path):
    (tmp_path / "config.json").write_text('{"n_layer": 2}')
    (tmp_path / "tokenizer.json").write_text("[" * 1000 + "]" * 1000)  # tokenizers' own limit
    assert jsontext.too_deep_file(tmp_path) is None
    (tmp_path / "special_tokens_map.json").write_text('{"a": ' * 300 + "1" + "}" * 300)
    assert jsontext.too_deep_file(tmp_path) == tmp_path / "special_tokens_map.json"
    assert jsontext.too_deep_file(tmp_path / "missing") is None


def test_an_unterminated_string_of_escaped_quotes_is_measured_in_linear_time():
    """The string pattern was tried again from each escaped quote of a string that never
    closes, each try scanning to the end: 16 KB took about a second and a 1 MB history
    or config.json held the app for hours."""
    import time

    text = "[" * (jsontext.MAX_DEPTH + 1) + '"' + '\\"' * 200_000 + "\\"
    start = time.perf_counter()
    with pytest.raises(ValueError):
        jsontext.loads(text)
    assert time.perf_counter() - start < 2
