"""Hypernetwork h_eta and the bottleneck adapter it parameterises (the authors'
`dmash/contexts/model.py`).

Adapter on a trunk feature ``x`` (``float32[B, 256]``), with generated weights omega::

    g(x; omega) = W_up @ relu(W_down @ x + b_down) + b_up
    x_tilde     = relu(x + g(x; omega))              (skip connection, ReLU after)

``W_down: [32, 256]``, ``b_down: [32]``, ``W_up: [256, 32]``, ``b_up: [256]``: 16,672 numbers
per sample, produced by ``HyperNet``: z (8) -> 64 -> ReLU -> 64 -> ReLU -> 16,672 (hypnettorch
``HMLP`` with default PyTorch-style init; its output layer is stored as four column blocks).
Weights are per sample and applied with ``einsum``.
"""
from __future__ import annotations

from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from hyperjax.nets.layers import TorchDense

FEATURES = 256
BOTTLENECK = FEATURES // 8  # 32


class AdapterWeights(NamedTuple):
    """Generated adapter weights omega, per sample (leading batch axes ``...``)."""

    w_down: jax.Array  # float32[..., 32, 256]
    b_down: jax.Array  # float32[..., 32]
    w_up: jax.Array    # float32[..., 256, 32]
    b_up: jax.Array    # float32[..., 256]


def adapter_size(features: int = FEATURES, bottleneck: int = BOTTLENECK) -> int:
    """Number of generated numbers per sample (16,672 for 256 -> 32 -> 256)."""
    return 2 * features * bottleneck + bottleneck + features


def adapter_apply(x: jax.Array, omega: AdapterWeights) -> jax.Array:
    """``relu(x + g(x; omega))`` for ``x: float32[B, F]`` and per-sample ``omega`` (batch B).

    Raises:
      ValueError: if the adapter's feature size does not match ``x``.
    """
    if omega.w_down.shape[-1] != x.shape[-1]:
        raise ValueError(f"adapter expects {omega.w_down.shape[-1]} features, got {x.shape[-1]}")
    h = jax.nn.relu(jnp.einsum("...i,...ji->...j", x, omega.w_down) + omega.b_down)
    g = jnp.einsum("...j,...ij->...i", h, omega.w_up) + omega.b_up
    return jax.nn.relu(x + g)


class HyperNet(nn.Module):
    """h_eta: ``float32[B, d_in]`` (z or a true context) -> ``AdapterWeights`` (the authors'
    `dmash/contexts/model.py`)."""

    hidden: tuple[int, ...] = (64, 64)
    features: int = FEATURES
    bottleneck: int = BOTTLENECK

    @nn.compact
    def __call__(self, z):
        h = z
        for width in self.hidden:
            h = jax.nn.relu(TorchDense(width)(h))
        # The output Linear(64 -> 16,672) as four column blocks, one per adapter tensor: the
        # same function and init distribution as one head split afterwards, but no slicing
        # copies of the [B, 16672] output (2x faster backward on CPU).
        f, k = self.features, self.bottleneck
        lead = z.shape[:-1]
        return AdapterWeights(
            TorchDense(k * f, name="w_down")(h).reshape(*lead, k, f),
            TorchDense(k, name="b_down")(h),
            TorchDense(f * k, name="w_up")(h).reshape(*lead, f, k),
            TorchDense(f, name="b_up")(h),
        )
