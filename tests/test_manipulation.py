"""HyPoGen's manipulation tasks on MJX (hyperjax.envs.manipulation): the spec edits, the released
grids and split, observations and rewards, and the physics against C MuJoCo on a scripted
grasp-and-lift."""
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
import pytest

from hyperjax.envs import manipulation as M, manipulation_scripted as MS
from hyperjax.hypogen import data as D, specs as S

# The released test partitions (ReNginx/HyPoGen @b286e2f, maniskill/eval-partition/*.txt).
RELEASED_TEST = {
    "cube": [0.016, 0.030, 0.028, 0.024, 0.018, 0.022, 0.010, 0.012],
    "stiffness": [500, 900, 1400, 600, 800, 1500, 1100, 1200],
    "damping": [80, 50, 150, 90, 110, 140, 120, 60],
    "length": [0.6, 1.9, 0.5, 1.0, 1.6, 2.0, 1.8, 0.7, 1.3, 1.2, 0.9, 1.5],
}


@pytest.mark.parametrize("family", sorted(RELEASED_TEST))
def test_grid_and_split_are_the_released_ones(family):
    grid = S.make_grid(f"lift_cube_{family}")
    assert len(grid) == (16 if family == "length" else 11)
    split = S.split_specs(grid, 123, "maniskill")
    np.testing.assert_allclose(sorted(grid.specs[split.test, 0]), sorted(RELEASED_TEST[family]))
    assert len(split.train) + len(split.test) == len(grid)
    # seed-independent, like RoboArmDataset
    np.testing.assert_array_equal(split.train, S.split_specs(grid, 7, "maniskill").train)


def test_spec_edits_change_exactly_their_model_fields():
    k = M.make_manipulation_task("lift_cube_stiffness", specs=[500.0, 1000.0])
    m = k.mj_model([500.0])
    arm = [m.actuator(n).id for n in M.ARM_JOINTS]
    np.testing.assert_array_equal(m.actuator_gainprm[arm, 0], 500.0)
    np.testing.assert_array_equal(m.actuator_biasprm[arm, 1], -500.0)
    np.testing.assert_array_equal(m.actuator_biasprm[arm, 2], 0.0)    # damping: the joints'
    np.testing.assert_array_equal(m.dof_damping[:7], 100.0)
    fingers = [m.actuator("finger1").id, m.actuator("finger2").id]
    # the fork drives the gripper with the same stiffness / damping (defaults.py)
    np.testing.assert_array_equal(m.actuator_gainprm[fingers, 0], 500.0)
    np.testing.assert_array_equal(m.actuator_biasprm[fingers, 1], -500.0)
    assert k.table.varying_fields == (".actuator_gainprm", ".actuator_biasprm")
    pads = [m.geom("left_pad").id, m.geom("right_pad").id]
    np.testing.assert_array_equal(m.geom_friction[pads, 0], 2.0)   # the "gripper" material

    d = M.make_manipulation_task("lift_cube_damping", specs=[50.0]).mj_model([50.0])
    np.testing.assert_array_equal(d.dof_damping, [50.0] * 9 + [0.0] * 6)
    np.testing.assert_array_equal(d.actuator_gainprm[arm, 0], 1000.0)

    c = M.make_manipulation_task("pick_cube_cube", specs=[0.01]).mj_model([0.01])
    np.testing.assert_allclose(c.geom_size[c.geom("cube").id], [0.01] * 3)
    np.testing.assert_allclose(c.body_mass[c.body("cube").id], 1000.0 * 0.02 ** 3)

    for f in (0.5, 2.0):
        lm = M.make_manipulation_task("lift_cube_length", specs=[f]).mj_model([f])
        np.testing.assert_allclose(lm.body_pos[lm.body("link6").id], [0, 0, 0.259 * (f - 1)],
                                   atol=1e-12)
    # the longer forearm moves the TCP at the rest pose
    tcp = {}
    for f in (1.0, 2.0):
        lm = M.make_manipulation_task("lift_cube_length", specs=[f]).mj_model([f])
        dd = mujoco.MjData(lm)
        dd.qpos[:9] = M.REST_QPOS
        mujoco.mj_forward(lm, dd)
        tcp[f] = dd.site_xpos[lm.site("tcp").id].copy()
    assert np.linalg.norm(tcp[2.0] - tcp[1.0]) > 0.2


def test_ee_frame_delta_on_a_rotated_tcp():
    """pd_ee_delta_pose (frame="ee"): the move and the rotation are in the TCP's frame, the
    rotation clipped by its norm. At the rest pose the TCP points down (its z = world −z, its
    frame yawed by joint 7), so +z in the action lowers the TCP; world-aligned axes would raise
    it."""
    env = M.make_manipulation_task("lift_cube_stiffness", specs=[1000.0])
    be = env.backend
    m = env.mj_model([1000.0])
    d = mujoco.MjData(m)
    d.qpos[:9] = M.REST_QPOS
    d.qpos[6] += 0.6                                        # yaw the hand
    mujoco.mj_forward(m, d)
    r = d.site_xmat[m.site("tcp").id].reshape(3, 3)
    assert r[2, 2] < -0.99 and abs(r[0, 0]) < 0.9           # pointing down, yawed
    a = np.zeros(7)
    a[2] = 1.0
    np.testing.assert_allclose(M.ee_delta(a, r, xp=np)[:3], 0.1 * r[:, 2])
    a = np.array([0.3, -0.2, 0.5, 1.0, 1.0, 0.0, 0.0])
    err = M.ee_delta(a, r, xp=np)
    np.testing.assert_allclose(err[:3], r @ (0.1 * a[:3]))
    np.testing.assert_allclose(err[3:], r @ (0.1 * np.array([1.0, 1.0, 0.0]) / np.sqrt(2)))
    np.testing.assert_allclose(np.linalg.norm(err[3:]), 0.1)     # by norm, not per axis
    # small rotations pass unclipped
    np.testing.assert_allclose(M.ee_delta(np.r_[0, 0, 0, 0.3, 0.4, 0, 0], r, xp=np)[3:],
                               r @ np.array([0.03, 0.04, 0.0]))

    # the MJX controller: one IK step on "+z in the TCP frame" moves the TCP down, from a
    # reset state (the scripted run's: its program is compiled once for this module)
    data = _scripted_run("lift_cube_stiffness", 1000.0).state0.physics.state.data
    act = jnp.zeros(7).at[2].set(1.0).at[6].set(1.0)
    q = np.asarray(jax.jit(lambda dd: be.arm_targets(be.mjx_model, dd, act))(data))
    d.qpos[:] = np.asarray(data.qpos)
    mujoco.mj_forward(m, d)
    before = d.site_xpos[m.site("tcp").id].copy()
    d.qpos[:7] = q[:7]
    mujoco.mj_forward(m, d)
    moved = d.site_xpos[m.site("tcp").id] - before
    assert moved[2] < -0.08, moved                      # down by ~0.1 m, not up


def test_unknown_task_is_refused():
    with pytest.raises(ValueError, match="unknown manipulation task 'lift_cube_mass'"):
        M.make_manipulation_task("lift_cube_mass")


# --- C MuJoCo reference: the same controller in NumPy on the same compiled model ----------

def _c_targets(m, d, action):
    a = np.clip(action, -1.0, 1.0)
    err = M.ee_delta(a, d.site_xmat[m.site("tcp").id].reshape(3, 3), xp=np)
    jacp, jacr = np.zeros((3, m.nv)), np.zeros((3, m.nv))
    mujoco.mj_jacSite(m, d, jacp, jacr, m.site("tcp").id)
    jac = np.vstack([jacp, jacr])[:, :7]
    dq = jac.T @ np.linalg.solve(jac @ jac.T + M.IK_DAMPING ** 2 * np.eye(6), err)
    q = np.clip(d.qpos[:7] + dq, m.jnt_range[:7, 0], m.jnt_range[:7, 1])
    g = M.GRIPPER_LOW + (a[6] + 1.0) * 0.5 * (M.GRIPPER_HIGH - M.GRIPPER_LOW)
    return np.concatenate([q, [g, g]])


def _c_episode(m, qpos0, task, goal, steps):
    d = mujoco.MjData(m)
    d.qpos[:] = qpos0
    d.ctrl[:] = qpos0[:9]
    mujoco.mj_forward(m, d)
    cube_id = m.body("cube").id
    qs, cubes = [], []
    for t in range(steps):
        tcp = d.site_xpos[m.site("tcp").id].copy()
        yaw = MS.yaw_error(d.site_xmat[m.site("tcp").id].reshape(3, 3),
                          d.xmat[cube_id].reshape(3, 3), xp=np)
        g = MS.scripted_goal(task, tcp, goal, xp=np)
        a = MS.scripted_action(tcp, d.site_xmat[m.site("tcp").id].reshape(3, 3),
                              d.xpos[cube_id].copy(), g, yaw, t, xp=np)
        d.ctrl[:] = _c_targets(m, d, a)
        for _ in range(M.SUBSTEPS):
            mujoco.mj_step(m, d)
        qs.append(d.qpos[:9].copy())
        cubes.append(d.xpos[cube_id].copy())
    return np.array(qs), np.array(cubes)


class ScriptedRun(NamedTuple):
    env: object
    state0: object        # the reset state (jax arrays)
    obs0: np.ndarray      # its observation
    q: np.ndarray         # [T, 9] joint positions after each step
    cube: np.ndarray      # [T, 3] cube position
    term: np.ndarray      # [T] success
    reward: np.ndarray    # [T]


@functools.lru_cache(maxsize=None)
def _scripted_run(name: str, spec: float) -> ScriptedRun:
    """The scripted grasp-and-lift in MJX from ``key(3)``: one compiled program per task for
    the whole module (tracing and compiling the Panda scene costs 20-40 s on a 2-core CPU)."""
    env = M.make_manipulation_task(name, specs=[spec])
    be = env.backend
    ctx = jnp.array([spec], jnp.float32)
    steps = 80 if name.startswith("lift") else 100

    def episode(key):
        state, ts0 = env.reset(key, ctx)

        def f(state, t):
            data = state.physics.state.data
            tcp, cube = data.site_xpos[be._tcp], data.xpos[be._cube_body]
            goal = MS.scripted_goal(be.task, tcp, state.physics.state.info["goal"])
            yaw = MS.yaw_error(data.site_xmat[be._tcp].reshape(3, 3),
                              data.xmat[be._cube_body].reshape(3, 3))
            tcp_mat = data.site_xmat[be._tcp].reshape(3, 3)
            action = MS.scripted_action(tcp, tcp_mat, cube, goal, yaw, t)
            state, ts = env.step(key, state, action, ctx)
            d = state.physics.state.data
            return state, (d.qpos[:9], d.xpos[be._cube_body], ts.terminated, ts.reward)

        state0 = state
        _, out = jax.lax.scan(f, state, jnp.arange(steps))
        return state0, ts0.obs, out

    state0, obs0, out = jax.jit(episode)(jax.random.key(3))
    return ScriptedRun(env, state0, np.asarray(obs0), *map(np.asarray, out))


@pytest.mark.parametrize("name,spec", [("lift_cube_stiffness", 1000.0),
                                       pytest.param("pick_cube_damping", 100.0,
                                                    marks=pytest.mark.slow)])
def test_scripted_grasp_matches_c_mujoco(name, spec):
    """The scripted grasp-and-lift in MJX (float32) against C MuJoCo (float64) from the same
    start: the arm's joints agree to 2e-3 rad before contact, the cube ends within 2 cm and
    both succeed."""
    env, state0, _, q, cube, term, reward = _scripted_run(name, spec)
    be = env.backend
    steps = len(q)
    qpos0 = np.asarray(state0.physics.state.data.qpos, np.float64)
    goal = np.asarray(state0.physics.state.info["goal"], np.float64)
    cq, ccube = _c_episode(env.mj_model([spec]), qpos0, be.task, goal, steps)
    close = MS.SCRIPT_PHASES[1] - 5        # before the fingers reach the cube
    np.testing.assert_allclose(q[:close, :7], cq[:close, :7], atol=2e-3)
    assert term.any(), "MJX: the scripted grasp did not succeed"
    first = int(term.argmax())
    if be.task == "lift_cube":
        h = 0.02
        c_ok = ccube[:, 2] >= M.GOAL_HEIGHT + h
        assert cube[first, 2] >= M.GOAL_HEIGHT + h
    else:
        c_ok = np.linalg.norm(ccube - goal, axis=-1) <= M.GOAL_THRESH
    assert c_ok.any(), "C MuJoCo: the scripted grasp did not succeed"
    assert abs(int(c_ok.argmax()) - first) <= 3
    np.testing.assert_allclose(cube[first], ccube[first], atol=0.02)
    # the grasp shows in the reward: fingers open on the way down (reach only, <= 1), the
    # grasp bonus once closed on the cube (>= reach + 0.25 / + 1)
    assert reward[MS.SCRIPT_PHASES[1] - 2] <= 1.0
    bonus = 0.25 if be.task == "lift_cube" else 1.0
    assert reward[MS.SCRIPT_PHASES[2] + 2] >= 0.5 + bonus


@pytest.mark.slow
def test_scripted_policy_succeeds_on_every_stiffness():
    """`slow` (one more MJX compile, ~40 s cold): the whole sweep over all 98 specs is
    results/cpu_manipulation/scripted_sweep.py."""
    env = M.make_manipulation_task("lift_cube_stiffness")
    specs = env.table.contexts
    ok, step, _ = jax.jit(lambda k: MS.scripted_episodes(env, specs, k, 2))(jax.random.key(0))
    assert np.asarray(ok).all(), np.asarray(ok)
    # stiffer drives track the IK targets faster: the lift ends sooner
    step = np.asarray(step).mean(-1)
    assert step[0] > step[-1]


def test_reset_observation_layout():
    """LiftCube's 42 and PickCube's 51 observation entries (LiftCube's from the scripted run's
    reset: one compiled Panda program less; its cube has the default half-size 0.02)."""
    for name, dim in (("lift_cube_stiffness", 42), ("pick_cube_cube", 51)):
        if dim == 42:
            env, obs = _scripted_run(name, 1000.0).env, _scripted_run(name, 1000.0).obs0
        else:
            env = M.make_manipulation_task(name, specs=[0.02])
            _, ts = jax.jit(env.reset)(jax.random.key(0), jnp.array([0.02]))
            obs = np.asarray(ts.obs)
        assert obs.shape == (dim,) == (env.obs_dim,)
        np.testing.assert_allclose(obs[:7], M.REST_QPOS[:7], atol=0.1)     # N(0, 0.02) noise
        np.testing.assert_array_equal(obs[18:25], np.float32(M.BASE_POSE))
        np.testing.assert_allclose(np.linalg.norm(obs[28:32]), 1.0, atol=1e-5)
        cube = obs[32:35] if dim == 42 else obs[38:41]
        assert abs(cube[2] - 0.02) < 1e-4 and np.all(np.abs(cube[:2]) <= 0.1)
        if dim == 51:
            goal = obs[32:35]
            assert np.linalg.norm(goal - cube) > M.MIN_GOAL_DIST
            np.testing.assert_allclose(obs[48:51], goal - cube, atol=1e-6)


def test_episode_outcomes():
    disc = np.ones((2, 3, 5), np.float32)
    disc[0, 1, 2] = 0.0
    disc[1, 2, 0] = 0.0
    disc[1, 2, 4] = 0.0
    ok, length = D.episode_outcomes(disc)
    np.testing.assert_array_equal(ok, [[False, True, False], [False, False, True]])
    np.testing.assert_array_equal(length, [[5, 3, 5], [5, 5, 1]])


class _Timestep(NamedTuple):
    obs: jax.Array
    reward: jax.Array
    terminated: jax.Array


class _AlwaysLifted:
    """A stand-in for a ``ManipulationTask`` whose cube is always lifted: every step succeeds
    (``terminated``) and pays LiftCube's success reward, 2.25. It has what ``SpecEnv`` reads
    (``factors``, ``obs_dim``, ``action_dim``, ``reset``, ``step``) and compiles in a second."""
    factors = ("stiffness",)
    obs_dim, action_dim = 3, 7

    def reset(self, rng, spec):
        return jnp.zeros(()), _Timestep(jnp.zeros(3), jnp.zeros(()), jnp.bool_(False))

    def step(self, key, state, action, spec):
        return state + 1, _Timestep(jnp.full(3, state + 1), jnp.float32(2.25), jnp.bool_(True))


def _ppo_wrapper_episode(spec_env):
    """Three steps of zero actions through Playground's brax training wrapper (episode cap 3,
    full reset): ``done``, ``reward``, ``metrics["success"]``, ``info["ever_success"]``."""
    from mujoco_playground._src import wrapper
    brax_env = wrapper.wrap_for_brax_training(spec_env, episode_length=3, full_reset=True)

    def run(keys):
        def f(b, _):
            b = brax_env.step(b, jnp.zeros((1, 7)))
            return b, (b.done[0], b.reward[0], b.metrics["success"][0],
                       b.info["ever_success"][0])
        return jax.lax.scan(f, brax_env.reset(keys), None, length=3)[1]

    return map(np.asarray, jax.jit(run)(jax.random.split(jax.random.PRNGKey(0), 1)))  # raw keys


def test_ppo_spec_env_has_no_done_before_the_cap():
    """``SpecEnv`` under brax's training wrapper, on a stand-in task that succeeds every step:
    success does not end a training episode, only the cap does (the released
    ContinuousTaskWrapper, maniskill/ppo.py), and the success metric counts the first
    successful step once. ``test_ppo_training_env_has_no_done_before_the_cap`` (slow) runs
    the same on the MJX LiftCube with the cube held up."""
    from hyperjax.hypogen.ppo_experts import SpecEnv
    done, reward, success, ever = _ppo_wrapper_episode(SpecEnv(_AlwaysLifted(), [1000.0]))
    np.testing.assert_array_equal(done, [0.0, 0.0, 1.0])     # success, yet done only at the cap
    np.testing.assert_allclose(reward, 2.25)
    np.testing.assert_array_equal(success, [1.0, 0.0, 0.0])  # the first success, once
    np.testing.assert_array_equal(ever[:2], [1.0, 1.0])


@pytest.mark.slow  # compiles the Panda scene under brax's wrappers (~50 s); twin above
def test_ppo_training_env_has_no_done_before_the_cap():
    """The released ContinuousTaskWrapper (maniskill/ppo.py): success does not end a training
    episode; only the 100-step cap does (brax's EpisodeWrapper, here at 3 steps). The success
    metric counts the first successful step once."""
    from hyperjax.hypogen.ppo_experts import SpecEnv
    env = M.make_manipulation_task("lift_cube_stiffness", specs=[1000.0])
    be = env.backend

    class Lifted(SpecEnv):   # the cube held 0.3 m above the table: LiftCube's success
        def step(self, state, action):
            p = state.data.physics
            data = p.state.data
            inner = p.state.replace(data=data.replace(
                qpos=data.qpos.at[be._cube_qpos + 2].set(0.3)))
            state = state.replace(data=state.data._replace(physics=p._replace(state=inner)))
            return super().step(state, action)

    done, reward, success, ever = _ppo_wrapper_episode(Lifted(env, [1000.0]))
    np.testing.assert_array_equal(done, [0.0, 0.0, 1.0])     # success, yet done only at the cap
    np.testing.assert_allclose(reward, 2.25)                 # the success reward every step
    np.testing.assert_array_equal(success, [1.0, 0.0, 0.0])  # the first success, once
    np.testing.assert_array_equal(ever[:2], [1.0, 1.0])


def test_demonstrations_are_cut_at_success():
    """ppo_rollout.py records episodes that end at success (SuccessInfoWrapper): the pooled
    transitions stop at each episode's first success (kept); tasks that never terminate keep
    every step."""
    s, e, t = 2, 3, 5
    disc = np.ones((s, e, t), np.float32)
    disc[0, 0, 2:] = 0.0          # succeeds at step 2 and stays up
    disc[1, 2, 4] = 0.0           # succeeds on the last step
    obs = np.arange(s * e * t, dtype=np.float32).reshape(s, e, t, 1)
    z = np.zeros((s, e, t), np.float32)
    ds = D.Dataset(spec=np.array([[1.0], [2.0]], np.float32), obs=obs, action=obs,
                   next_obs=obs, reward=z, discount=disc, value=z, meta={})
    flat = D.flatten(ds, [0, 1])
    assert list(np.bincount(flat.task_id)) == [3 + 5 + 5, 5 + 5 + 5]
    np.testing.assert_array_equal(flat.obs[:3, 0], [0, 1, 2])       # steps 3, 4 dropped
    np.testing.assert_array_equal(flat.discount[:3], [1, 1, 0])     # the success step kept
    assert D.flatten(ds, [0, 1], cut_at_termination=False).obs.shape[0] == s * e * t


def test_ppo_params_npz_round_trip_and_mismatch(tmp_path):
    """An expert's parameters saved mid-run (ppo_expert.py, --ppo_init) load back exactly into
    the same network and are refused, naming the file, for another network size."""
    from hyperjax.hypogen import ppo_experts as P
    env = M.make_manipulation_task("lift_cube_stiffness", specs=[1000.0])
    small = P.PPOConfig.cpu_smoke()
    params = P.init_params(env, small, jax.random.key(0))
    path = str(tmp_path / "params.npz")
    P.save_params_npz(path, 7, params)
    back = P.load_params_npz(path, params)
    for a, b in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(back)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    other = jax.eval_shape(lambda k: P.init_params(env, P.PPOConfig.cpu_expert(), k),
                           jax.random.key(0))
    with pytest.raises(ValueError, match="params.npz do not match"):
        P.load_params_npz(path, other)
    with pytest.raises(ValueError, match="do not load"):
        P.load_params_npz(str(tmp_path / "none.npz"), params)
