"""AIB double integrator (DI, DI-Friction) in pure jnp.

Source: DMA*-SH the authors' `dmash/contexts/context.py` and the authors' ``DIEnv`` (sparse
reward). dt = 0.1::

    force = clip(a * action_factor, -1, 1)
    pos  <- pos + vel * dt                                   (old velocity)
    vel  <- vel * (1 - dt * friction / mass) + force / mass * dt
    pos, vel <- clip(pos, -1, 1), clip(vel, -1, 1)
    reward = 1[||pos|| <= 0.1]                               (new position)

Reset: vel = 0, pos uniform on [-1, 1]^2 conditioned on |x| > 0.8 and |y| > 0.8 (corner
starts; sampled directly, which equals the authors' rejection sampler in distribution).
Observation ``float32[4] = [x, y, vx, vy]``; action ``float32[2]`` in [-1, 1] (N).
100-step episodes, never terminated.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from hyperjax.envs import contexts as ctx
from hyperjax.envs.core import Env

DT = 0.1
GOAL_THRESHOLD = 0.1


class DIPhysics(NamedTuple):
    pos: jax.Array  # float32[2], position (m)
    vel: jax.Array  # float32[2], velocity (m/s)


class DoubleIntegrator(Env):
    """2-D double integrator with a sparse goal reward (AIB "DI" / "DI-Friction")."""

    obs_dim = 4
    action_dim = 2
    episode_length = 100

    def __init__(self, name: str, varied: tuple[ctx.Factor, ...], friction: float):
        self.name = name
        self.varied = varied
        self.factors = tuple(f.name for f in varied)
        self._default_context = tuple(
            friction if f.name == "friction" else f.default for f in varied)
        self._friction = friction

    def _param(self, context, name, default):
        return self.factor(context, name) if name in self.factors else jnp.float32(default)

    def _reset(self, key, context):
        k_mag, k_sign = jax.random.split(key)
        mag = jax.random.uniform(k_mag, (2,), jnp.float32, 0.8, 1.0)
        sign = jnp.where(jax.random.bernoulli(k_sign, 0.5, (2,)), 1.0, -1.0)
        # |x| in (0.8, 1]: the open end at 0.8 has probability zero either way.
        return DIPhysics(pos=(mag * sign).astype(jnp.float32), vel=jnp.zeros(2, jnp.float32))

    def _step(self, key, p: DIPhysics, action, context):
        mass = self._param(context, "mass", 1.0)
        friction = self._param(context, "friction", self._friction)
        af = self._param(context, "action_factor", 1.0)
        if "permutation" in self.factors:  # v2's actuator permutation: swap the two axes
            action = jnp.where(self.factor(context, "permutation") > 0.5, action[::-1], action)
        force = jnp.clip(action * af, -1.0, 1.0)
        pos = p.pos + p.vel * DT
        vel = p.vel * (1.0 - DT * friction / mass) + force / mass * DT
        pos = jnp.clip(pos, -1.0, 1.0)
        vel = jnp.clip(vel, -1.0, 1.0)
        reward = (jnp.linalg.norm(pos) <= GOAL_THRESHOLD).astype(jnp.float32)
        return DIPhysics(pos, vel), reward, jnp.zeros((), bool)

    def _obs(self, p: DIPhysics):
        return jnp.concatenate([p.pos, p.vel])


def make_di() -> DoubleIntegrator:
    """DI: context (mass, action_factor), no friction (the authors' `dmash/contexts/context.py`)."""
    return DoubleIntegrator("di", (ctx.MASS, ctx.ACTION_FACTOR), friction=0.0)


def make_di_friction() -> DoubleIntegrator:
    """DI-Friction: context (mass, friction), friction default 1.0 (the authors'
    `dmash/contexts/context.py`)."""
    return DoubleIntegrator("di_friction", (ctx.MASS, ctx.FRICTION), friction=1.0)


def make_di_perm() -> DoubleIntegrator:
    """DI-Perm (v2): context (mass, permutation); permutation 1 swaps the two action axes.

    The v2 paper's exact DI-Perm recipe was not retrievable (the authors'
    `dmash/contexts/context.py`); this keeps DI with the
    action factor replaced by the binary permutation, which takes both values in every split.
    """
    return DoubleIntegrator("di_perm", (ctx.MASS, ctx.PERMUTATION), friction=0.0)
