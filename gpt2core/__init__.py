"""gpt2core: GPT-2 written from scratch in TensorFlow/Keras 3.

Importing this package is cheap: TensorFlow is imported by the submodules that need it
(model, weights, generate, train), so command-line front ends start at once.
"""

import os

# Keras 3 must run on TensorFlow here (it is the only backend we install), and
# TensorFlow's C++ start-up chatter is noise in a terminal app.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
