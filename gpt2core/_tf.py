"""The one place gpt2core imports TensorFlow (and Keras on top of it).

TensorFlow's C++ start-up logs (absl) go straight to file descriptor 2 whatever
TF_CPP_MIN_LOG_LEVEL says; in a terminal app they land on top of the screen. We point
fd 2 at /dev/null while TensorFlow imports and initialises its devices, then restore it.
Python exceptions are unaffected: they propagate after fd 2 is back.

``GPT2_LOGICAL_CPUS=N`` splits the CPU into N logical devices before TensorFlow fixes its
device list (it can only be done then, once per process): MirroredStrategy then has N
replicas on one machine, which is how the multi-device path is tested without GPUs.
"""

from __future__ import annotations

import contextlib
import gc
import os

import gpt2core  # noqa: F401  (sets KERAS_BACKEND and TF_CPP_MIN_LOG_LEVEL first)
from gpt2core.distribute import split_logical_cpus


@contextlib.contextmanager
def native_stderr_silenced():
    try:
        saved = os.dup(2)
    except OSError:  # no fd 2 (some embedded hosts): nothing to silence
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


@contextlib.contextmanager
def imports_frozen_for_gc():
    """Import with the cyclic garbage collector off, then freeze what was imported.

    TensorFlow and Keras leave ~430,000 objects that live as long as the process. With the
    collector on, the import ran 5 full collections over them (0.35 s of a 2 s import), and
    every later full collection walked them all again: ~180 ms with the interpreter lock
    held, once or more per reply in the app, where the decoder thread then stood still.
    Frozen (``gc.freeze``), later collections skip them. ``gc.freeze`` moves every object
    alive at that moment, so whatever the process held already (the app's first widgets,
    when a model loads in the background) is frozen too: it is never collected if it
    becomes cyclic garbage later. The import itself leaves ~1,500 objects of cyclic
    garbage, which stay (they would cost a 0.2 s collection to find)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


with native_stderr_silenced(), imports_frozen_for_gc():
    import keras
    import tensorflow as tf

    split_logical_cpus(tf)
    tf.config.list_logical_devices()  # device (and CUDA probe) initialisation logs

__all__ = ["tf", "keras", "graph_function", "native_stderr_silenced", "split_logical_cpus"]


def graph_function(fn, *, jit_compile: bool = True, **kwargs):
    """``tf.function`` as gpt2core compiles everything: XLA (unless ``jit_compile=False``)
    and no AutoGraph. Our traced code has no Python control flow on tensors, so AutoGraph
    would only rewrite it: transpiling each traced function's source cost 0.6 s of the
    124M decoder's 1.5 s trace, and about a quarter of the trainer's first sample.

    With an ``input_signature`` every call goes straight to the one concrete function
    (traced on the first call): ``tf.function``'s own dispatch, which matches the call
    against its signature each time, cost 0.28 ms a call (measured on a decoder step)."""
    function = tf.function(fn, jit_compile=jit_compile, autograph=False, **kwargs)
    return _Signed(function) if kwargs.get("input_signature") is not None else function


class _Signed:
    """A ``tf.function`` with an input signature, called through its concrete function;
    anything else (``experimental_get_compiler_ir``...) goes to the function itself."""

    def __init__(self, function):
        self.function = function
        self._concrete = None

    def __call__(self, *args):
        if self._concrete is None:
            self._concrete = self.function.get_concrete_function()
        return self._concrete(*args)

    def __getattr__(self, name):
        return getattr(self.function, name)
