"""AIB ODE task (after Beukman et al.'s ``complex_ode``) in pure jnp.

Source: DMA*-SH the authors' `dmash/contexts/context.py` and the authors' ``ComplexODE``. With the
complex action
``a = a0 + i*a1`` and context ``(c0, c1) = (parameter_0, parameter_1)``::

    xdot = Re(c0 * a + c1 * a^2) = c0 * a0 + c1 * (a0^2 - a1^2)
    x <- clip(x + xdot * dt, -20, 20),   dt = 0.01

Reward on the new ``|x|``: 1, 1/2, 1/3, 1/4 below 0.05, 0.1, 0.2, 0.5; 0.05 below 2; else 0.
Reset ``x ~ U(-1, 1)``. Observation ``float32[1]``, action ``float32[2]`` in [-1, 1];
200-step episodes, never terminated.

``ComplexODEk`` is the authors' ``ODE-{k}-v0`` (``ComplexODE`` with ``only_two=False``,
registered in ``dmash/__init__.py`` for k = 1 ... 20 with every parameter 1.0 by default)::

    xdot = Re(sum_{i < k} c_i * a^(i + 1))

with the same step, clip, reward and reset. Its context sets, for k > 2, are sampled
(``contexts.sample_context_sets``), not taken from the mesh.
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


ODE_K_MAX = 20


class ComplexODEk(ComplexODE):
    """``ODE-k`` (module doc): k context factors ``parameter_0 .. parameter_{k-1}``.

    Raises:
      ValueError: k outside 1 .. 20 (the authors register ODE-1 ... ODE-20).
    """

    def __init__(self, k: int):
        if not (isinstance(k, int) and 1 <= k <= ODE_K_MAX):
            raise ValueError(f"ODE-k needs k in 1..{ODE_K_MAX}, got {k!r}")
        self.k = k
        self.name = f"ode_{k}"
        self.varied = ctx.ode_k_factors(k)
        self.factors = tuple(f.name for f in self.varied)
        self._default_context = (1.0,) * k  # the authors' registration kwargs

    def _step(self, key, x, action, context):
        a_re, a_im = action[0], action[1]
        p_re, p_im = a_re, a_im  # a^1
        xdot = context[0] * p_re
        for i in range(1, self.k):  # a^(i+1) = a^i * a, real part weighted by c_i
            p_re, p_im = p_re * a_re - p_im * a_im, p_re * a_im + p_im * a_re
            xdot = xdot + context[i] * p_re
        x = jnp.clip(x + xdot * DT, -MAX_X, MAX_X)
        return x, ode_reward(jnp.abs(x[0])), jnp.zeros((), bool)
