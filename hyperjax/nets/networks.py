"""SAC actor, twin critics and the dynamics model, each with a context ``merge`` mode.

merge modes (the authors' ``policy/q_context_merge_type``, ``dmash/contexts/config.py``):
* ``"none"``   - plain MLP (DR): Linear 256, ReLU, Linear 256, ReLU, head.
* ``"concat"`` - the same MLP on ``[input, cond]`` (Concat, DMA, DMA*, DMA-Pearl).
* ``"shared"`` - trunk Linear 256, ReLU, Linear 256 (no activation), then the bottleneck
  adapter with externally supplied ``omega`` (DMA*-SH: the dynamics model's hypernetwork).
* ``"own"``    - as ``"shared"`` but the network owns a ``HyperNet`` fed with ``cond``
  (Decision Adapter: one per actor / critic, trained by that network's RL loss).
"""
from __future__ import annotations

from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from hyperjax.nets.hypernet import AdapterWeights, HyperNet, adapter_apply
from hyperjax.nets.layers import TorchDense

MERGES = ("none", "concat", "shared", "own")
# The trunk's name in the actor's and the critics' parameter trees: the name flax gave it
# automatically before it was explicit, so initial values (rng folded by name) are unchanged.
TORSO = "Torso_0"
LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


class Cond(NamedTuple):
    """Conditioning passed to a network: ``vec`` ``float32[B, d]`` (z or c) and/or ``omega``."""

    vec: jax.Array | None = None
    omega: AdapterWeights | None = None


class Torso(nn.Module):
    """Input -> 256-d features according to ``merge`` (module doc)."""

    merge: str = "none"
    hidden: int = 256

    @nn.compact
    def __call__(self, x, cond: Cond):
        if self.merge not in MERGES:
            raise ValueError(f"unknown merge {self.merge!r}; valid: {', '.join(MERGES)}")
        if self.merge == "concat":
            x = jnp.concatenate([x, cond.vec], axis=-1)
        h = jax.nn.relu(TorchDense(self.hidden)(x))
        h = TorchDense(self.hidden)(h)
        if self.merge in ("none", "concat"):
            return jax.nn.relu(h)
        omega = cond.omega if self.merge == "shared" else HyperNet(name="hypernet")(cond.vec)
        return adapter_apply(h, omega)


def own_hypernet_params(net_params) -> dict:
    """The parameters of a ``merge="own"`` actor's hypernetwork (``actor.init``'s tree): the
    one place that knows where they live (``aware_hypernet_shared``'s critics share them).

    Raises:
      ValueError: the network has no hypernetwork of its own.
    """
    torso = net_params["params"].get(TORSO, {})
    if "hypernet" not in torso:
        raise ValueError("this network has no hypernetwork of its own (merge='own')")
    return torso["hypernet"]


def own_omega(net_params, vec) -> AdapterWeights:
    """omega = h(vec) from a ``merge="own"`` network's hypernetwork, ``vec`` ``float32[B, d]``."""
    return HyperNet().apply({"params": own_hypernet_params(net_params)}, vec)


class Actor(nn.Module):
    """Tanh-Gaussian policy head (CleanRL SAC): returns ``(mean, log_std)``, ``[B, act_dim]``.

    ``log_std = -5 + 0.5 * 7 * (tanh(raw) + 1)`` lies in [-5, 2] (the authors'
    `dmash/contexts/model.py`).
    """

    action_dim: int
    merge: str = "none"

    @nn.compact
    def __call__(self, obs, cond: Cond = Cond()):
        h = Torso(self.merge, name=TORSO)(obs, cond)
        mean = TorchDense(self.action_dim, name="mean")(h)
        log_std = jnp.tanh(TorchDense(self.action_dim, name="log_std")(h))
        log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (log_std + 1.0)
        return mean, log_std


class Critic(nn.Module):
    """Q(s, a): ``float32[B]``."""

    merge: str = "none"

    @nn.compact
    def __call__(self, obs, action, cond: Cond = Cond()):
        h = Torso(self.merge, name=TORSO)(jnp.concatenate([obs, action], axis=-1), cond)
        return TorchDense(1, name="q")(h)[..., 0]


class TwinCritic(nn.Module):
    """Two independent critics q1, q2: returns ``float32[2, B]``."""

    merge: str = "none"

    @nn.compact
    def __call__(self, obs, action, cond: Cond = Cond()):
        ens = nn.vmap(Critic, variable_axes={"params": 0}, split_rngs={"params": True},
                      in_axes=None, out_axes=0, axis_size=2)
        return ens(self.merge, name="q")(obs, action, cond)


class DynamicsModel(nn.Module):
    """f_{theta, omega}(s, a) -> predicted delta-s ``float32[B, obs_dim]`` (the authors'
    `dmash/contexts/model.py`).

    ``merge="own"`` is DMA*-SH's model: it owns the one hypernetwork h_eta, fed with z; its
    generated omega is what the actor and critics share. ``merge="concat"`` is DMA/DMA*:
    ``[s, a, z]`` into an MLP.
    """

    obs_dim: int
    merge: str = "concat"

    def setup(self):
        if self.merge == "own":
            self.hypernet = HyperNet()
        self.torso = Torso("shared" if self.merge == "own" else self.merge)
        self.head = TorchDense(self.obs_dim)

    def omega(self, z):
        """omega = h_eta(z) for ``z: float32[B, d_z]``."""
        return self.hypernet(z)

    def __call__(self, obs, action, z):
        x = jnp.concatenate([obs, action], axis=-1)
        if self.merge == "own":
            return self.head(self.torso(x, Cond(omega=self.omega(z))))
        return self.head(self.torso(x, Cond(vec=z)))
