"""The authors' method grid as one parameterised method (github dma-sh/dmash,
``dmash/contexts/config.py`` ``modify_groups``; the authors' `dmash/contexts/config.py`
(`modify_groups`)).

A point of the grid (``GridMethod``) fixes:

* ``source``: ``none`` (DR), ``true`` (the ground-truth context c) or ``inferred`` (z from the
  LSTM encoder, trained with a dynamics model);
* ``encoder``: ``plain`` (no mask, no norms), ``star`` (input mask, AvgL1Norm in, SimNorm out),
  ``pearl`` / ``pearl_plain`` (the PLSTM: Gaussian z, KL-weighted loss; with or without the
  starred input side);
* ``helper``: the dynamics model's merge: ``concat`` ([s, a, z]) or ``hypernet`` (its own
  hypernetwork h_eta and bottleneck adapter); None = no dynamics model;
* ``policy_merge`` / ``q_merge``: ``none``, ``concat``, ``own`` (a hypernetwork of the network's
  own, trained by its RL loss), ``shared`` (the adapter weights of ``shared_from``: the dynamics
  model's h_eta, or the actor's own hypernetwork for ``aware_hypernet_shared``);
* ``rl_losses``: which networks' conditioning is *not* detached (the authors'
  ``context_encoder_update`` minus ``"fm"``): ``"critic"`` lets every gradient through the
  critics' z (and omega) reach the encoder (and h_eta), ``"actor"`` the actor's. Detached by
  default (the authors' `dmash/contexts/sac.py`); the authors' shared omega is always computed
  without gradient, so the
  non-detached DMA*-SH variants (v2 Fig. 15) are INFERRED: their omega is differentiable too.
* ``default_context``: train in the task's default context only (``unaware_default``).

Method parameters are two groups, ``encoder`` (phi) and ``dynamics`` (theta, eta), each with its
own Adam like the authors' ``dce_optimizer`` and ``fm_optimizer``: the dynamics loss steps both;
a loss in ``rl_losses`` steps the encoder again with its own gradient, as the authors' code steps
``dce_optimizer`` (the encoder's parameters only) after every loss (``rl_groups``). The
dynamics group is stepped by the dynamics loss alone: torch's Adam skips parameters whose
gradient is None, so an RL loss leaves theta, eta and their Adam moments as they are (stepping
them on exact-zero gradients would move them by momentum).
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from hyperjax.methods.base import ContextMethod, MethodShapes
from hyperjax.nets.encoder import ContextEncoder
from hyperjax.nets.networks import Cond, DynamicsModel, own_omega

ENCODERS = {
    # name: (input_norm, output_norm, pearl)
    "plain": (False, False, False),
    "star": (True, True, False),
    "pearl_plain": (False, False, True),
    "pearl": (True, False, True),   # PLSTM: LayerNorm heads whatever the output norm
}
SOURCES = ("none", "true", "inferred")
NET_MERGES = ("none", "concat", "own", "shared")


class WorldModel:
    """Encoder g_phi and dynamics model f_{theta, omega} as two flax modules with one init
    (the flax paths of the former single ``WorldModel`` module, so initial values are the same).
    """

    def __init__(self, shapes: MethodShapes, encoder: str, mask_rate: float, helper: str | None):
        inorm, onorm, pearl = ENCODERS[encoder]
        self.encoder = ContextEncoder(obs_dim=shapes.obs_dim, action_dim=shapes.action_dim,
                                      context_size=shapes.context_size, mask_rate=mask_rate,
                                      input_norm=inorm, output_norm=onorm, pearl=pearl)
        self.dynamics = None if helper is None else DynamicsModel(
            shapes.obs_dim, merge="own" if helper == "hypernet" else "concat")


@dataclasses.dataclass(frozen=True)
class GridMethod(ContextMethod):
    """One point of the authors' grid (module doc)."""

    name: str = "grid"
    label: str = ""
    source: str = "none"
    encoder: str | None = None
    mask_rate: float = 0.0
    helper: str | None = None
    policy_merge: str = "none"
    q_merge: str = "none"
    shared_from: str = "model"
    rl_losses: tuple[str, ...] = ()
    default_context: bool = False
    pearl_beta: float = 0.4    # the PLSTM encoders' KL weight (the authors' ``kl_weight``)
    rl_groups = ("encoder",)  # the authors' dce_optimizer (module doc); not a field

    def __post_init__(self):
        if self.source not in SOURCES:
            raise ValueError(f"{self.name}: unknown source {self.source!r}; valid: "
                             f"{', '.join(SOURCES)}")
        for net, merge in (("policy", self.policy_merge), ("q", self.q_merge)):
            if merge not in NET_MERGES:
                raise ValueError(f"{self.name}: unknown {net} merge {merge!r}; valid: "
                                 f"{', '.join(NET_MERGES)}")
            if (merge == "none") != (self.source == "none"):
                raise ValueError(f"{self.name}: {net} merge {merge!r} does not fit source "
                                 f"{self.source!r}")
        inferred = self.source == "inferred"
        if inferred != (self.encoder is not None):
            raise ValueError(f"{self.name}: an encoder goes with source 'inferred' only")
        if self.encoder is not None and self.encoder not in ENCODERS:
            raise ValueError(f"{self.name}: unknown encoder {self.encoder!r}; valid: "
                             f"{', '.join(ENCODERS)}")
        if "shared" in (self.policy_merge, self.q_merge):
            if self.shared_from == "model" and self.helper != "hypernet":
                raise ValueError(f"{self.name}: a shared merge needs the dynamics model's "
                                 f"hypernetwork (helper='hypernet')")
            if self.shared_from == "actor" and self.policy_merge != "own":
                raise ValueError(f"{self.name}: sharing the actor's hypernetwork needs "
                                 f"policy_merge='own'")
        if inferred and self.helper is None and not self.rl_losses:
            raise ValueError(f"{self.name}: an encoder without a dynamics model must be "
                             f"trained by an RL loss (rl_losses)")
        if not 0.0 <= self.mask_rate < 1.0:
            raise ValueError(f"mask_rate must be in [0, 1), got {self.mask_rate}")
        object.__setattr__(self, "inferred", inferred)
        object.__setattr__(self, "reads_actor", self.shared_from == "actor" and
                           "shared" in (self.policy_merge, self.q_merge))

    def describe(self) -> tuple[str, ...]:
        merge = {"none": "–", "concat": "concat", "own": "own hypernet",
                 "shared": ("shares the actor's hypernet" if self.shared_from == "actor"
                            else "shares the model's hypernet")}
        ctx = {"none": "none (default c)" if self.default_context else "none",
               "true": "true c", "inferred": "inferred z"}[self.source]
        enc = "–" if self.encoder is None else f"{self.encoder} ({self.mask_rate:g})"
        helper = {None: "–", "concat": "concat", "hypernet": "hypernet"}[self.helper]
        trained = "–"
        if self.inferred:
            trained = " + ".join((["dynamics"] if self.helper is not None else [])
                                 + list(self.rl_losses))
        return (f"`{self.name}`", self.label or "–", ctx, enc, helper,
                merge[self.policy_merge], merge[self.q_merge], trained)

    # --- parameters ----------------------------------------------------------------------
    def _model(self, shapes: MethodShapes) -> WorldModel:
        return WorldModel(shapes, self.encoder, self.mask_rate, self.helper)

    def init(self, key, shapes: MethodShapes) -> dict:
        """``{"encoder": phi, "dynamics": theta (and eta)}`` from one key, folded in by the
        paths "encoder" / "dynamics" as when both were submodules of one module."""
        if not self.inferred:
            return {}
        wm = self._model(shapes)
        obs = jnp.zeros((1, shapes.obs_dim))
        act = jnp.zeros((1, shapes.action_dim))
        window = jnp.zeros((1, shapes.context_size, 2 * shapes.obs_dim + shapes.action_dim))
        fwd = jax.random.PRNGKey(0)  # the dummy forward's shuffle / mask: no effect on params
        enc = _init_as(wm.encoder, "encoder", key, window, fwd, True)
        out = {"encoder": enc}
        if wm.dynamics is not None:
            z = wm.encoder.apply({"params": enc}, window, fwd, True).z
            out["dynamics"] = _init_as(wm.dynamics, "dynamics", key, obs, act, z)
        return out

    def with_mask_rate(self, mask_rate: float) -> "GridMethod":
        if not self.inferred:
            return super().with_mask_rate(mask_rate)
        return dataclasses.replace(self, mask_rate=float(mask_rate))

    # --- conditioning ----------------------------------------------------------------------
    def encode_out(self, shapes, method_params, window, key, training, mask_rate=None):
        return self._model(shapes).encoder.apply({"params": method_params["encoder"]}, window,
                                               key, training, mask_rate)

    def omega(self, shapes, params, vec):
        """Adapter weights of a ``shared`` merge for ``vec`` (z or c)."""
        if self.shared_from == "actor":
            return own_omega(params.actor, vec)
        return self._model(shapes).dynamics.apply({"params": params.method["dynamics"]}, vec,
                                                method=DynamicsModel.omega)

    def net_cond(self, shapes, params, vec, merge: str, detach: bool) -> Cond:
        sg = jax.lax.stop_gradient if detach else (lambda x: x)
        if merge == "none":
            return Cond()
        vec = sg(vec)
        if merge == "shared":
            # the authors compute a shared omega under no_grad: a constant to the RL losses
            # (detach=False only for the INFERRED non-detached variants)
            return Cond(omega=sg(self.omega(shapes, params, vec)))
        return Cond(vec=vec)

    def conds_from(self, shapes, params, vec, stop_gradient: bool = True):
        detach_a = stop_gradient and "actor" not in self.rl_losses
        detach_q = stop_gradient and "critic" not in self.rl_losses
        cond_a = self.net_cond(shapes, params, vec, self.policy_merge, detach_a)
        if self.shared_from == "actor" and self.q_merge == "shared" and params.actor is None:
            return cond_a, None  # during init, before the actor (its hypernet) exists
        if (self.policy_merge == self.q_merge == "shared" and self.shared_from == "model"
                and detach_a and detach_q):
            # DMA*-SH: the actor and the critics take the same constant omega = h_eta(z);
            # computing it once instead of per network gives the same numbers for half the
            # hypernetwork FLOPs of every RL loss
            return cond_a, cond_a
        return cond_a, self.net_cond(shapes, params, vec, self.q_merge, detach_q)

    def condition(self, shapes, params, window, context, key, training, hp):
        if self.source == "none":
            return Cond(), Cond()
        if self.source == "true":
            return self.conds_from(shapes, params, context)
        z = self.encode_out(shapes, params.method, window, key, training,
                            None if hp is None else hp.mask_rate).z
        return self.conds_from(shapes, params, z)

    # --- the dynamics loss -----------------------------------------------------------------
    def has_aux(self) -> bool:
        return self.inferred and self.helper is not None

    def aux_loss(self, shapes, method_params, batch, key, hp):
        """Dynamics loss (the authors' `dmash/contexts/model.py`, Eq. 1/2): ``mean((f(s, a; z) -
        (s' - s))^2)``; PLSTM
        encoders multiply it by ``1 + beta * KL`` with KL the mean over batch and dims of a
        second encoder pass (the authors' ``get_kl``). Returns ``(loss, mse)``."""
        wm = self._model(shapes)
        pearl = ENCODERS[self.encoder][2]
        if pearl:
            key, k_kl = jax.random.split(key)
        mask = None if hp is None else hp.mask_rate
        z = wm.encoder.apply({"params": method_params["encoder"]}, batch.window, key, True,
                             mask).z
        pred = wm.dynamics.apply({"params": method_params["dynamics"]}, batch.obs,
                                 batch.action, z)
        mse = jnp.mean((pred - (batch.next_obs - batch.obs)) ** 2)
        if pearl:
            kl = wm.encoder.apply({"params": method_params["encoder"]}, batch.window, k_kl,
                                  True, mask).kl
            return mse * (1.0 + self.pearl_beta * jnp.mean(kl)), mse
        return mse, mse

    def training_contexts(self, train, default):
        return default[None] if self.default_context else train


def _init_as(module, name: str, key, *args):
    """``module``'s params initialised as the submodule ``name`` of a parent initialised with
    ``key`` (flax folds a child's rng by its name, so the values equal those the child had
    inside the former single world-model module)."""
    import flax.linen as nn

    class Parent(nn.Module):
        @nn.compact
        def __call__(self, *a):
            kw = {f: getattr(module, f) for f in module.__dataclass_fields__
                  if f not in ("parent", "name")}
            return type(module)(**kw, name=name)(*a)

    return Parent().init({"params": key}, *args)["params"][name]
