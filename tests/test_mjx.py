"""AIB physics tasks on MJX against C MuJoCo, dm_control and gymnasium (issue 3).

Dynamics: along a 100-step MJX rollout under fixed random actions, every step is replayed in C
MuJoCo from the MJX state (same compiled model, float64) and the next state compared
(``STEP_ATOL``); the open-loop C rollout is also compared for the smooth tasks. Rewards: the
reference reward functions (dm_control's suite tasks, gymnasium's v5 classes) evaluated on the
same states.
"""
import dataclasses
import functools
import os
import warnings

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
import pytest

import hyperjax
from hyperjax.envs import mjx_tasks

os.environ.setdefault("MUJOCO_GL", "disable")
warnings.filterwarnings("ignore", message=".*DISPLAY.*")

STEPS = 100            # the per-step replays use the rollout's first STEPS steps
ROLLOUT_STEPS = 1000   # one episode: the open-loop check runs all of it
# MJX runs float32; C MuJoCo float64. One env step from the same state agrees to this (rad, m,
# rad/s, m/s); rewards to REWARD_ATOL.
STEP_ATOL = 2e-3
REWARD_ATOL = 2e-3
DMC = ("cartpole", "ball_in_cup", "walker", "cheetah", "reacher_easy", "reacher_hard",
       "reacher_perm")
GYM = ("walker_gym", "hopper_gym")
# Tracing an MJX task costs 5-20 s and compiling it 5-25 s on the 2-core CI machine, so the
# default run checks one task per model family and marks the others slow (``make test-all``).
# Gym Hopper shares Walker2d-v5's model family and its check is slow since 2026-12-04 (test time).
# Compiling a task's MJX rollout costs 15-40 s on the 2-core CPU: by default Cartpole,
# BallInCup and Reacher-Perm (contacts, one-joint and two-joint arms) carry the shared code
# (ModelTable, MjxTask, the solver settings); the others run in `make test-all`.
SLOW_TASKS = ("walker", "cheetah", "reacher_easy", "reacher_hard", "walker_gym", "hopper_gym")


def _tasks(names):
    return [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_TASKS else n for n in names]


@functools.lru_cache(maxsize=None)
def _env(name):
    """The task, with models also for the default context with either sign / permutation."""
    factors = hyperjax.envs.varied_factors(name)
    extra = []
    for j, f in enumerate(factors):
        if f.values is not None:
            for v in f.values:
                row = [g.default for g in factors]
                row[j] = v
                extra.append(row)
    return hyperjax.make_env(name, contexts=np.array(extra) if extra else None)


def _contexts(name):
    sets = hyperjax.context_sets(name)
    return np.stack([sets.train[0], sets.train[7], sets.eval_in[10], sets.eval_out[0],
                     sets.eval_out[-1]])


@functools.lru_cache(maxsize=None)
def _rollout_fn(name):
    """One compiled function per task (MJX tracing costs 5-20 s on this CPU):
    ``(key, ctxs [5, F], actions [ROLLOUT_STEPS, 5, A]) -> (obs0, (before-states, obs, reward),
    ids)``.
    """
    env = _env(name)

    @jax.jit
    def run(key, ctxs, actions):
        n = ctxs.shape[0]
        state, ts = jax.vmap(env.reset)(jax.random.split(key, n), ctxs)

        def body(state, a):
            d = state.physics.state.data
            before = (d.qpos, d.qvel, d.mocap_pos, d.time, d.qacc_warmstart)
            state, ts = jax.vmap(env.step)(jax.random.split(key, n), state, a, ctxs)
            return state, (before, ts.obs, ts.reward)

        ids = state.physics.model_id
        _, out = jax.lax.scan(body, state, actions)
        return ts.obs, out, ids

    return run


def _run(name, ctxs, actions):
    out = _rollout_fn(name)(jax.random.key(0), jnp.asarray(ctxs, jnp.float32),
                                       jnp.asarray(actions, jnp.float32))
    return jax.tree.map(np.asarray, out)


@functools.lru_cache(maxsize=None)
def _rollout(name):
    """MJX: reset 5 contexts, 100 random-action steps. Returns numpy arrays."""
    env = _env(name)
    ctxs = _contexts(name)
    actions = np.asarray(jax.random.uniform(jax.random.key(1), (ROLLOUT_STEPS, len(ctxs),
                                                                 env.action_dim), jnp.float32,
                                            -1.0, 1.0))
    obs0, (before, obs, reward), _ = _run(name, ctxs, actions)
    return ctxs, actions, obs0, before, obs, reward


def _c_model(env, ctx):
    """C MuJoCo float64 model of ``ctx`` on dm_control's / gymnasium's solver caps (MuJoCo's
    defaults), the reference; MJX runs ``mjx_tasks.MJX_SOLVER``'s."""
    return mjx_tasks.MjxSolver.reference(env.mj_model(ctx))


def _c_step(env, model, data, action, ctx):
    a = np.asarray(env.apply_action_factors(jnp.clip(jnp.asarray(action), -1, 1),
                                            jnp.asarray(ctx)))
    data.ctrl[:] = a
    n_sub = 4 if env.name in GYM else env.backend.n_substeps
    mujoco.mj_step(model, data, nstep=n_sub)
    return a


def _set(data, qpos, qvel, mocap, time, warmstart):
    """Full MJX state into C MuJoCo; the solver's warm start too (few-iteration solvers)."""
    data.qpos[:], data.qvel[:], data.qacc_warmstart[:] = qpos, qvel, warmstart
    if data.mocap_pos.size:
        data.mocap_pos[:] = mocap
    data.time = time


def _step_errors(name):
    """Per step: max |MJX - C MuJoCo| over qpos and qvel after one env step from MJX's state."""
    env = _env(name)
    ctxs, actions, _, (qpos, qvel, mocap, time, warm), obs, _ = _rollout(name)
    assert np.isfinite(obs).all() and obs.shape == (ROLLOUT_STEPS, len(ctxs), env.obs_dim)
    errs = np.zeros((len(ctxs), STEPS - 1))
    for i, c in enumerate(ctxs):
        model = _c_model(env, c)
        data = mujoco.MjData(model)
        for t in range(STEPS - 1):
            _set(data, qpos[t, i], qvel[t, i], mocap[t, i], time[t, i], warm[t, i])
            _c_step(env, model, data, actions[t, i], c)
            errs[i, t] = max(np.abs(data.qpos - qpos[t + 1, i]).max(),
                             np.abs(data.qvel - qvel[t + 1, i]).max())
    return ctxs, errs


@pytest.mark.parametrize("name", _tasks(("cartpole", "reacher_easy", "reacher_hard",
                                          "reacher_perm", "walker_gym", "hopper_gym")))
def test_mjx_matches_c_mujoco(name):
    """Every one of 5 contexts x 99 steps agrees within STEP_ATOL."""
    ctxs, errs = _step_errors(name)
    i, t = np.unravel_index(np.argmax(errs), errs.shape)
    assert errs.max() < STEP_ATOL, f"{name} context {ctxs[i]} step {t}: {errs.max():.2e}"


@pytest.mark.parametrize("name", [pytest.param("walker", marks=pytest.mark.slow),
                                  "ball_in_cup", pytest.param("cheetah", marks=pytest.mark.slow)])
def test_mjx_matches_c_mujoco_contact_tasks(name):
    """With dm_control's converged solver (100 iterations) MJX and C MuJoCo agree except at
    contact onsets whose float32 distance sits at zero (a discontinuity): at most 2 % of steps
    beyond STEP_ATOL, median error below 1e-4."""
    _, errs = _step_errors(name)
    assert np.median(errs) < 1e-4 and (errs > STEP_ATOL).mean() <= 0.02, (errs > STEP_ATOL).mean()


@pytest.mark.parametrize("name", _tasks(("cartpole", "reacher_perm", "ball_in_cup")))
def test_mjx_open_loop_rollout_matches_c_mujoco(name):
    """Without re-synchronising: 100 steps of the C rollout stay within 1e-2 of MJX."""
    env = _env(name)
    ctxs, actions, _, (qpos, qvel, mocap, time, warm), _, _ = _rollout(name)
    for i, c in enumerate(ctxs):
        model = _c_model(env, c)
        data = mujoco.MjData(model)
        _set(data, qpos[0, i], qvel[0, i], mocap[0, i], time[0, i], warm[0, i])
        for t in range(STEPS - 1):
            _c_step(env, model, data, actions[t, i], c)
        err = np.abs(data.qpos - qpos[STEPS - 1, i]).max()
        assert err < 1e-2, f"{name} context {c}: open-loop drift {err:.2e} after 100 steps"


def _open_loop_errors(name):
    """``float64[5, ROLLOUT_STEPS - 1]``: max |qpos_MJX - qpos_C| after each step of the C
    rollout (float64, dm_control's caps) run open loop from MJX's reset state."""
    env = _env(name)
    ctxs, actions, _, (qpos, qvel, mocap, time, warm), _, _ = _rollout(name)
    errs = np.zeros((len(ctxs), ROLLOUT_STEPS - 1))
    for i, c in enumerate(ctxs):
        model = _c_model(env, c)
        data = mujoco.MjData(model)
        _set(data, qpos[0, i], qvel[0, i], mocap[0, i], time[0, i], warm[0, i])
        for t in range(ROLLOUT_STEPS - 1):
            _c_step(env, model, data, actions[t, i], c)
            errs[i, t] = np.abs(data.qpos - qpos[t + 1, i]).max()
    return errs


# An episode open loop against C MuJoCo float64: (median over the 5 contexts, max) of the
# largest error along the episode. Measured on this file's rollout with MuJoCo's default caps
# (DM_CONTROL_SOLVER, the runs before 2026-12-06) and with MJX_SOLVER: the same to the digit
# (results/cpu_mjx_physics/open_loop_test_rollout.txt), bounded here at about twice that.
OPEN_LOOP_BOUNDS = {"ball_in_cup": (3e-6, 0.09), "cheetah": (5e-5, 0.67)}


@pytest.mark.parametrize("name", ["ball_in_cup", pytest.param("cheetah", marks=pytest.mark.slow)])
def test_mjx_open_loop_episode_stays_as_close_to_c_mujoco_as_before(name):
    """1,000 steps open loop: MJX on MJX_SOLVER's caps stays as close to C MuJoCo float64 on
    dm_control's as MJX on dm_control's own caps did (``OPEN_LOOP_BOUNDS``). Walker is
    chaotic under random actions (C against C from a 1e-6 nudge separates by 1e-2 within
    about 100 steps), so its episode is compared in results/cpu_mjx_physics/, not here."""
    errs = _open_loop_errors(name).max(-1)
    median_bound, max_bound = OPEN_LOOP_BOUNDS[name]
    assert np.median(errs) < median_bound and errs.max() < max_bound, errs


def _dmc_reference(name):
    from dm_control.suite import ball_in_cup, cartpole, cheetah, reacher, walker
    return {
        "cartpole": (cartpole.Physics, cartpole.Balance(swing_up=False, sparse=False)),
        "ball_in_cup": (ball_in_cup.Physics, ball_in_cup.BallInCup()),
        "walker": (walker.Physics, walker.PlanarWalker(move_speed=walker._WALK_SPEED)),
        "cheetah": (cheetah.Physics, cheetah.Cheetah()),
        "reacher_easy": (reacher.Physics, reacher.Reacher(target_size=reacher._BIG_TARGET)),
        "reacher_hard": (reacher.Physics, reacher.Reacher(target_size=reacher._SMALL_TARGET)),
        "reacher_perm": (reacher.Physics, reacher.Reacher(target_size=reacher._SMALL_TARGET)),
    }[name]


@pytest.mark.parametrize("name", _tasks(DMC))
def test_reward_equals_dm_control(name, tmp_path):
    """dm_control's own ``get_reward`` on the state MJX computed its reward from.

    The env step is replayed in dm_control's physics from MJX's state with ``mj_step`` (no
    extra ``forward``): like MJX (and Playground), the kinematics the reward reads are those
    of the last substep's start. dm_control's legacy step refreshes them; that lag of one
    substep is the one difference, stated in ``mjx_tasks``'s module doc.
    """
    env = _env(name)
    ctxs, actions, _, (qpos, qvel, mocap, time, warm), _, reward = _rollout(name)
    physics_cls, task = _dmc_reference(name)
    for i, c in enumerate(ctxs[:3]):
        path = str(tmp_path / f"{name}-{i}.mjb")
        mujoco.mj_saveModel(_c_model(env, c), path, None)
        physics = physics_cls.from_binary_path(path)
        for t in range(0, STEPS - 1, 3):
            _set(physics.data, qpos[t, i], qvel[t, i], mocap[t, i], time[t, i], warm[t, i])
            _c_step(env, physics.model.ptr, physics.data.ptr, actions[t, i], c)
            ref = float(task.get_reward(physics))
            assert abs(ref - reward[t, i]) < REWARD_ATOL, (name, c, t, ref, reward[t, i])


@pytest.mark.parametrize("name", _tasks(GYM))
def test_step_and_reward_equal_gymnasium(name):
    import gymnasium
    env = _env(name)
    ctxs, actions, _, (qpos, qvel, _, _, _), obs, reward = _rollout(name)
    gym_id = {"walker_gym": "Walker2d-v5", "hopper_gym": "Hopper-v5"}[name]
    for i, c in enumerate(ctxs[:3]):
        ref = gymnasium.make(gym_id, terminate_when_unhealthy=False).unwrapped
        ref.reset(seed=0)
        g, s = float(c[0]), float(c[1])
        ref.model.opt.gravity[:] = (0, 0, -g)
        ref.model.actuator_gear[:, 0] *= s
        for t in range(0, STEPS - 1, 7):
            ref.set_state(qpos[t, i].astype(np.float64), qvel[t, i].astype(np.float64))
            o, r, term, trunc, _ = ref.step(actions[t, i].astype(np.float64))
            assert not term and not trunc
            np.testing.assert_allclose(o, obs[t, i], atol=5e-3, err_msg=f"{name} {c} t={t}")
            assert abs(r - reward[t, i]) < 5e-2, (name, c, t, r, reward[t, i])


def test_default_context_model_is_the_backends_model():
    """The context edits are no-ops at the default: the table row equals the backend's model
    (Playground's XML with dm_control's physics options)."""
    for name in ("cheetah", "cartpole", "ball_in_cup", "reacher_hard"):
        env = _env(name)
        ours = jax.tree_util.tree_leaves(env._mjx_model(env.default_context))
        theirs = jax.tree_util.tree_leaves(env.backend.mjx_model)
        assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(ours, theirs))


_DMC_LOAD = {"cartpole": ("cartpole", "balance"), "ball_in_cup": ("ball_in_cup", "catch"),
             "walker": ("walker", "walk"), "cheetah": ("cheetah", "run"),
             "reacher_easy": ("reacher", "easy"), "reacher_hard": ("reacher", "hard"),
             "reacher_perm": ("reacher", "hard")}
_OPTIONS = ("timestep", "integrator", "iterations", "ls_iterations", "tolerance",
            "ls_tolerance", "solver", "cone", "jacobian", "impratio", "disableflags")
_ARRAYS = ("body_mass", "body_inertia", "body_pos", "dof_damping", "dof_armature",
           "jnt_range", "jnt_stiffness", "actuator_gear", "actuator_ctrlrange", "geom_size",
           "geom_friction", "tendon_range")


@pytest.mark.parametrize("name", DMC)
def test_physics_is_dm_controls(name):
    """The default-context model equals the one dm_control's suite loads (the authors' tasks):
    every solver and integrator option but MJX's solver caps (``MJX_SOLVER``, checked
    apart), the control timestep (substeps), and the masses,
    inertias, damping, gears and geometry, matched by name. Not matched: dm_control's
    ``energy`` flag (Cartpole; it only computes energies) and Reacher's decorative root cylinder
    and target geom, which Playground leaves out or turns into a mocap body (contacts are off
    in Reacher)."""
    from dm_control import suite
    task = suite.load(*_DMC_LOAD[name])
    dmc = task.physics
    env = _env(name)
    ours = env.mj_model(env.default_context)
    caps = mjx_tasks.MJX_SOLVER
    assert env.task.solver == caps
    assert (ours.opt.iterations, ours.opt.ls_iterations) == (caps.iterations, caps.ls_iterations)
    assert np.float32(ours.opt.tolerance) == np.float32(caps.tolerance)
    mjx_tasks.MjxSolver.reference(ours)  # the one deviation: MJX's caps (MjxSolver's doc)
    for f in _OPTIONS:
        assert getattr(ours.opt, f) == getattr(dmc.model.opt, f), (name, f)
    assert env.backend.n_substeps == round(task.control_timestep() / dmc.model.opt.timestep)
    for f in _ARRAYS:
        kind = f.split("_")[0]
        if kind == "dof":  # dofs by their joint's name
            names = [ours.joint(ours.dof_jntid[i]).name for i in range(ours.nv)]
            get = lambda m, n, f=f: getattr(m, f)[m.jnt_dofadr[m.joint(n).id]]
        else:
            size = {"body": ours.nbody, "jnt": ours.njnt, "actuator": ours.nu,
                    "geom": ours.ngeom, "tendon": ours.ntendon}[kind]
            names = [getattr(ours, "joint" if kind == "jnt" else kind)(i).name
                     for i in range(size)]
            names = [n for n in names if n and n not in ("target", "world")]
            get = lambda m, n, f=f, k=kind: getattr(m, f)[getattr(
                m, "joint" if k == "jnt" else k)(n).id]
        for n in names:
            np.testing.assert_allclose(get(ours, n), get(dmc.model.ptr, n), rtol=1e-6,
                                       atol=1e-9, err_msg=f"{name} {f} {n}")


def _one_step_delta(name, c, action):
    """Change of qvel over the first step from a reset state: ``float32[nv]``.

    Runs the task's shared compiled rollout with all 5 rows in context ``c`` and ``action``.
    """
    ctxs = np.repeat(np.asarray(c, np.float32)[None], 5, 0)
    actions = np.broadcast_to(np.asarray(action, np.float32), (ROLLOUT_STEPS, 5, len(action)))
    _, ((_, qvel, _, _, _), _, _), _ = _run(name, ctxs, actions)
    return qvel[1, 0] - qvel[0, 0]


@pytest.mark.parametrize("name,factor", [
    ("cartpole", "length"), ("ball_in_cup", "gravity"), ("ball_in_cup", "distance"),
    ("walker", "gravity"), ("walker", "actuator_strength"), ("cheetah", "length"),
    ("reacher_easy", "length"), ("walker_gym", "gravity"), ("hopper_gym", "actuator_strength"),
])
def test_every_factor_changes_the_model(name, factor):
    env = _env(name)
    j = env.factors.index(factor)
    lo, hi = np.array(env.default_context), np.array(env.default_context)
    lo[j], hi[j] = env.varied[j].in_range
    m_lo, m_hi = env.mj_model(lo), env.mj_model(hi)
    fields = ("opt.gravity", "actuator_gear", "body_mass", "body_inertia", "geom_size",
              "body_pos", "tendon_range")

    def get(m, path):
        for part in path.split("."):
            m = getattr(m, part)
        return np.asarray(m)

    differ = [f for f in fields if not np.allclose(get(m_lo, f), get(m_hi, f))]
    assert differ, f"{name}: factor {factor} changes no model field"


@pytest.mark.parametrize("name", _tasks(("cartpole", "cheetah", "reacher_easy")))
def test_action_factor_reverses_the_actuators(name):
    env = _env(name)
    c_pos = np.array(env.default_context)
    c_neg = c_pos.copy()
    c_neg[env.factors.index("action_factor")] = -1.0
    a = np.full(env.action_dim, 0.7, np.float32)
    np.testing.assert_allclose(_one_step_delta(name, c_neg, a), _one_step_delta(name, c_pos, -a),
                               atol=1e-6)
    assert np.abs(_one_step_delta(name, c_neg, a) - _one_step_delta(name, c_pos, a)).max() > 1e-3


def test_permutation_swaps_the_action_dimensions():
    env = _env("reacher_perm")
    c0 = np.array([1.0, 0.0], np.float32)  # the default length with both permutations
    c1 = np.array([1.0, 1.0], np.float32)
    a = np.array([0.9, -0.3], np.float32)
    np.testing.assert_allclose(_one_step_delta("reacher_perm", c1, a),
                               _one_step_delta("reacher_perm", c0, a[::-1]), atol=1e-6)
    di = hyperjax.make_env("di_perm")
    s, _ = di.reset(jax.random.key(0), jnp.array([1.0, 1.0]))
    s1, _ = di.step(jax.random.key(0), s, jnp.array([1.0, -1.0]), jnp.array([1.0, 1.0]))
    np.testing.assert_allclose(s1.physics.vel, [-0.1, 0.1], atol=1e-7)


def test_context_sets_follow_the_recipe():
    sets = hyperjax.context_sets("cartpole")
    np.testing.assert_allclose(sets.train[:3], [[0.3, -1], [0.3224, 1], [0.3561, -1]],
                               atol=1e-6)
    for name in DMC + GYM:
        s = hyperjax.context_sets(name)
        assert s.train.shape == s.eval_in.shape == s.eval_out.shape == (20, 2)
    perm = hyperjax.context_sets("reacher_perm")
    assert set(np.unique(perm.train[:, 1])) == {0.0, 1.0}


def test_context_without_a_compiled_model_is_refused():
    """One lookup (``ModelTable.lookup``) serves every MJX task; Cartpole's reset compiles in
    half Cheetah's time (12 s against 24 s on this CPU)."""
    env = _env("cartpole")
    new = _contexts("cartpole")[0] + np.array([0.0123, 0.0], np.float32)
    with pytest.raises(ValueError, match="no compiled model"):
        env.check_contexts(new[None])
    ctxs = _contexts("cartpole").copy()
    ctxs[2] = new
    # the reset alone: the rollout would step 1,000 NaN states at the solver's caps
    _, ts = jax.jit(jax.vmap(env.reset))(jax.random.split(jax.random.key(0), len(ctxs)),
                                         jnp.asarray(ctxs, jnp.float32))
    obs0 = np.asarray(ts.obs)
    assert np.isnan(obs0[2]).all() and np.isfinite(obs0[[0, 1, 3, 4]]).all()  # never a
    # neighbour's model in jit: NaN, which the training program's guard reports
    extended = hyperjax.make_env("cartpole", contexts=new[None])
    extended.check_contexts(new[None])


def test_each_env_runs_its_own_contexts_model():
    """Envs of one batch look up their own rows of the model table."""
    ctxs, actions, *_ = _rollout("cartpole")
    _, _, ids = _run("cartpole", ctxs, actions)
    env = _env("cartpole")
    assert len(set(ids.tolist())) == len(ctxs)
    np.testing.assert_allclose(env.table.contexts[ids], ctxs, atol=1e-6)
