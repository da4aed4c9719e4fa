"""Model specs -> a loaded ``LanguageModel``.

scratch                  a fresh random model of the tiny preset (untrained: it babbles)
scratch:DIR              a checkpoint trained with ``gpt2 train`` (or any GPT-2 directory)
scratch:HUB_ID           published weights (``scratch:gpt2``) run by gpt2core's own code
pretrained               transformers' TFGPT2LMHeadModel with the hub's ``gpt2``
pretrained:NAME_OR_DIR   the same for another hub id or a local checkpoint directory
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

from gpt2core.config import PRESETS
from gpt2core.errors import UserError
from gpt2core.generate import LanguageModel, PretrainedLM, ScratchLM
from gpt2core.tokenizer import TokenizerError, has_tokenizer, load_tokenizer
from gpt2core.weights import CheckpointError

SPEC_HELP = "scratch, scratch:DIR_OR_HUB_ID, pretrained, or pretrained:NAME_OR_DIR"


class SpecError(UserError):
    """A model spec that names nothing loadable (one-line user error)."""


@dataclass(frozen=True)
class Spec:
    kind: str  # scratch | pretrained
    target: str  # '' for the random scratch model

    def __str__(self) -> str:
        return f"{self.kind}:{self.target}" if self.target else self.kind


def parse_spec(text: str) -> Spec:
    text = text.strip()
    kind, sep, target = text.partition(":")
    kind = kind.strip().lower()
    if kind not in ("scratch", "pretrained") or (sep and not target.strip()):
        raise SpecError(f"unknown model {text!r}: use {SPEC_HELP}")
    target = target.strip()
    if kind == "pretrained" and not target:
        target = "gpt2"
    return Spec(kind, target)


def _human(n: int) -> str:
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.0f}k"


def _tokenizer_for(directory: Path, vocab_size: int):
    if has_tokenizer(directory):
        return load_tokenizer(directory)
    if vocab_size == 50257:  # GPT-2's vocabulary, which the package bundles
        return load_tokenizer("gpt2")
    raise TokenizerError(
        f"{directory}: no tokenizer files, and its vocabulary ({vocab_size}) is not GPT-2's"
    )


def load_lm(spec: str | Spec) -> LanguageModel:
    """Load the model a spec names. Raises SpecError/CheckpointError/TokenizerError (user
    errors, one line each)."""
    spec = parse_spec(spec) if isinstance(spec, str) else spec
    try:
        if spec.kind == "scratch":
            return _load_scratch(spec)
        return _load_pretrained(spec)
    except (CheckpointError, TokenizerError, SpecError):
        raise
    except (OSError, ValueError) as e:  # transformers' own loading errors
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise CheckpointError(f"{spec.target}: cannot load ({first[:160]})") from None


def _load_scratch(spec: Spec) -> ScratchLM:
    from gpt2core.model import GPT2
    from gpt2core.weights import load_model

    if not spec.target:
        config = PRESETS["tiny"]
        model = GPT2(config).build_weights()
        return ScratchLM(
            model,
            load_tokenizer("gpt2"),
            name="scratch",
            description=f"scratch: untrained random weights, tiny preset "
            f"({_human(config.num_params())} params), it will babble",
        )
    model, directory = load_model(spec.target)
    tok = _tokenizer_for(directory, model.config.vocab_size)
    c = model.config
    return ScratchLM(
        model,
        tok,
        name=str(spec),
        description=f"{spec}: gpt2core, {c.n_layer} layers x {c.n_embd} wide, "
        f"{_human(c.num_params())} params, from {directory}",
    )


def _load_pretrained(spec: Spec) -> PretrainedLM:
    from gpt2core.weights import load_config, patch_transformers_safetensors, resolve

    directory = resolve(spec.target)
    config = load_config(directory)  # clear error for a missing/bad config.json
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import transformers
        from transformers import TFGPT2LMHeadModel

        transformers.logging.set_verbosity_error()
        patch_transformers_safetensors()
        hf = TFGPT2LMHeadModel.from_pretrained(str(directory))
    tok = _tokenizer_for(directory, config.vocab_size)
    lm = PretrainedLM(hf, tok, name=str(spec))
    lm.description = (
        f"{spec}: transformers TFGPT2LMHeadModel, {config.n_layer} layers x "
        f"{config.n_embd} wide, {_human(lm.num_params)} params, from {directory}"
    )
    return lm
