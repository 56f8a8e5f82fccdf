"""HyPoGen's manipulation tasks on MJX: ManiSkill2's LiftCube and PickCube with a Franka Panda,
the spec (cube half-size, arm joint stiffness, arm joint damping or arm length) as the context.

Sources: the released ManiSkill2 fork (github ReNginx/HyPoGen @b286e2f, ``maniskill/``):
``envs/pick_and_place/pick_cube.py`` (observations, dense rewards, success, resets),
``maniskill/ppo.py`` (state observations, ``pd_ee_delta_pose`` control, 100-step training
episodes), ``eval_maniskill.sh`` and ``eval-partition/*.txt`` (spec grids and test specs),
``assets/descriptions/modify_length.py`` (the arm-length edit); the paper's App. B.1; HyPoGen's
`utils/dataset.py`

**Scene** (``assets/panda_cube.xml``, hyperjax's own MJCF of primitives, nothing downloaded):
the Panda's kinematic chain, joint ranges and link masses; the base at (−0.615, 0, 0) on a
table top at z = 0; a cube of half-size h and density 1000 kg/m³; MuJoCo 0.005 s steps, 10 per
control step (20 Hz control as ManiSkill2; its physics runs at 500 Hz: INFERRED trade-off).

**Action** (7, in [−1, 1]), ManiSkill2's ``pd_ee_delta_pose`` as the released experts use
(``mani_skill2/agents/controllers/pd_ee_pose.py``, ``frame="ee"``): the target is the TCP pose
composed with the delta, ``T_tcp · (a[:3]·0.1 m, rotvec(r))``, so both the move and the rotation
are in the TCP's own frame; the rotation part ``r = a[3:6]`` is clipped by its norm (``r/‖r‖``
when ``‖r‖ > 1``) and scaled by 0.1 rad (:func:`ee_delta`). ``a[6]`` sets both finger targets
linearly in [−0.01, 0.04] m.
The arm's joint targets come from one damped-least-squares step on the TCP Jacobian
(ManiSkill2 iterates its IK to convergence: INFERRED simplification for deltas ≤ 0.1); joint
PD drives (the 7 arm joints and both fingers, which the released fork drives with the same
``agent_stiffness`` / ``agent_damping``: ``agents/configs/panda/defaults.py``) then apply
``k·(target − q) − d·q̇`` with gravity compensated: the stiffness part
through the actuator (|·| ≤ 100 N·m), the damping part as joint damping, integrated
implicitly by MuJoCo's Euler integrator (so MJX and C MuJoCo agree; module ``ASSET``'s
header).

**Observation** (state): qpos[9], qvel[9], base pose[7], TCP pose[7] (position, quaternion
wxyz), then LiftCube: cube pose[7], tcp→cube[3] (42); PickCube: goal[3], tcp→goal[3], cube
pose[7], tcp→cube[3], cube→goal[3] (51). The base-pose block follows ManiSkill2 0.5's agent
state (INFERRED).

**Reward, success** (``pick_cube.py``): LiftCube succeeds when the cube's z ≥ 0.2 + h; reward
2.25 on success, else (1 − tanh(5·‖tcp − cube‖)) + [grasped]·(0.25 + min((z − h)/0.2, 1)).
PickCube succeeds when ‖goal − cube‖ ≤ 0.025; reward 5 on success, else reaching +
[grasped]·(1 + 1 − tanh(5·‖goal − cube‖)). *grasped* = both pads touch the cube with the contact
normal within 30° of the finger's opening direction (ManiSkill2's ``check_grasp(max_angle=30)``
tests the contact impulse; the normal ignores friction: INFERRED). Success terminates the
episode (``terminated``); the cap is 200 steps (evaluation; Table 2) and the released experts
train on 100-step episodes.

**Specs** (each an ``MjSpec`` edit, compiled by MuJoCo, one model-table row per spec):
``cube_size`` h (the cube's geom; grid 0.010…0.030 step 0.002), ``stiffness`` k of the 7 arm
drives and the 2 finger drives (500…1500 step 100), ``damping`` d of the same 9 joints (50…150
step 10; ``defaults.py`` sets ``gripper_stiffness``/``gripper_damping`` from the spec too; the
finger pads' friction is 2.0, its ``gripper`` material), ``length`` f: link6 moves
``0.259·(f − 1)`` m along link5's axis, i.e. the forearm grows (``modify_length.py``; grid
0.5…2.0 step 0.1). Defaults 0.02, 1000, 100, 1.0. The grids are ``eval_maniskill.sh``'s
(11, 11, 11, 16 specs; the paper's App. B.1 lists 21-spec ranges for the first three, which the
released partitions do not use).
"""
from __future__ import annotations

import contextlib
import os

import jax
import jax.numpy as jnp
import mujoco
import numpy as np

from hyperjax.envs import mjx_tasks as mt
from hyperjax.envs.contexts import Factor

ASSET = os.path.join(os.path.dirname(__file__), "assets", "panda_cube.xml")
ARM_JOINTS = tuple(f"joint{i}" for i in range(1, 8))
FINGER_JOINTS = ("finger_joint1", "finger_joint2")
FINGER_ACTUATORS = ("finger1", "finger2")
# ManiSkill2's Panda rest pose (pick_and_place/base_env.py) and its N(0, 0.02) joint noise.
REST_QPOS = (0.0, np.pi / 8, 0.0, -np.pi * 5 / 8, 0.0, np.pi * 3 / 4, np.pi / 4, 0.04, 0.04)
QPOS_NOISE = 0.02
BASE_POSE = (-0.615, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0)
POS_SCALE, ROT_SCALE = 0.1, 0.1            # pd_ee_delta_pose bounds (m, rad)
GRIPPER_LOW, GRIPPER_HIGH = -0.01, 0.04    # finger targets (m)
SUBSTEPS = 10                              # 0.005 s physics steps per 0.05 s control step
IK_DAMPING = 1e-2                          # λ of the damped least squares
GOAL_HEIGHT = 0.2                          # LiftCube
GOAL_THRESH, MIN_GOAL_DIST = 0.025, 0.05   # PickCube
GRASP_MAX_ANGLE = np.deg2rad(30.0)
EPISODE_LENGTH = 200                       # ManiSkill2's cap (Table 2's evaluation)
TRAIN_EPISODE_LENGTH = 100                 # the released PPO's training episodes

# The spec families (default, and the grid of eval_maniskill.sh).
FAMILIES = {
    "cube": (Factor("cube_size", 0.02, (0.0, 0.0), (0.0, 0.0)), (0.010, 0.030, 0.002)),
    "stiffness": (Factor("stiffness", 1000.0, (0.0, 0.0), (0.0, 0.0)), (500.0, 1500.0, 100.0)),
    "damping": (Factor("damping", 100.0, (0.0, 0.0), (0.0, 0.0)), (50.0, 150.0, 10.0)),
    "length": (Factor("length", 1.0, (0.0, 0.0), (0.0, 0.0)), (0.5, 2.0, 0.1)),
}
BASE_TASKS = ("lift_cube", "pick_cube")   # each with every FAMILIES spec: task_names()


def task_names() -> tuple[str, ...]:
    """``{lift_cube,pick_cube}_{cube,stiffness,damping,length}``."""
    return tuple(f"{t}_{f}" for t in BASE_TASKS for f in FAMILIES)


@contextlib.contextmanager
def _level_barriers():
    """Traces MJX with an ``optimization_barrier`` after every level of its body tree.

    Under ``vmap`` on XLA:CPU, MJX's forward kinematics (``smooth.kinematics``, one
    ``scan.body_tree`` level per tree depth, each a quaternion product with its parent) costs
    time exponential in the chain's depth: measured on this scene (depth 11), 100 physics steps
    of 4 vmapped envs took 8.7 s against 0.018 s for one env unbatched; cutting the chain at
    link6 / link7 / hand gave 0.03 / 0.24 / 3.1 s (XLA fusion recomputes each level's producers
    for every consumer). A barrier per level keeps each level computed once: 0.04 s for 4 envs,
    0.34 s for 64. Values are unchanged (a barrier is an identity); only this module's traces
    see it (the patch is undone on exit, so other tasks compile exactly as before).
    """
    from mujoco.mjx._src import scan  # noqa: PLC0415
    orig = scan.body_tree

    def body_tree(m, f, in_types, out_types, *args, reverse=False):
        g = lambda *a: jax.lax.optimization_barrier(f(*a))
        return orig(m, g, in_types, out_types, *args, reverse=reverse)

    scan.body_tree = body_tree
    try:
        yield
    finally:
        scan.body_tree = orig


# --- MjSpec edits (one per family) ----------------------------------------------------------

def _cube_size(spec: mujoco.MjSpec, h: float) -> None:
    spec.geom("cube").size = [h, h, h]
    spec.body("cube").pos = [0.0, 0.0, h]


def _stiffness(spec: mujoco.MjSpec, k: float) -> None:
    """The drives' stiffness k: the 7 arm actuators and both finger actuators (the fork's
    ``arm_stiffness = gripper_stiffness = agent_stiffness``)."""
    for name in ARM_JOINTS + FINGER_ACTUATORS:
        a = spec.actuator(name)
        gain, bias = np.array(a.gainprm), np.array(a.biasprm)
        gain[0], bias[1] = k, -k
        a.gainprm, a.biasprm = gain, bias


def _damping(spec: mujoco.MjSpec, d: float) -> None:
    """The drives' damping d on the 7 arm joints and both finger joints (the fork's
    ``arm_damping = gripper_damping = agent_damping``), held as the joints' damping (the
    scene's header says why)."""
    for name in ARM_JOINTS + FINGER_JOINTS:
        j = spec.joint(name)
        damping = np.array(j.damping)   # MuJoCo 3.17: [linear, higher-order terms]
        damping[0] = d
        j.damping = damping


def _length(spec: mujoco.MjSpec, f: float) -> None:
    """``modify_length.py``: joint6's origin = (0, 0, 0.259 (f − 1)) in link5's frame; the
    forearm capsule follows."""
    extra = 0.259 * (f - 1.0)
    spec.body("link6").pos = [0.0, 0.0, extra]
    spec.geom("link5_c").fromto = [0.0, 0.0, -0.26, 0.0, 0.0, max(extra, 0.0)]


EDITS = {"cube_size": _cube_size, "stiffness": _stiffness, "damping": _damping,
         "length": _length}


# --- small rotations helpers ----------------------------------------------------------------

def mat_to_quat(r):
    """Rotation matrix ``[3, 3]`` → unit quaternion (w, x, y, z) with w ≥ 0 (Shepperd's
    method; the branch is chosen by the largest diagonal term)."""
    t = jnp.trace(r)
    cands = jnp.stack([
        jnp.array([1.0 + t, r[2, 1] - r[1, 2], r[0, 2] - r[2, 0], r[1, 0] - r[0, 1]]),
        jnp.array([r[2, 1] - r[1, 2], 1.0 + r[0, 0] - r[1, 1] - r[2, 2], r[0, 1] + r[1, 0],
                   r[0, 2] + r[2, 0]]),
        jnp.array([r[0, 2] - r[2, 0], r[0, 1] + r[1, 0], 1.0 - r[0, 0] + r[1, 1] - r[2, 2],
                   r[1, 2] + r[2, 1]]),
        jnp.array([r[1, 0] - r[0, 1], r[0, 2] + r[2, 0], r[1, 2] + r[2, 1],
                   1.0 - r[0, 0] - r[1, 1] + r[2, 2]]),
    ])
    i = jnp.argmax(jnp.array([t, r[0, 0], r[1, 1], r[2, 2]]))
    q = cands[i]
    q = q / jnp.linalg.norm(q)
    return q * jnp.where(q[0] < 0, -1.0, 1.0)


def ee_delta(action, tcp_mat, xp=jnp):
    """ManiSkill2's ``pd_ee_delta_pose`` delta in world axes: ``float[6]`` = (Δp m, Δθ rad).

    ``action`` ``float[≥6]`` in [−1, 1], ``tcp_mat`` ``float[3, 3]`` the TCP's rotation (world ←
    TCP). The target pose is ``T_tcp · (0.1·a[:3], rotvec(0.1·r))`` (``frame="ee"``), with
    ``r = a[3:6]`` divided by ‖r‖ when ‖r‖ > 1 (``PDEEPoseController._clip_and_scale_action``);
    in world axes the move is ``R·0.1·a[:3]`` and the rotation vector ``R·0.1·r``
    (``R rotvec(ω) Rᵀ = rotvec(Rω)``). ``xp`` is ``jax.numpy`` or ``numpy``."""
    pos = action[:3] * POS_SCALE
    rot = action[3:6]
    rot = rot / xp.maximum(xp.linalg.norm(rot), 1.0) * ROT_SCALE
    return xp.concatenate([tcp_mat @ pos, tcp_mat @ rot])


class PandaCube:
    """The backend of both tasks (Playground's ``MjxEnv`` interface as :class:`MjxTask` needs
    it: ``mj_model``, ``_mjx_model``, ``reset(rng)``, ``step(state, action)``).

    ``state.data`` is the ``mjx.Data``; ``state.info["goal"]`` ``float32[3]`` the goal (m).
    """

    def __init__(self, task: str):
        if task not in BASE_TASKS:
            raise ValueError(f"unknown manipulation task {task!r}; valid: {', '.join(BASE_TASKS)}")
        self.task = task
        self.mj_model = mujoco.MjModel.from_xml_path(ASSET)
        self._mjx_model = mt._mjx().put_model(self.mj_model, impl="jax")
        m = self.mj_model
        self._tcp = m.site("tcp").id
        self._hand = m.body("hand").id
        self._cube_body = m.body("cube").id
        self._cube_geom = m.geom("cube").id
        self._pads = (m.geom("left_pad").id, m.geom("right_pad").id)
        self._fingers = (m.body("left_finger").id, m.body("right_finger").id)
        self._cube_qpos = int(m.jnt_qposadr[m.joint("cube").id])
        self._jnt_range = jnp.asarray(m.jnt_range[:7], jnp.float32)
        self.obs_dim = 42 if task == "lift_cube" else 51
        self.action_dim = 7

    @property
    def mjx_model(self):
        return self._mjx_model

    # --- pieces shared with the tests' C MuJoCo reference ------------------------------------
    def cube_half(self, model) -> jax.Array:
        return model.geom_size[self._cube_geom, 2]

    def arm_targets(self, model, data, action):
        """Joint targets ``float32[9]`` of action ``float32[7]`` (pd_ee_delta_pose + gripper):
        one damped-least-squares step towards the TCP-frame delta of :func:`ee_delta`."""
        a = jnp.clip(action, -1.0, 1.0)
        err = ee_delta(a, data.site_xmat[self._tcp].reshape(3, 3))
        jacp, jacr = mt._mjx()._src.support.jac(model, data, data.site_xpos[self._tcp], self._hand)
        jac = jnp.concatenate([jacp.T, jacr.T])[:, :7]                    # [6, 7]
        jjt = jac @ jac.T + IK_DAMPING ** 2 * jnp.eye(6)
        dq = jac.T @ jnp.linalg.solve(jjt, err)
        q = jnp.clip(data.qpos[:7] + dq, self._jnt_range[:, 0], self._jnt_range[:, 1])
        g = GRIPPER_LOW + (a[6] + 1.0) * 0.5 * (GRIPPER_HIGH - GRIPPER_LOW)
        return jnp.concatenate([q, jnp.stack([g, g])])

    def tcp_pose(self, data):
        return data.site_xpos[self._tcp], mat_to_quat(data.site_xmat[self._tcp].reshape(3, 3))

    def grasped(self, data) -> jax.Array:
        """ManiSkill2's ``check_grasp(cube, max_angle=30)`` on contact normals (module doc)."""
        c = data._impl.contact
        active = c.dist < 0.0
        flags = []
        for pad, body in zip(self._pads, self._fingers):
            opening = data.xmat[body].reshape(3, 3)[:, 1]   # the finger's +y: outward for both
            g1, g2 = c.geom[:, 0], c.geom[:, 1]
            # frame[:, 0] is the normal from geom1 to geom2; the push on the pad points away
            # from the cube: +normal when the cube is geom1, −normal when the pad is.
            is_pair = ((g1 == self._cube_geom) & (g2 == pad)) | ((g1 == pad) & (g2 == self._cube_geom))
            push = c.frame[:, 0] * jnp.where(g1 == self._cube_geom, 1.0, -1.0)[:, None]
            cos = push @ opening
            ok = active & is_pair & (cos >= np.cos(GRASP_MAX_ANGLE))
            flags.append(jnp.any(ok))
        return flags[0] & flags[1]

    def evaluate(self, model, data, goal):
        """(success bool[], grasped bool[], cube position float32[3]): ManiSkill's ``evaluate``
        (the released tasks' name for the success check)."""
        cube = data.xpos[self._cube_body]
        if self.task == "lift_cube":
            success = cube[2] >= GOAL_HEIGHT + self.cube_half(model)
        else:
            success = jnp.linalg.norm(goal - cube) <= GOAL_THRESH
        return success, self.grasped(data), cube

    def reward(self, model, data, goal):
        success, grasped, cube = self.evaluate(model, data, goal)
        tcp, _ = self.tcp_pose(data)
        reach = 1.0 - jnp.tanh(5.0 * jnp.linalg.norm(tcp - cube))
        g = grasped.astype(jnp.float32)
        if self.task == "lift_cube":
            lift = jnp.minimum((cube[2] - self.cube_half(model)) / GOAL_HEIGHT, 1.0)
            dense = reach + g * (0.25 + lift)
            return jnp.where(success, 2.25, dense), success
        place = 1.0 - jnp.tanh(5.0 * jnp.linalg.norm(goal - cube))
        dense = reach + g * (1.0 + place)
        return jnp.where(success, 5.0, dense), success

    def observe(self, data, goal):
        tcp_p, tcp_q = self.tcp_pose(data)
        cube_p = data.xpos[self._cube_body]
        cube_q = data.xquat[self._cube_body]
        parts = [data.qpos[:9], data.qvel[:9], jnp.asarray(BASE_POSE), tcp_p, tcp_q]
        if self.task == "lift_cube":
            parts += [cube_p, cube_q, cube_p - tcp_p]
        else:
            parts += [goal, goal - tcp_p, cube_p, cube_q, cube_p - tcp_p, goal - cube_p]
        return jnp.concatenate(parts).astype(jnp.float32)

    # --- the MjxEnv interface -------------------------------------------------------------
    def reset(self, rng):
        with _level_barriers():
            return self._reset(rng)

    def step(self, state, action):
        with _level_barriers():
            return self._step(state, action)

    def _reset(self, rng):
        from mujoco_playground._src import mjx_env  # noqa: PLC0415
        model = self._mjx_model
        k_q, k_xy, k_yaw, k_gxy, k_gz = jax.random.split(rng, 5)
        rest = jnp.asarray(REST_QPOS, jnp.float32)
        arm = rest[:7] + QPOS_NOISE * jax.random.normal(k_q, (7,))
        h = self.cube_half(model)
        xy = jax.random.uniform(k_xy, (2,), minval=-0.1, maxval=0.1)
        yaw = jax.random.uniform(k_yaw, (), minval=0.0, maxval=2 * jnp.pi)
        cube = jnp.concatenate([xy, h[None], jnp.cos(yaw / 2)[None], jnp.zeros(2),
                                jnp.sin(yaw / 2)[None]])
        qpos = jnp.concatenate([arm, rest[7:], cube])
        if self.task == "lift_cube":
            goal = cube[:3] + jnp.array([0.0, 0.0, GOAL_HEIGHT])
        else:  # ManiSkill2 re-draws until ‖goal − cube‖ > 0.05; 16 draws at once, first valid
            gxy = jax.random.uniform(k_gxy, (16, 2), minval=-0.1, maxval=0.1)
            gz = jax.random.uniform(k_gz, (16, 1), minval=0.0, maxval=0.5) + h
            cands = jnp.concatenate([gxy, gz], -1)
            ok = jnp.linalg.norm(cands - cube[:3], axis=-1) > MIN_GOAL_DIST
            goal = cands[jnp.argmax(ok)]
        data = mt._mjx().make_data(model)
        data = data.replace(qpos=qpos, ctrl=qpos[:9])
        data = mt._mjx().forward(model, data)
        zero = jnp.zeros((), jnp.float32)
        info = {"goal": goal.astype(jnp.float32), "success": jnp.zeros((), bool)}
        return mjx_env.State(data, self.observe(data, goal), zero, zero, {}, info)

    def _step(self, state, action):
        model, goal = self._mjx_model, state.info["goal"]
        ctrl = self.arm_targets(model, state.data, action)
        data = state.data.replace(ctrl=ctrl)
        data = jax.lax.fori_loop(0, SUBSTEPS, lambda _, d: mt._mjx().step(model, d), data)
        reward, success = self.reward(model, data, goal)
        info = {**state.info, "success": success}
        return state.replace(data=data, obs=self.observe(data, goal),
                             reward=reward.astype(jnp.float32),
                             done=success.astype(jnp.float32), info=info)


def _base_spec(backend: PandaCube) -> mujoco.MjSpec:
    return mujoco.MjSpec.from_file(ASSET)


class ManipulationTask(mt.MjxTask):
    """LiftCube / PickCube with one spec family as the context (``float32[1]``); the model
    table holds one compiled model per grid row. ``terminated`` is the task's success;
    ``truncated`` comes at ``episode_length`` (200)."""

    def __init__(self, name: str, specs=None):
        task, family = split_name(name)
        factor, _ = FAMILIES[family]
        backend = PandaCube(task)
        spec = mt.MjxTaskDef(name, lambda: backend, _base_spec, (factor,),
                           {factor.name: ("spec", EDITS[factor.name])},
                           obs_dim=backend.obs_dim, action_dim=7,
                           episode_length=EPISODE_LENGTH)
        rows = grid_values(family)[:, None] if specs is None else np.asarray(specs)
        super().__init__(spec, table_rows=np.asarray(rows, np.float32).reshape(-1, 1))
        self.task_kind, self.family = task, family

    def _step(self, key, p: mt.MjxPhysics, action, context):
        with self._with_model(self.table.at(p.model_id)) as be:
            state = be.step(p.state, jnp.clip(action, -1.0, 1.0))
        return (mt.MjxPhysics(mt._canonical(state), p.model_id),
                state.reward.astype(jnp.float32), state.info["success"])


def split_name(name: str) -> tuple[str, str]:
    """``"lift_cube_stiffness"`` → ``("lift_cube", "stiffness")``; ``ValueError`` otherwise."""
    for t in BASE_TASKS:
        if name.startswith(t + "_") and name[len(t) + 1:] in FAMILIES:
            return t, name[len(t) + 1:]
    raise ValueError(f"unknown manipulation task {name!r}; valid: {', '.join(task_names())}")


def grid_values(family: str) -> np.ndarray:
    """The family's spec values, ``float64[N]`` (``eval_maniskill.sh``'s ``seq``)."""
    lo, hi, step = FAMILIES[family][1]
    n = int(round((hi - lo) / step)) + 1
    return np.round(lo + step * np.arange(n), 6)


def make_manipulation_task(name: str, specs=None) -> ManipulationTask:
    """``{lift_cube,pick_cube}_{cube,stiffness,damping,length}`` with a model per spec of the
    family's grid (or of ``specs`` ``float[N]``). Raises ``ValueError`` for an unknown name."""
    return ManipulationTask(name, specs)
