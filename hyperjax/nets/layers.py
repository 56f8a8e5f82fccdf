"""Small building blocks: PyTorch-default Dense, AvgL1Norm, SimNorm.

The reference implementation is PyTorch (CleanRL SAC + hypnettorch); ``TorchDense`` reproduces
``torch.nn.Linear``'s default initialisation (kernel and bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)))
so that learning dynamics match the paper's code.
"""
from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp


def torch_uniform(fan_in: int):
    """Initializer U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (torch.nn.Linear default)."""
    bound = 1.0 / math.sqrt(max(fan_in, 1))

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


class TorchDense(nn.Module):
    """``y = x @ W + b``, ``x``: ``float32[..., fan_in]``, ``W``: ``float32[fan_in, features]``.

    Initialisers default to torch's ``nn.Linear`` (every weight and bias U(±1/√fan_in));
    ``kernel_init`` / ``bias_init`` replace them (HyPoGen's half-uniform and orthogonal
    layers, ``hyperjax/hypogen/models.py``).
    """

    features: int
    use_bias: bool = True
    kernel_init: object = None
    bias_init: object = None

    @nn.compact
    def __call__(self, x):
        fan_in = x.shape[-1]
        w = self.param("kernel", self.kernel_init or torch_uniform(fan_in),
                       (fan_in, self.features))
        y = x @ w
        if self.use_bias:
            y = y + self.param("bias", self.bias_init or torch_uniform(fan_in), (self.features,))
        return y


def avg_l1_norm(x: jax.Array, eps: float = 1e-8) -> jax.Array:
    """AvgL1Norm (the authors' `dmash/contexts/encoder.py`): ``x / max(mean(|x|), eps)`` over the
    last axis."""
    return x / jnp.maximum(jnp.mean(jnp.abs(x), axis=-1, keepdims=True), eps)


def sim_norm(x: jax.Array, group: int) -> jax.Array:
    """SimNorm (the authors' `dmash/contexts/encoder.py`): softmax over consecutive groups of
    ``group`` features.

    ``x``: ``float32[..., d]`` with ``d % group == 0``; every group of the result is a point on
    the simplex (entries in [0, 1] summing to 1).
    """
    shape = x.shape
    if shape[-1] % group:
        raise ValueError(f"SimNorm group {group} does not divide feature size {shape[-1]}")
    y = jax.nn.softmax(x.reshape(*shape[:-1], shape[-1] // group, group), axis=-1)
    return y.reshape(shape)
