"""The DMA context encoder g_phi (``LSTMContextEncoder``, the authors' `dmash/contexts/encoder.py`).

Input: a window of the K most recent transitions ``float32[B, K, 2*obs_dim + act_dim]`` with
rows ``[s, a, s' - s]``. Training mode:

1. one random permutation of the K timesteps shared by the batch (shuffle);
2. each of s, a, delta-s zeroed independently per (sample, timestep) with probability p;
3. bias-free Linear -> 32, then AvgL1Norm (when ``input_norm``);
4. a random subset of k = int(0.2*K) timesteps per sample (eval: ``linspace(0, K-1, k)``);
5. LSTM(32) (``torch.nn.LSTM`` numerics and initialisation, ``TorchLSTM``), final hidden
   state h;
6. bias-free Linear -> d_z = 8, then SimNorm over 2 groups of 4 (when ``output_norm``).

Eval mode: no shuffle, no mask, the equidistant subset. The ``pearl`` variant (DMA-Pearl, the
authors' ``PLSTMContextEncoder``) replaces 6 by a mean head ``Linear -> LayerNorm`` and a
variance head ``Linear -> LayerNorm -> Softplus`` (the authors' preset sets
``output_norm="none"``, a non-empty string, so both LayerNorms are always there), and samples
z ~ N(mu, var) in training (mu in eval). Its KL(N(mu, var) || N(0, I)) is reported per sample
as the mean over the d_z dimensions (``get_kl`` then ``.mean()`` over batch and dimensions).
"""
from __future__ import annotations

from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.random import threefry2x32_p

from hyperjax.nets.layers import TorchDense, avg_l1_norm, sim_norm, torch_uniform


class EncoderOut(NamedTuple):
    z: jax.Array    # float32[B, d_z]
    kl: jax.Array   # float32[B], mean over d_z of KL(N(mu, var) || N(0, 1)) (Pearl), else 0


def bernoulli_at(key, p, shape: tuple[int, ...], index: tuple) -> jax.Array:
    """``jax.random.bernoulli(key, p, shape)[index]`` without drawing the rest of ``shape``.

    With JAX's default partitionable threefry (``jax_threefry_partitionable``, on since JAX
    0.5) each element's bits are ``threefry2x32(key, flat index)``, its two words xor-ed, so
    the elements at ``index`` (a tuple of broadcastable integer arrays, one per axis) are
    computed alone, bit for bit the same (``tests/test_nets.py`` checks it). Otherwise the
    whole array is drawn and indexed.

    Args:
      key: a PRNG key (raw ``uint32[2]`` or typed threefry key).
      p: probability of True (``float32[]``, or a float).
      shape: the shape of the full draw.
      index: integer index arrays into ``shape``.
    Returns:
      ``bool[broadcast shape of index]``.
    """
    typed = jnp.issubdtype(getattr(key, "dtype", None), jax.dtypes.prng_key)
    impl_ok = not typed or "threefry" in str(jax.random.key_impl(key))
    if not (jax.config.jax_threefry_partitionable and impl_ok) or np.prod(shape) >= 2**32:
        return jax.random.bernoulli(key, p, shape)[index]
    k1, k2 = jax.random.key_data(key) if typed else key
    strides = np.cumprod((1,) + tuple(shape[:0:-1]))[::-1]
    flat = sum(jnp.asarray(i, jnp.uint32) * jnp.uint32(s) for i, s in zip(index, strides))
    b1, b2 = threefry2x32_p.bind(k1, k2, jnp.zeros_like(flat), flat)
    bits = jnp.bitwise_xor(b1, b2)
    # jax.random.uniform's float32 from 32 bits: 23 mantissa bits, exponent of 1.0, minus 1
    one = jnp.uint32(np.array(1.0, np.float32).view(np.uint32))
    u = jax.lax.bitcast_convert_type((bits >> jnp.uint32(9)) | one, jnp.float32) - 1.0
    return jnp.maximum(0.0, u) < jnp.asarray(p, jnp.float32)


class TorchLSTM(nn.Module):
    """One-layer unidirectional LSTM with ``torch.nn.LSTM``'s parameters and init.

    Parameters ``w_ih [in, 4H]``, ``w_hh [H, 4H]``, ``b_ih [4H]``, ``b_hh [4H]`` (gate order
    i, f, g, o), every one ~ U(-1/sqrt(H), 1/sqrt(H)) (``nn.LSTM.reset_parameters``). Input
    ``float32[B, n, in]``; returns the final hidden state ``h`` ``float32[B, H]`` (zero initial
    state). Source: the authors' ``LSTMContextEncoder`` (``dmash/contexts/encoder.py``).
    """

    hidden: int

    @nn.compact
    def __call__(self, x):
        H = self.hidden
        init = torch_uniform(H)  # bound 1/sqrt(hidden_size), for every weight and bias
        w_ih = self.param("w_ih", init, (x.shape[-1], 4 * H))
        w_hh = self.param("w_hh", init, (H, 4 * H))
        b = self.param("b_ih", init, (4 * H,)) + self.param("b_hh", init, (4 * H,))
        return lstm_last_hidden(x, w_ih, w_hh, b)


def _lstm_steps(x, w_ih, w_hh, b):
    """The unrolled LSTM: final ``h`` and, per step, ``(h_prev, c_prev, i, f, g, o, c)``."""
    xs = x @ w_ih + b  # [B, n, 4H], all input projections at once
    h = jnp.zeros((x.shape[0], w_hh.shape[0]), x.dtype)
    c = h
    saved = []
    for t in range(x.shape[1]):  # n = int(0.2 K) steps, unrolled
        i, f, g, o = jnp.split(xs[:, t] + h @ w_hh, 4, axis=-1)
        i, f, g, o = jax.nn.sigmoid(i), jax.nn.sigmoid(f), jnp.tanh(g), jax.nn.sigmoid(o)
        h_prev, c_prev = h, c
        c = f * c + i * g
        h = o * jnp.tanh(c)
        saved.append((h_prev, c_prev, i, f, g, o, c))
    return h, saved


@jax.custom_vjp
def lstm_last_hidden(x, w_ih, w_hh, b):
    """Final hidden state ``float32[B, H]`` of a one-layer LSTM (gate order i, f, g, o; zero
    initial state) over ``x`` ``float32[B, n, in]``; ``w_ih [in, 4H]``, ``w_hh [H, 4H]``, ``b
    [4H]`` (``b_ih + b_hh``). The forward is the plain unrolled recurrence; the gradient
    (``_lstm_bwd``) runs the recurrence backwards for the gate gradients only and forms the
    weight gradients as one matmul each over all steps, instead of XLA's per-step weight
    gradients (about 2x faster on CPU; the same values up to float rounding)."""
    return _lstm_steps(x, w_ih, w_hh, b)[0]


def _lstm_fwd(x, w_ih, w_hh, b):
    h, saved = _lstm_steps(x, w_ih, w_hh, b)
    return h, (x, w_ih, w_hh, saved)


def _lstm_bwd(res, dh):
    x, w_ih, w_hh, saved = res
    dc = jnp.zeros_like(dh)
    d_gates = [None] * len(saved)
    for t in reversed(range(len(saved))):
        h_prev, c_prev, i, f, g, o, c = saved[t]
        tc = jnp.tanh(c)
        dc = dc + dh * o * (1.0 - tc * tc)
        d_gates[t] = jnp.concatenate([dc * g * i * (1.0 - i), dc * c_prev * f * (1.0 - f),
                                      dc * i * (1.0 - g * g), dh * tc * o * (1.0 - o)], -1)
        dc = dc * f
        dh = d_gates[t] @ w_hh.T
    dg = jnp.stack(d_gates, 1)                             # [B, n, 4H]
    h_prev = jnp.stack([s[0] for s in saved], 1)           # [B, n, H]
    dw_hh = jnp.einsum("bnh,bng->hg", h_prev, dg)
    dw_ih = jnp.einsum("bni,bng->ig", x, dg)
    return dg @ w_ih.T, dw_ih, dw_hh, dg.sum((0, 1))


lstm_last_hidden.defvjp(_lstm_fwd, _lstm_bwd)


class ContextEncoder(nn.Module):
    """g_phi. Attributes follow the authors' `dmash/contexts/encoder.py`; ``obs_dim``/``action_dim``
    split the input row."""

    obs_dim: int
    action_dim: int
    context_size: int          # K
    mask_rate: float = 0.4     # p: 0.4 DMA*-SH, 0.2 DMA*, 0 DMA
    input_norm: bool = True    # AvgL1Norm after the embedding
    output_norm: bool = True   # SimNorm on z
    pearl: bool = False        # Gaussian head (DMA-Pearl)
    dim: int = 32
    z_dim: int = 8
    subset_fraction: float = 0.2

    @property
    def subset_size(self) -> int:
        return max(1, int(self.subset_fraction * self.context_size))

    @nn.compact
    def __call__(self, window: jax.Array, key: jax.Array | None, training: bool,
                 mask_rate: jax.Array | None = None) -> EncoderOut:
        """Args: ``window`` ``float32[B, K, D]``; ``key`` (needed when ``training``);
        ``mask_rate``: a ``float32[]`` that replaces the attribute (hyperparameter sweeps).

        Raises:
          ValueError: if the window is not ``[B, K, 2*obs_dim + act_dim]``.
        """
        b, k, d = window.shape
        if k != self.context_size or d != 2 * self.obs_dim + self.action_dim:
            raise ValueError(f"encoder window must be [B, {self.context_size}, "
                             f"{2 * self.obs_dim + self.action_dim}], got {list(window.shape)}")
        n = self.subset_size
        comp = np.repeat([0, 1, 2], [self.obs_dim, self.action_dim, self.obs_dim])
        if training:
            k_perm, k_mask, k_sub, k_z = jax.random.split(key, 4)
            window = window[:, jax.random.permutation(k_perm, k)]  # one shuffle for the batch
            # n distinct timesteps per sample, uniformly at random (top-n of uniform noise;
            # cheaper than a full argsort on CPU), kept in window order
            idx = jnp.sort(jax.lax.top_k(jax.random.uniform(k_sub, (b, k)), n)[1], axis=-1)
            rate = self.mask_rate if mask_rate is None else mask_rate
            if mask_rate is not None or self.mask_rate > 0:
                # s, a and delta-s of each (sample, timestep) zeroed independently: the draws
                # of ``bernoulli(k_mask, 1 - rate, (b, K, 3))``, computed only at the n
                # timesteps the LSTM reads (the others are dropped below, so they keep 1)
                rows = jnp.arange(b)[:, None]
                keep = bernoulli_at(k_mask, 1.0 - rate, (b, k, 3),
                                    (rows[..., None], idx[..., None], jnp.arange(3)))
                keep = jnp.ones((b, k, 3), bool).at[rows, idx].set(keep)
                window = window * keep[..., comp].astype(window.dtype)
        x = TorchDense(self.dim, use_bias=False, name="embed")(window)
        if self.input_norm:
            x = avg_l1_norm(x)
        if training:
            x = jnp.take_along_axis(x, idx[..., None], axis=1)
        else:
            x = x[:, np.linspace(0, k - 1, n).astype(int)]  # the equidistant subset
        h = TorchLSTM(self.dim, name="lstm")(x)
        if self.pearl:
            # torch LayerNorm: eps 1e-5, two-pass variance, weight 1 and bias 0 at init
            norm = lambda name: nn.LayerNorm(epsilon=1e-5, use_fast_variance=False, name=name)
            mu = norm("mu_norm")(TorchDense(self.z_dim, use_bias=False, name="mu")(h))
            var = jax.nn.softplus(norm("var_norm")(
                TorchDense(self.z_dim, use_bias=False, name="var")(h)))
            kl = jnp.mean(0.5 * (var + mu**2 - 1.0 - jnp.log(var)), axis=-1)
            z = mu + jnp.sqrt(var) * jax.random.normal(k_z, mu.shape) if training else mu
            return EncoderOut(z, kl)
        z = TorchDense(self.z_dim, use_bias=False, name="summarize")(h)
        if self.output_norm:
            z = sim_norm(z, self.z_dim // 2)
        return EncoderOut(z, jnp.zeros((b,), z.dtype))
