"""gymnasium's Walker2d-v5 and Hopper-v5 on MJX (AIB's WalkerGym / HopperGym, the authors'
`dmash/contexts/context.py`).

Semantics follow gymnasium 1.x's ``walker2d_v5.py`` / ``hopper_v5.py`` on gymnasium's own XMLs
(``walker2d_v5.xml``, ``hopper.xml``), with ``terminate_when_unhealthy=False`` as the authors
run them:

* ``frame_skip = 4`` MuJoCo steps per env step (dt = 0.008 s);
* obs = ``[qpos[1:], clip(qvel, -10, 10)]`` (17 / 11 dims);
* reward = ``(x_after - x_before) / dt + 1[healthy] * 1.0 - 1e-3 * ||a||^2``;
* healthy: Walker ``0.8 < z < 2``, ``-1 < angle < 1``; Hopper additionally
  ``|state_vector()[2:]| < 100`` and ``z > 0.7``, ``-0.2 < angle < 0.2``;
* reset: ``qpos0 + U(-5e-3, 5e-3)``, ``qvel = U(-5e-3, 5e-3)``.

The class exposes Playground's ``MjxEnv`` surface (``reset(rng)``, ``step(state, action)``,
``mj_model``, ``_mjx_model``, ``xml_path``) so :class:`hyperjax.envs.mjx_tasks.MjxTask` treats it
like the DMC tasks.
"""
from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import mujoco
from mujoco import mjx
from mujoco_playground._src import mjx_env

FRAME_SKIP = 4
CTRL_COST_WEIGHT = 1e-3
HEALTHY_REWARD = 1.0
RESET_NOISE = 5e-3


def gym_asset(name: str) -> str:
    """Path of one of gymnasium's MuJoCo XMLs (gymnasium is a dependency for its assets)."""
    import gymnasium  # noqa: PLC0415  (only its asset folder is used)
    return os.path.join(os.path.dirname(gymnasium.__file__), "envs", "mujoco", "assets", name)


class GymLocomotion:
    """Walker2d-v5 (``kind="walker2d"``) or Hopper-v5 (``kind="hopper"``) on MJX."""

    def __init__(self, kind: str):
        if kind not in ("walker2d", "hopper"):
            raise ValueError(f"unknown gym task {kind!r}; valid: walker2d, hopper")
        self.kind = kind
        self.xml_path = gym_asset("walker2d_v5.xml" if kind == "walker2d" else "hopper.xml")
        self._model_assets = {}
        self._mj_model = mujoco.MjModel.from_xml_path(self.xml_path)
        self._mjx_model = mjx.put_model(self._mj_model, impl="jax")
        if kind == "walker2d":
            self._z_range, self._angle_range, self._state_bound = (0.8, 2.0), (-1.0, 1.0), None
        else:
            self._z_range, self._angle_range = (0.7, float("inf")), (-0.2, 0.2)
            self._state_bound = 100.0

    @property
    def mj_model(self):
        return self._mj_model

    @property
    def mjx_model(self):
        return self._mjx_model

    @property
    def dt(self) -> float:
        return float(self._mj_model.opt.timestep) * FRAME_SKIP

    def is_healthy(self, data) -> jax.Array:
        """gymnasium's ``is_healthy`` on ``data`` (``bool[]``)."""
        z, angle = data.qpos[1], data.qpos[2]
        ok = (z > self._z_range[0]) & (z < self._z_range[1])
        ok &= (angle > self._angle_range[0]) & (angle < self._angle_range[1])
        if self._state_bound is not None:
            state = jnp.concatenate([data.qpos, data.qvel])[2:]
            ok &= jnp.all((state > -self._state_bound) & (state < self._state_bound))
        return ok

    def _obs(self, data):
        return jnp.concatenate([data.qpos[1:], jnp.clip(data.qvel, -10.0, 10.0)])

    def reset(self, rng: jax.Array) -> mjx_env.State:
        rng, k_pos, k_vel = jax.random.split(rng, 3)
        m = self._mj_model
        qpos = jnp.asarray(m.qpos0) + jax.random.uniform(k_pos, (m.nq,), minval=-RESET_NOISE,
                                                        maxval=RESET_NOISE)
        qvel = jax.random.uniform(k_vel, (m.nv,), minval=-RESET_NOISE, maxval=RESET_NOISE)
        data = mjx_env.make_data(m, qpos=qpos, qvel=qvel, impl="jax")
        data = mjx.forward(self._mjx_model, data)
        zero = jnp.zeros((), jnp.float32)
        return mjx_env.State(data, self._obs(data), zero, zero, {}, {"rng": rng})

    def step(self, state: mjx_env.State, action: jax.Array) -> mjx_env.State:
        x_before = state.data.qpos[0]
        data = mjx_env.step(self._mjx_model, state.data, action, FRAME_SKIP)
        forward = (data.qpos[0] - x_before) / self.dt
        ctrl_cost = CTRL_COST_WEIGHT * jnp.sum(jnp.square(action))
        reward = forward + HEALTHY_REWARD * self.is_healthy(data) - ctrl_cost
        return mjx_env.State(data, self._obs(data), reward, jnp.zeros((), jnp.float32),
                             state.metrics, state.info)
