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

from gpt2core import jsontext
from gpt2core.config import CONFIG_NAME, MAX_SIZES, PRESETS, GPT2Config
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
    if spec.kind == "scratch":
        return _load_scratch(spec)
    return _load_pretrained(spec)


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


def _n_inner(directory: Path) -> int | None:
    """HF's optional MLP width, which transformers honours (gpt2core does not)."""
    n_inner = GPT2Config.read_dict(directory).get("n_inner")
    if n_inner is not None and (
        not isinstance(n_inner, int)
        or isinstance(n_inner, bool)
        or not 0 < n_inner <= 4 * MAX_SIZES["n_embd"]
    ):
        raise CheckpointError(
            f"{directory / CONFIG_NAME}: n_inner must be null or a positive integer up to "
            f"{4 * MAX_SIZES['n_embd']}, got {n_inner!r}"
        )
    return n_inner


def _load_pretrained(spec: Spec) -> PretrainedLM:
    """transformers' TFGPT2LMHeadModel, after checking the checkpoint ourselves: given a
    file that lacks layers, ``from_pretrained`` starts them from random weights with a log
    line nobody sees, and a config with absurd sizes is allocated before it is compared to
    anything. Whatever transformers still raises becomes one CheckpointError line."""
    from gpt2core.weights import (
        SAFETENSORS_NAME,
        _hf_name_from_tf,
        check_checkpoint,
        load_config,
        patch_transformers_safetensors,
        resolve,
    )

    directory = resolve(spec.target)
    load_config(directory)  # a missing/bad config.json is one line before n_inner is read
    config, weights_path = check_checkpoint(directory, n_inner=_n_inner(directory))
    deep = jsontext.too_deep_file(directory)
    if deep is not None:  # before transformers' json.load recurses into it
        raise CheckpointError(
            f"{deep}: not a JSON file transformers can read (nested "
            f"deeper than {jsontext.MAX_DEPTH} levels)"
        )
    from gpt2core._tf import tf  # TensorFlow: only once the checkpoint passed its checks

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import transformers
        from transformers import TFGPT2LMHeadModel

        transformers.logging.set_verbosity_error()
        patch_transformers_safetensors()
        try:
            hf, info = TFGPT2LMHeadModel.from_pretrained(
                str(directory),
                use_safetensors=weights_path.name == SAFETENSORS_NAME,
                output_loading_info=True,
            )
        except Exception as e:  # transformers' loading errors are many and untyped
            first = (str(e).strip().splitlines() or [""])[0][:160]
            raise CheckpointError(
                f"{weights_path}: transformers cannot load it ({type(e).__name__}: {first})"
            ) from None
    # Our check reads names more leniently than transformers matches them (a renamed
    # top-level group in an .h5): whatever it still did not find, it left random.
    missing = list(info.get("missing_keys") or [])
    if missing:
        raise CheckpointError(
            f"{weights_path}: transformers found no weights for {', '.join(map(str, missing[:3]))}"
            f" (it would run them with random values)"
        )
    for w in hf.weights:
        if not bool(tf.reduce_all(tf.math.is_finite(w))):
            raise CheckpointError(
                f"{weights_path}: tensor {_hf_name_from_tf(w.name)} holds NaN or infinite "
                f"values (a corrupt checkpoint, or a run that diverged)"
            )
    tok = _tokenizer_for(directory, config.vocab_size)
    lm = PretrainedLM(hf, tok, name=str(spec))
    lm.description = (
        f"{spec}: transformers TFGPT2LMHeadModel, {config.n_layer} layers x "
        f"{config.n_embd} wide, {_human(lm.num_params)} params, from {directory}"
    )
    return lm
