"""AIB ODE task (after Beukman et al.'s ``complex_ode``) in pure jnp.

Source: DMA*-SH notes §2 and the authors' ``ComplexODE``. With the complex action
``a = a0 + i*a1`` and context ``(c0, c1) = (parameter_0, parameter_1)``::

    xdot = Re(c0 * a + c1 * a^2) = c0 * a0 + c1 * (a0^2 - a1^2)
    x <- clip(x + xdot * dt, -20, 20),   dt = 0.01

Reward on the new ``|x|``: 1, 1/2, 1/3, 1/4 below 0.05, 0.1, 0.2, 0.5; 0.05 below 2; else 0.
Reset ``x ~ U(-1, 1)``. Observation ``float32[1]``, action ``float32[2]`` in [-1, 1];
200-step episodes, never terminated.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from hyperjax.envs import contexts as ctx
from hyperjax.envs.core import Env

DT = 0.01
MAX_X = 20.0


def ode_reward(x_abs: jax.Array) -> jax.Array:
    """Banded reward of the authors' ``_get_reward`` for ``|x|`` (float32[...])."""
    return jnp.select(
        [x_abs < 0.05, x_abs < 0.1, x_abs < 0.2, x_abs < 0.5, x_abs < 2.0],
        [1.0, 0.5, 1.0 / 3.0, 0.25, 0.05], 0.0).astype(jnp.float32)


class ComplexODE(Env):
    name = "ode"
    obs_dim = 1
    action_dim = 2
    episode_length = 200
    max_return = 200.0
    factors = ("parameter_0", "parameter_1")
    _default_context = (1.0, 0.0)
    varied = (ctx.ODE_P0, ctx.ODE_P1)

    def _reset(self, key, context):
        return jax.random.uniform(key, (1,), jnp.float32, -1.0, 1.0)

    def _step(self, key, x, action, context):
        c0, c1 = context[0], context[1]
        a0, a1 = action[0], action[1]
        xdot = c0 * a0 + c1 * (a0 * a0 - a1 * a1)
        x = jnp.clip(x + xdot * DT, -MAX_X, MAX_X)
        return x, ode_reward(jnp.abs(x[0])), jnp.zeros((), bool)

    def _obs(self, x):
        return x
