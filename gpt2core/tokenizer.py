"""Tokenizers behind one small interface: GPT-2 byte-level BPE, characters, trained BPE.

- ``BPETokenizer`` wraps transformers' ``GPT2TokenizerFast``: the published GPT-2
  vocabulary (hub id or directory) and BPEs we train on a corpus with the tokenizers
  library; both are saved as GPT-2's own ``vocab.json`` + ``merges.txt``, so a trained
  checkpoint's tokenizer also loads in transformers.
- ``CharTokenizer``: one id per distinct character of a corpus (nanoGPT's
  shakespeare_char), saved as ``char_vocab.json``.

Byte-level BPE maps *bytes* to tokens, so one character can span several tokens
(a Korean syllable is 3 UTF-8 bytes, an emoji 4). ``StreamDecoder`` keeps the bytes of an
unfinished character until the rest arrives, so streamed text never shows a broken
character and always equals the full decode.
"""

from __future__ import annotations

import codecs
import json
import os
from pathlib import Path
from typing import Protocol

from gpt2core import jsontext
from gpt2core.errors import UserError
from gpt2core.fsutil import atomic_write_text

CHAR_VOCAB_NAME = "char_vocab.json"
EOT = "<|endoftext|>"


class TokenizerError(UserError):
    """A tokenizer that cannot be loaded or text it cannot encode (one-line user error)."""


class StreamDecoder:
    """Turns token ids into text incrementally, holding back partial UTF-8 characters."""

    def __init__(self, token_bytes):
        self._token_bytes = token_bytes
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, token_id: int) -> str:
        """Text completed by this token ('' while a character is still incomplete)."""
        return self._utf8.decode(self._token_bytes(token_id))

    def flush(self) -> str:
        """Whatever is left at the end (an incomplete character becomes U+FFFD)."""
        return self._utf8.decode(b"", final=True)


class Tokenizer(Protocol):
    kind: str
    vocab_size: int
    eos_id: int | None

    def encode(self, text: str) -> list[int]: ...
    def decode(self, ids: list[int]) -> str: ...
    def token_bytes(self, token_id: int) -> bytes: ...
    def save(self, directory: str | os.PathLike) -> None: ...


def piece(tokenizer: Tokenizer, token_id: int) -> str:
    """A token as a person should see it: its text, or its bytes if not valid UTF-8 alone."""
    # a piece of a multi-byte character shows its bytes: ' \\xec' is a space and the first
    # byte of a Korean syllable
    return tokenizer.token_bytes(token_id).decode("utf-8", errors="backslashreplace")


def stream_decoder(tokenizer: Tokenizer) -> StreamDecoder:
    return StreamDecoder(tokenizer.token_bytes)


# -- GPT-2 byte-level BPE -------------------------------------------------------------


def _byte_decoder() -> dict[str, int]:
    """GPT-2's printable-unicode alias of each byte, inverted (see bytes_to_unicode)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs, strict=True)}


def _check_merges(directory: Path, tok) -> None:
    """A byte-level BPE makes every token past its (at most 256) byte tokens and its
    special tokens with one merge, so merges.txt holds at least V - 256 - specials of them.
    A truncated merges.txt is still a valid, shorter one, and it loaded silently as another
    tokenizer ('hi' as 'h', 'i'). Only checked when it is what was read: transformers
    reads tokenizer.json instead when there is one."""
    merges = directory / "merges.txt"
    if (directory / "tokenizer.json").is_file() or not merges.is_file():
        return
    try:
        with open(merges, encoding="utf-8") as f:
            n = sum(1 for line in f if line.strip() and not line.startswith("#version"))
    except (OSError, ValueError) as e:
        raise TokenizerError(f"{merges}: cannot read ({_first_line(e)})") from None
    need = tok.vocab_size - 256 - len(tok.all_special_ids)
    if n < need:
        raise TokenizerError(
            f"{merges}: {n:,} merges for a {tok.vocab_size:,}-token vocabulary, which needs "
            f"at least {need:,}: the file is cut short (or belongs to another vocab.json)"
        )


class BPETokenizer:
    kind = "bpe"

    def __init__(self, hf_tokenizer, name: str = "gpt2"):
        self.hf = hf_tokenizer
        # we cut prompts to the model's window ourselves; silence transformers' length warning
        self.hf.model_max_length = 10**30
        self.name = name
        self.vocab_size = len(hf_tokenizer)
        self.eos_id = hf_tokenizer.eos_token_id
        self._byte_decoder = _byte_decoder()
        self._special = set(hf_tokenizer.all_special_ids)
        self._cache: dict[int, bytes] = {}

    @classmethod
    def from_pretrained(cls, spec: str | os.PathLike) -> BPETokenizer:
        from transformers import GPT2TokenizerFast

        deep = jsontext.too_deep_file(Path(spec))
        if deep is not None:  # before transformers' json.load recurses into it
            raise TokenizerError(
                f"{spec}: cannot load a GPT-2 tokenizer ({deep.name}: nested deeper "
                f"than {jsontext.MAX_DEPTH} levels)"
            )
        try:
            tok = GPT2TokenizerFast.from_pretrained(str(spec))
        except Exception as e:
            # a bad file: tokenizers' own errors (a tokenizer.json cut short) are a bare
            # Exception; transformers' a KeyError, or a RecursionError for JSON nested
            # too deep that too_deep_file missed
            bad_file = (OSError, ValueError, TypeError, KeyError, RecursionError)
            if not isinstance(e, bad_file) and type(e) is not Exception:
                raise
            raise TokenizerError(
                f"{spec}: cannot load a GPT-2 tokenizer ({_first_line(e)})"
            ) from None
        _check_merges(Path(spec), tok)
        return cls(tok, name=str(spec))

    def encode(self, text: str) -> list[int]:
        return self.hf.encode(text)

    def decode(self, ids: list[int]) -> str:
        return self.hf.decode(list(ids), clean_up_tokenization_spaces=False)

    def token_bytes(self, token_id: int) -> bytes:
        raw = self._cache.get(token_id)
        if raw is None:
            tok = self.hf.convert_ids_to_tokens(int(token_id))
            if tok is None:
                raise TokenizerError(f"token id {token_id} is outside the vocabulary")
            if token_id in self._special:
                raw = tok.encode("utf-8")
            else:
                raw = bytes(self._byte_decoder[c] for c in tok)
            self._cache[token_id] = raw
        return raw

    def save(self, directory: str | os.PathLike) -> None:
        # vocab.json + merges.txt + tokenizer_config.json + tokenizer.json: GPT-2's files,
        # written by transformers into a temporary sibling and moved in file by file, so a
        # full disk or a kill never leaves a truncated tokenizer.json
        from gpt2core.fsutil import atomic_write_files

        atomic_write_files(directory, lambda tmp: self.hf.save_pretrained(str(tmp)))


def train_bpe(texts: list[str], vocab_size: int) -> BPETokenizer:
    """A byte-level BPE of ``vocab_size`` tokens (<|endoftext|> included) learned from texts."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2TokenizerFast

    if vocab_size < 257 + 1:
        raise TokenizerError(
            f"bpe vocabulary size must be at least 258 (256 bytes + EOT), got {vocab_size}"
        )
    bpe = ByteLevelBPETokenizer(add_prefix_space=False)
    bpe.train_from_iterator(
        texts, vocab_size=vocab_size, min_frequency=2, special_tokens=[EOT], show_progress=False
    )
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        bpe.save_model(tmp)
        tok = GPT2TokenizerFast(
            vocab_file=os.path.join(tmp, "vocab.json"),
            merges_file=os.path.join(tmp, "merges.txt"),
            bos_token=EOT,
            eos_token=EOT,
            unk_token=EOT,
        )
    return BPETokenizer(tok, name=f"bpe:{vocab_size}")


# -- characters -----------------------------------------------------------------------


class CharTokenizer:
    kind = "char"
    eos_id = None

    def __init__(self, chars: list[str]):
        self.chars = chars
        self.vocab_size = len(chars)
        self._index = {c: i for i, c in enumerate(chars)}
        self.name = "char"

    @classmethod
    def from_text(cls, text: str) -> CharTokenizer:
        return cls(sorted(set(text)))

    @classmethod
    def load(cls, directory: str | os.PathLike) -> CharTokenizer:
        path = Path(directory) / CHAR_VOCAB_NAME
        try:
            d = jsontext.loads(path.read_text(encoding="utf-8"))
            chars = d["chars"]
            if not isinstance(chars, list) or not all(isinstance(c, str) for c in chars):
                raise ValueError("'chars' must be a list of strings")
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise TokenizerError(f"{path}: not a character vocabulary ({_first_line(e)})") from None
        return cls(chars)

    def encode(self, text: str) -> list[int]:
        try:
            return [self._index[c] for c in text]
        except KeyError as e:
            raise TokenizerError(
                f"character {e.args[0]!r} is not in this model's "
                f"{self.vocab_size}-character vocabulary"
            ) from None

    def decode(self, ids: list[int]) -> str:
        return "".join(self.chars[i] for i in ids)

    def token_bytes(self, token_id: int) -> bytes:
        return self.chars[token_id].encode("utf-8")

    def save(self, directory: str | os.PathLike) -> None:
        atomic_write_text(
            Path(directory) / CHAR_VOCAB_NAME,
            json.dumps({"type": "char", "chars": self.chars}, ensure_ascii=False),
        )


# -- loading --------------------------------------------------------------------------


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:160]


BUNDLED_GPT2 = Path(__file__).parent / "assets" / "gpt2"


def has_tokenizer(directory: str | os.PathLike) -> bool:
    d = Path(directory)
    return (
        (d / CHAR_VOCAB_NAME).is_file()
        or (d / "tokenizer.json").is_file()
        or ((d / "vocab.json").is_file() and (d / "merges.txt").is_file())
    )


def load_tokenizer(spec: str | os.PathLike = "gpt2") -> Tokenizer:
    """From a checkpoint/tokenizer directory, or a hub id (huggingface_hub cache first).

    ``gpt2`` (and the other OpenAI GPT-2 sizes, which share it) is bundled with the
    package, so the published GPT-2 vocabulary works offline.
    """
    from gpt2core.weights import CheckpointError, resolve

    if (
        str(spec) in ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl", "distilgpt2")
        and not Path(str(spec)).is_dir()
    ):
        return BPETokenizer.from_pretrained(BUNDLED_GPT2)
    try:
        directory = resolve(str(spec), weights=False)
    except CheckpointError as e:
        raise TokenizerError(str(e)) from None
    if (directory / CHAR_VOCAB_NAME).is_file():
        return CharTokenizer.load(directory)
    if has_tokenizer(directory):
        return BPETokenizer.from_pretrained(directory)
    raise TokenizerError(
        f"{directory}: no tokenizer files "
        f"(vocab.json + merges.txt, tokenizer.json, or {CHAR_VOCAB_NAME})"
    )
