"""GPT-2 in Keras 3 (TensorFlow backend), written to be read top-down.

Each choice below is GPT-2's own; a tutorial model that drops one of them is a
different function and cannot load the published weights:

- **Causal mask.** Position t may attend only to positions <= t. Without it the model
  sees the token it must predict during training, learns to copy it, and generates
  nonsense, because at generation time the future does not exist yet.
- **Pre-LayerNorm** (``x + attn(ln_1(x))``) with a final ``ln_f``. The residual stream
  stays an un-normalised sum, so gradients reach early layers unchanged; post-LN
  (``ln(x + attn(x))``) trains worse at depth and is not what the weights expect.
- **LayerNorm epsilon 1e-5**, set explicitly: Keras' default is 1e-3.
- **tanh-approximation GELU** (``gelu_new``), not ReLU or exact GELU: the weights were
  trained through that curve.
- **Learned position embeddings** (``wpe``), added to token embeddings; not sinusoids.
- **Fused qkv projection** ``c_attn`` (C -> 3C) and output projection ``c_proj``, with
  n_head heads of size C / n_head. (Keras' ``MultiHeadAttention(num_heads, key_dim)``
  takes the *head size* as its second argument; passing C there builds a different,
  much larger attention.)
- **Tied LM head**: logits = h @ wte^T. Input and output share one embedding matrix, so
  a token's input vector and output vector are the same; it saves 38M parameters at
  124M scale and is how the checkpoints are stored (there is no separate lm_head).
- **Init** N(0, 0.02), with residual output projections scaled by 1/sqrt(2 * n_layer):
  each block adds two terms to the residual stream, so without scaling its variance
  grows with depth.

The KV cache is an explicit argument and result (as in keras-hub's
``call_with_cache``): the decoder in ``generate.py`` owns it and compiles the step.
"""

from __future__ import annotations

import math

from gpt2core._tf import keras, tf
from gpt2core.config import GPT2Config


def _normal(std: float | None) -> keras.initializers.Initializer:
    """GPT-2's N(0, std); ``None`` for zeros, when a checkpoint will overwrite the weights
    (random init would only cost time and a second copy of the model while building)."""
    if std is None:
        return keras.initializers.Zeros()
    return keras.initializers.RandomNormal(mean=0.0, stddev=std)


def _layer_norm(config: GPT2Config, name: str) -> keras.layers.LayerNormalization:
    return keras.layers.LayerNormalization(epsilon=config.layer_norm_epsilon, name=name)


class Linear(keras.layers.Layer):
    """y = x @ kernel + bias, kernel stored [in, out] like GPT-2's Conv1D, which also
    multiplies the rows of every position as one 2-D product: (B, T, in) @ (in, out) as a
    batched product broadcasts the kernel over B, and its gradient becomes B products and
    a sum (the shakespeare-cpu training step: 33.3 -> 31.7 ms, see benchmarks/RESULTS.md)."""

    def __init__(self, units: int, kernel_std: float | None, **kwargs):
        super().__init__(**kwargs)
        self.units, self.kernel_std = units, kernel_std

    def build(self, input_shape):
        self.kernel = self.add_weight(
            name="kernel", shape=(input_shape[-1], self.units), initializer=_normal(self.kernel_std)
        )
        self.bias = self.add_weight(name="bias", shape=(self.units,), initializer="zeros")

    def call(self, x):
        shape = tf.shape(x)  # (..., in)
        rows = tf.reshape(x, [-1, shape[-1]])  # (..., in) -> (N, in), N positions in all
        y = tf.matmul(rows, self.kernel) + self.bias  # (N, in) @ (in, out) -> (N, out)
        return tf.reshape(y, tf.concat([shape[:-1], [self.units]], 0))  # -> (..., out)


def _stds(config: GPT2Config, init: bool) -> tuple[float | None, float | None]:
    """(std of most weights, std of the residual output projections); None: zeros."""
    if not init:
        return None, None
    return config.initializer_range, config.initializer_range / math.sqrt(2 * config.n_layer)


class CausalSelfAttention(keras.layers.Layer):
    def __init__(self, config: GPT2Config, init: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.n_head = config.n_head
        self.head_size = config.head_size
        std, resid_std = _stds(config, init)
        self.c_attn = Linear(3 * config.n_embd, std, name="c_attn")
        self.c_proj = Linear(config.n_embd, resid_std, name="c_proj")
        self.attn_dropout = keras.layers.Dropout(config.dropout)
        self.resid_dropout = keras.layers.Dropout(config.dropout)

    def build(self, input_shape):
        self.c_attn.build(input_shape)  # (..., C) -> (..., 3C)
        self.c_proj.build(input_shape)  # (..., C) -> (..., C)

    def _heads(self, x: tf.Tensor) -> tf.Tensor:
        b, t = tf.shape(x)[0], tf.shape(x)[1]
        x = tf.reshape(x, [b, t, self.n_head, self.head_size])  # (B, T, C) -> (B, T, nh, hs)
        return tf.transpose(x, [0, 2, 1, 3])  # (B, T, nh, hs) -> (B, nh, T, hs)

    def _attend(self, q, k, v, mask, training, probe=None):
        # q: (B, nh, T, hs); k, v: (B, nh, S, hs); mask: (T, S), True where allowed
        att = tf.matmul(q, k, transpose_b=True)  # (B, nh, T, S)
        att = att * (1.0 / math.sqrt(self.head_size))  # (B, nh, T, S)
        att = tf.where(mask, att, tf.constant(-1e9, att.dtype))  # (B, nh, T, S)
        att = tf.nn.softmax(att, axis=-1)  # (B, nh, T, S)
        if probe is not None:  # a teaching probe: keep the weights (see GPT2.probe_with_cache)
            probe.append(att)
        att = self.attn_dropout(att, training=training)  # (B, nh, T, S)
        y = tf.matmul(att, v)  # (B, nh, T, S) @ (B, nh, S, hs) -> (B, nh, T, hs)
        y = tf.transpose(y, [0, 2, 1, 3])  # (B, nh, T, hs) -> (B, T, nh, hs)
        b, t = tf.shape(y)[0], tf.shape(y)[1]
        y = tf.reshape(y, [b, t, self.n_head * self.head_size])  # (B, T, nh, hs) -> (B, T, C)
        return self.resid_dropout(self.c_proj(y), training=training)  # (B, T, C)

    def call(self, x, training=False):
        q, k, v = tf.split(self.c_attn(x), 3, axis=-1)  # (B, T, C) -> 3 x (B, T, C)
        q, k, v = self._heads(q), self._heads(k), self._heads(v)  # 3 x (B, nh, T, hs)
        t = tf.shape(x)[1]
        mask = tf.linalg.band_part(tf.ones([t, t], tf.bool), -1, 0)  # (T, T) lower triangle
        return self._attend(q, k, v, mask, training)

    def call_with_cache(self, x, cache, index, probe=None, last=None):
        """x: (B, T, C), new positions index..index+T-1; cache: (k, v), each (B, nh, S, hs).

        The new keys and values are written into the cache at rows index..index+T-1, and
        the queries attend over all S rows: the mask hides rows after each query's own
        position, which also hides rows not yet written. With ``last`` (a scalar), only
        that query attends: the result is (B, 1, C), the cache gets all T rows."""
        q, k, v = tf.split(self.c_attn(x), 3, axis=-1)  # (B, T, C) -> 3 x (B, T, C)
        q, k, v = self._heads(q), self._heads(k), self._heads(v)  # 3 x (B, nh, T, hs)
        start = [0, 0, index, 0]
        k_all = keras.ops.slice_update(cache[0], start, k)  # (B, nh, S, hs), rows replaced
        v_all = keras.ops.slice_update(cache[1], start, v)  # (B, nh, S, hs)
        t, s = tf.shape(x)[1], tf.shape(k_all)[2]
        q_pos = index + tf.range(t)[:, None]  # (T, 1) absolute position of each query
        if last is not None:
            q = q[:, :, last : last + 1]  # (B, nh, T, hs) -> (B, nh, 1, hs)
            q_pos = q_pos[last : last + 1]  # (T, 1) -> (1, 1)
        mask = tf.range(s)[None, :] <= q_pos  # (T, S): causal, and hides unwritten rows
        y = self._attend(q, k_all, v_all, mask, training=False, probe=probe)  # (B, T, C)
        return y, (k_all, v_all)


class MLP(keras.layers.Layer):
    def __init__(self, config: GPT2Config, init: bool = True, **kwargs):
        super().__init__(**kwargs)
        std, resid_std = _stds(config, init)
        self.c_fc = Linear(4 * config.n_embd, std, name="c_fc")
        self.c_proj = Linear(config.n_embd, resid_std, name="c_proj")
        self.dropout = keras.layers.Dropout(config.dropout)

    def build(self, input_shape):
        self.c_fc.build(input_shape)  # (..., C) -> (..., 4C)
        self.c_proj.build((*input_shape[:-1], 4 * input_shape[-1]))  # (..., 4C) -> (..., C)

    def call(self, x, training=False):
        h = self.c_fc(x)  # (B, T, C) -> (B, T, 4C)
        h = tf.nn.gelu(h, approximate=True)  # (B, T, 4C), GPT-2's "gelu_new"
        h = self.c_proj(h)  # (B, T, 4C) -> (B, T, C)
        return self.dropout(h, training=training)  # (B, T, C)


class Block(keras.layers.Layer):
    def __init__(self, config: GPT2Config, init: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.ln_1 = _layer_norm(config, "ln_1")
        self.attn = CausalSelfAttention(config, init, name="attn")
        self.ln_2 = _layer_norm(config, "ln_2")
        self.mlp = MLP(config, init, name="mlp")

    def build(self, input_shape):
        for layer in (self.ln_1, self.attn, self.ln_2, self.mlp):
            layer.build(input_shape)  # (..., C) in, (..., C) out

    def call(self, x, training=False):
        x = x + self.attn(self.ln_1(x), training=training)  # (B, T, C)
        x = x + self.mlp(self.ln_2(x), training=training)  # (B, T, C)
        return x

    def call_with_cache(self, x, cache, index, probe=None, last=None):
        """The block over new positions against the cache; with ``last`` (a scalar), the
        output of that position only, (B, 1, C), while the cache gets every position's keys
        and values (a prefill's last block: the other T - 1 outputs would go unused)."""
        a, cache = self.attn.call_with_cache(self.ln_1(x), cache, index, probe, last)  # (B, T, C)
        if last is not None:
            x = x[:, last : last + 1]  # (B, T, C) -> (B, 1, C)
        x = x + a  # (B, T, C)
        x = x + self.mlp(self.ln_2(x))  # (B, T, C)
        return x, cache


class GPT2(keras.Model):
    """GPT-2 language model: token ids (B, T) -> next-token logits (B, T, vocab).

    ``init=False`` builds zeros instead of GPT-2's random init, for weights a checkpoint
    is about to overwrite."""

    def __init__(self, config: GPT2Config, init: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        std, _ = _stds(config, init)
        embed_init = _normal(std)
        self.wte = keras.layers.Embedding(
            config.vocab_size, config.n_embd, embeddings_initializer=embed_init, name="wte"
        )
        self.wpe = keras.layers.Embedding(
            config.n_positions, config.n_embd, embeddings_initializer=embed_init, name="wpe"
        )
        self.drop = keras.layers.Dropout(config.dropout)
        self.h = [Block(config, init, name=f"h.{i}") for i in range(config.n_layer)]
        self.ln_f = _layer_norm(config, "ln_f")

    def build_weights(self) -> GPT2:
        """Create every variable now (Keras builds lazily, on the first call), layer by
        layer. Left to Keras, the first call traced the whole model symbolically to build
        it: 0.8 s at the training preset, 3.2 s at 124M, on every load. The variables, their
        order and paths, and their random init (each initializer's seed is drawn when its
        layer is made) are the same either way."""
        if self.built:
            return self
        shape = (None, None, self.config.n_embd)  # (B, T, C)
        with keras.name_scope(self.name, caller=self):  # paths as a call makes them: gpt2/...
            self.wte.build(None)
            self.wpe.build(None)
            for block in self.h:
                block.build(shape)
            self.ln_f.build(shape)
        self.built = True
        return self

    def _embed(self, token_ids, start, training=False):
        t = tf.shape(token_ids)[1]
        pos = start + tf.range(t)  # (T,) absolute positions
        x = self.wte(token_ids) + self.wpe(pos)[None]  # (B, T, C) + (1, T, C) -> (B, T, C)
        return self.drop(x, training=training)  # (B, T, C)

    def _head(self, x):
        x = self.ln_f(x)  # (B, T, C)
        # tied head: (B, T, C) . (V, C) over C -> (B, T, V)
        return tf.einsum("btc,vc->btv", x, self.wte.embeddings)

    def call(self, token_ids, training=False):
        x = self._embed(token_ids, 0, training)  # (B, T) -> (B, T, C)
        for block in self.h:
            x = block(x, training=training)  # (B, T, C)
        return self._head(x)  # (B, T, V)

    def init_cache(self, batch_size: int, length: int) -> tuple[tuple[tf.Tensor, tf.Tensor], ...]:
        """An empty KV cache for ``length`` positions: per layer a (k, v) pair, each
        (B, nh, S, hs). Per-layer tensors rather than one stacked tensor, so a layer's
        update touches that layer's rows only."""
        c = self.config
        shape = [batch_size, c.n_head, length, c.head_size]
        return tuple((tf.zeros(shape), tf.zeros(shape)) for _ in range(c.n_layer))

    def call_with_cache(self, token_ids, cache, cache_update_index):
        """Run new tokens at positions cache_update_index.. against the cache (keras-hub's
        ``GPT2CausalLM.call_with_cache``).

        token_ids: (B, T); cache: n_layer x (k, v), each (B, nh, S, hs); cache_update_index:
        scalar, the position of token_ids[:, 0]. Returns (logits (B, T, V), hidden (B, T, C)
        after ln_f, the updated cache). A caller that needs fewer logits (one position, or
        another head layout) can take ``hidden``; under XLA the unused logits cost nothing.
        """
        logits, hidden, cache, _, _ = self._run_cached(token_ids, cache, cache_update_index)
        return logits, hidden, cache

    def probe_with_cache(self, token_ids, cache, cache_update_index):
        """``call_with_cache``, also returning what a person learning GPT-2 asks to see:
        every layer's attention weights, n_layer x (B, nh, T, S), and the residual stream
        after every block, n_layer x (B, T, C) (before ln_f: the logit lens reads each one
        through ln_f and the head, as if the model stopped there)."""
        return self._run_cached(token_ids, cache, cache_update_index, probe=True)

    def _run_cached(self, token_ids, cache, cache_update_index, probe=False):
        index = tf.cast(cache_update_index, tf.int32)
        x = self._embed(token_ids, index)  # (B, T, C)
        new_cache, attention, residuals = [], [] if probe else None, []
        for block, layer_cache in zip(self.h, cache, strict=True):
            x, layer_cache = block.call_with_cache(x, layer_cache, index, attention)  # (B, T, C)
            new_cache.append(layer_cache)  # (k, v), each (B, nh, S, hs)
            residuals.append(x)  # (B, T, C)
        hidden = self.ln_f(x)  # (B, T, C)
        logits = tf.einsum("btc,vc->btv", hidden, self.wte.embeddings)  # (B, T, V), tied head
        return logits, hidden, tuple(new_cache), attention, residuals
