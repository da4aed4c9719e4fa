"""gpt2core: GPT-2 written from scratch in TensorFlow/Keras 3.

Importing this package is cheap: TensorFlow is imported by the submodules that need it
(model, weights, generate, train), so command-line front ends start at once.
"""

import os

# Keras 3 must run on TensorFlow here (it is the only backend we install), and
# TensorFlow's C++ start-up chatter is noise in a terminal app.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The decoder keeps its KV cache in variables that each step updates in place. XLA's CPU
# copy insertion proves that safe only with region analysis; without it, every step
# copies the whole cache twice (2 x 75 MB at 124M). Read when XLA first compiles.
_XLA_FLAG = "--xla_cpu_copy_insertion_use_region_analysis=true"
if "xla_cpu_copy_insertion_use_region_analysis" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_XLA_FLAG}".strip()

__version__ = "0.1.0"
