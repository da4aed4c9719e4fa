import pytest

from gpt2core.tokenizer import (
    CharTokenizer,
    TokenizerError,
    load_tokenizer,
    piece,
    stream_decoder,
    train_bpe,
)
from tests.conftest import SHAKESPEARE

MIXED = "Hello, 세계! 안녕하세요 🙂👍🏽 café — naïve 日本語\n\ttabs"


def test_real_gpt2_ids(gpt2_tokenizer):
    assert gpt2_tokenizer.encode("Once upon a time") == [7454, 2402, 257, 640]
    assert gpt2_tokenizer.vocab_size == 50257 and gpt2_tokenizer.eos_id == 50256
    assert [piece(gpt2_tokenizer, i) for i in [7454, 2402]] == ["Once", " upon"]


def test_bundled_gpt2_vocabulary_is_the_shared_one(gpt2_tokenizer):
    bundled = load_tokenizer("gpt2")
    text = SHAKESPEARE.read_text(encoding="utf-8")[:20000] + MIXED
    assert bundled.encode(text) == gpt2_tokenizer.encode(text)


def test_round_trips(gpt2_tokenizer):
    text = SHAKESPEARE.read_text(encoding="utf-8")
    assert gpt2_tokenizer.decode(gpt2_tokenizer.encode(text)) == text
    assert gpt2_tokenizer.decode(gpt2_tokenizer.encode(MIXED)) == MIXED


def _streamed(tok, ids):
    dec = stream_decoder(tok)
    parts = [dec.push(i) for i in ids]
    return parts, "".join(parts) + dec.flush()


def test_streaming_never_emits_broken_characters(gpt2_tokenizer):
    ids = gpt2_tokenizer.encode(MIXED)
    parts, text = _streamed(gpt2_tokenizer, ids)
    assert text == gpt2_tokenizer.decode(ids)
    assert all("\ufffd" not in p for p in parts)
    assert "" in parts  # some Korean/emoji characters really were split across tokens
    for cut in range(len(ids) + 1):  # every token boundary
        _, head = _streamed(gpt2_tokenizer, ids[:cut])
        assert head == gpt2_tokenizer.decode(ids[:cut])


def test_char_tokenizer_round_trip_and_save(tmp_path):
    text = SHAKESPEARE.read_text(encoding="utf-8")
    tok = CharTokenizer.from_text(text)
    assert tok.vocab_size == 65
    assert tok.decode(tok.encode(text)) == text
    tok.save(tmp_path)
    again = load_tokenizer(tmp_path)
    assert isinstance(again, CharTokenizer) and again.chars == tok.chars
    with pytest.raises(TokenizerError, match="not in this model"):
        tok.encode("🙂")


def test_char_vocabulary_nested_too_deep_is_one_error(tmp_path):
    (tmp_path / "char_vocab.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(TokenizerError, match="not a character vocabulary"):
        load_tokenizer(tmp_path)


def test_trained_bpe_round_trip_and_save(tmp_path):
    text = SHAKESPEARE.read_text(encoding="utf-8")[:200_000]
    tok = train_bpe([text], 500)
    assert tok.vocab_size == 500
    ids = tok.encode(text[:5000])
    assert len(ids) < 5000 / 2  # merges were learned
    assert tok.decode(tok.encode(MIXED)) == MIXED  # byte-level: any text round-trips
    tok.save(tmp_path)
    again = load_tokenizer(tmp_path)
    assert again.encode(MIXED) == tok.encode(MIXED)
    _, streamed = _streamed(again, again.encode(MIXED))
    assert streamed == MIXED


@pytest.mark.parametrize(
    "name, text",
    [
        ("tokenizer.json", '{"version": "1.0", "trunc'),  # cut short: a bare Exception
        ("tokenizer.json", '{"version": "1.0"}'),  # no model
        ("tokenizer_config.json", "[" * 100_000 + "]" * 100_000),  # nested too deep
    ],
)
def test_corrupt_bpe_tokenizer_file_is_one_clear_error(gpt2_tokenizer, tmp_path, name, text):
    gpt2_tokenizer.save(tmp_path)  # the files a checkpoint holds
    assert (tmp_path / name).is_file()
    (tmp_path / name).write_text(text)
    with pytest.raises(TokenizerError, match="cannot load a GPT-2 tokenizer"):
        load_tokenizer(tmp_path)


def test_tokenizer_json_without_a_model_beside_vocab_and_merges(shared_tokenizer_dir, tmp_path):
    import shutil

    shutil.copytree(shared_tokenizer_dir, tmp_path / "tok")
    (tmp_path / "tok" / "tokenizer.json").write_text('{"version": "1.0"}')  # a KeyError
    with pytest.raises(TokenizerError, match="cannot load a GPT-2 tokenizer"):
        load_tokenizer(tmp_path / "tok")


def test_missing_tokenizer_is_one_clear_error(tmp_path):
    with pytest.raises(TokenizerError, match="no tokenizer files"):
        load_tokenizer(tmp_path)
    with pytest.raises(TokenizerError, match="no such checkpoint directory"):
        load_tokenizer(tmp_path / "nope" / "deeper")


def test_a_truncated_merges_file_is_one_line_not_another_tokenizer(shared_tokenizer_dir, tmp_path):
    """A hostile probe's: merges.txt cut to 5,000 bytes loaded silently ('hi' became 'h',
    'i')."""
    import shutil

    import pytest

    from gpt2core.tokenizer import TokenizerError, load_tokenizer

    d = tmp_path / "tok"
    shutil.copytree(shared_tokenizer_dir, d)
    assert load_tokenizer(d).encode("hi") == [5303]
    with open(d / "merges.txt", "r+b") as f:
        f.truncate(5000)
    with pytest.raises(TokenizerError, match="merges for a 50,257-token vocabulary"):
        load_tokenizer(d)
