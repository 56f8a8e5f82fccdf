"""HyPoGen's spec-conditioned DM Control tasks on MJX: cheetah-run, walker-walk, finger-spin with
a target-speed spec, a torso-length spec, or both (the contextual-control-suite envs; paper App.
B.1).

Built on :class:`hyperjax.envs.mjx_tasks.MjxTask` (Playground's DM Control Suite on pure MJX,
one compiled MuJoCo model per spec in a table, gathered inside jit), with the spec as the
context. ``make_spec_task("cheetah_speed")`` → an ``Env`` whose ``context`` is the spec.

**Speed** m (the contextual suite's ``reward_kwargs['ALL']['margin']``, linear sigmoid,
value_at_margin 0.1): with ``v' = sign(m)·v`` (a negative m reverses the direction)::

    tol(v') = 1 if v' ≥ |m| else max(0, 1 − 0.9·(|m| − v')/|m|)       (rewards.tolerance)

  cheetah: ``r = tol(speed)``, speed = ``torso_subtreelinvel[0]``;
  walker: ``r = stand·(5·tol(v_x) + 1)/6``, stand = (3·standing + upright)/4 as dm_control (the
  spec replaces the move term's bounds and margin only; INFERRED reading of 'ALL');
  finger: ``r = tol(hinge_velocity)``.
Length-only tasks score the released dyn experiments' ``overwrite_all`` reward (``dyn_exp.yaml``:
margin m = 1 for every body, ``specs.DYN_MARGIN``), whose linear sigmoid reaches its floor 0
below v' = 1 − 1/0.9; the older default (Table 6's speeds, cheetah 10 and finger 15) is gone.

**Length** L (XML edits of the contextual-control-suite envs, here on the ``MjSpec``):
  cheetah (default 0.5): torso ``fromto = (−L,0,0, L,0,0)``, head ``pos = (L+0.1, 0, 0.1)``,
  bthigh body ``pos = (−L,0,0)``, fthigh body ``pos = (L,0,0)``;
  walker (default 0.3): torso geom ``size = (0.07, L)``;
  finger (default 0.16): distal ``fromto = (0,0,0, 0,0,−L)``, fingertip ``fromto = (0,0,−(L−0.03),
  0,0,−(L+0.001))``, spinner body ``pos = (L+0.04, 0, 0.4)``, caps ``size = (0.04, L−0.07)``.
Evaluation runs on the modified body (HyPoGen's `batch_eval_regressor.py`: the released
``eval_env`` did not).
"""
from __future__ import annotations


import jax.numpy as jnp
import mujoco
import numpy as np

from hyperjax.envs import mjx_tasks as mt
from hyperjax.envs.contexts import Factor
from hyperjax.hypogen import specs as S

BODIES = {  # Playground env, obs_dim, action_dim
    "cheetah": ("CheetahRun", 17, 6),
    "walker": ("WalkerWalk", 24, 6),
    "finger": ("FingerSpin", 9, 2),
}


# Where the speed the reward scores sits in the observation (Playground's ``_get_obs``):
# finger: qvel[2] = the hinge velocity (rad/s; exactly the reward's sensor); cheetah: qvel[0] =
# the root's x velocity (m/s; the reward uses the torso subtree's, nearly the same); walker:
# qvel[0] after 14 orientations and the height.
SPEED_OBS_INDEX = {"finger": 6, "cheetah": 8, "walker": 15}


def achieved_speed(body: str, obs) -> np.ndarray:
    """Mean speed over an episode from recorded observations ``float32[..., T, obs_dim]`` →
    ``float64[...]`` (units of the spec: rad/s for finger, m/s otherwise). Raises ``KeyError``
    for an unknown body."""
    return np.asarray(obs, np.float64)[..., SPEED_OBS_INDEX[body]].mean(-1)


def _cheetah_length(spec: mujoco.MjSpec, length: float) -> None:
    spec.geom("torso").fromto = [-length, 0.0, 0.0, length, 0.0, 0.0]
    spec.geom("head").pos = [length + 0.1, 0.0, 0.1]
    spec.body("bthigh").pos = [-length, 0.0, 0.0]
    spec.body("fthigh").pos = [length, 0.0, 0.0]


def _walker_length(spec: mujoco.MjSpec, length: float) -> None:
    g = spec.geom("torso")
    size = np.array(g.size)
    size[:2] = (0.07, length)
    g.size = size


def _finger_length(spec: mujoco.MjSpec, length: float) -> None:
    spec.geom("distal").fromto = [0.0, 0.0, 0.0, 0.0, 0.0, -length]
    spec.geom("fingertip").fromto = [0.0, 0.0, -(length - 0.03), 0.0, 0.0, -(length + 0.001)]
    spec.body("spinner").pos = [length + 0.04, 0.0, 0.4]
    for name in ("cap1", "cap2"):
        g = spec.geom(name)
        size = np.array(g.size)
        size[:2] = (0.04, length - 0.07)
        g.size = size


LENGTH_EDITS = {"cheetah": _cheetah_length, "walker": _walker_length, "finger": _finger_length}


def _finger_spin_damping(model: mujoco.MjModel, _value: float) -> None:
    """Playground's ``_make_spin_model``: hinge damping 0.03 (dm_control's spin task)."""
    model.dof_damping[model.joint("hinge").id] = 0.03


def speed_tolerance(v, m):
    """``rewards.tolerance(sign(m)·v, bounds=(|m|, ∞), margin=|m|, sigmoid='linear',
    value_at_margin=0.1)``, float32[] (the contextual-control-suite envs)."""
    a = jnp.abs(m)
    x = jnp.sign(m) * v
    scaled = (a - x) / a * 0.9
    return jnp.where(x >= a, 1.0, jnp.maximum(0.0, 1.0 - scaled)).astype(jnp.float32)


class SpecTask(mt.MjxTask):
    """A spec-conditioned DMC task. ``context`` = the spec in ``factors`` order; the model table
    holds one model per grid row (a spec outside the grid is refused, like AIB contexts)."""

    def __init__(self, name: str, grid: S.SpecGrid | None = None):
        body, _, family = name.partition("_")
        grid = grid if grid is not None else S.make_grid(name)
        playground, obs_dim, act_dim = BODIES[body]
        self.body = body
        factors = tuple(Factor(f, S.DEFAULT_SPEED[body] if f == "speed" else
                               S.DEFAULT_LENGTH[body], (0.0, 0.0), (0.0, 0.0))
                        for f in grid.factors)
        edits = {"speed": ("reward", None), "length": ("spec", LENGTH_EDITS[body])}
        task = mt.MjxTaskDef(name, lambda: mt._playground(playground), mt._playground_spec,
                           factors, {f.name: edits[f.name] for f in factors},
                           obs_dim=obs_dim, action_dim=act_dim)
        super().__init__(task, table_rows=grid.specs)
        self.grid = grid

    def mj_model(self, context) -> mujoco.MjModel:
        model = super().mj_model(context)
        if self.body == "finger":
            _finger_spin_damping(model, 0.0)
        return model

    def _speed(self, context):
        if "speed" in self.factors:
            return self.factor(context, "speed")
        return jnp.float32(S.DYN_MARGIN)

    def _step(self, key, p: mt.MjxPhysics, action, context):
        p, _, terminated = super()._step(key, p, action, context)
        data, be = p.state.data, self.backend
        m = self._speed(context)
        from mujoco_playground._src import mjx_env  # noqa: PLC0415
        if self.body == "finger":
            v = mjx_env.get_sensor_data(be.mj_model, data, "hinge_velocity")[0]
            reward = speed_tolerance(v, m)
        else:
            v = mjx_env.get_sensor_data(be.mj_model, data, "torso_subtreelinvel")[0]
            reward = speed_tolerance(v, m)
            if self.body == "walker":
                stand = be._get_stand_reward(data, action, {}, {})
                reward = stand * (5.0 * reward + 1.0) / 6.0
        return p, reward.astype(jnp.float32), terminated


def make_spec_task(name: str, grid: S.SpecGrid | None = None) -> SpecTask:
    """The spec task ``{cheetah,walker,finger}_{speed,length,speed_length}``.

    Raises ``ValueError`` for an unknown name (the message lists the valid ones).
    """
    valid = [n for n in S.grid_names() if not n.startswith("lqr_di")
             and n not in S.MANIPULATION_TASKS]
    if name not in valid:
        raise ValueError(f"unknown MJX spec task {name!r}; valid: {', '.join(valid)}")
    return SpecTask(name, grid)
