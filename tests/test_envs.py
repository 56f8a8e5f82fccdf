"""Dynamics, rewards, context sets and wrappers of the jnp AIB tasks."""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hyperjax as hj
from hyperjax.envs import AutoReset, EpisodeStats, contexts, fill_context_window
from hyperjax.envs.wrappers import window_features
from hyperjax.envs.di import DIPhysics
from hyperjax.envs.core import EnvState


def _di_reference(pos, vel, action, mass, friction, af):
    """Notes §2 equations in float64 numpy."""
    dt = 0.1
    force = np.clip(np.asarray(action, np.float64) * af, -1, 1)
    pos = pos + vel * dt
    vel = vel * (1 - dt * friction / mass) + force / mass * dt
    pos, vel = np.clip(pos, -1, 1), np.clip(vel, -1, 1)
    return pos, vel, float(np.linalg.norm(pos) <= 0.1)


@pytest.mark.parametrize("name", ["di", "di_friction"])
def test_di_dynamics_match_equations(name):
    env = hj.make_env(name)
    rng = np.random.default_rng(0)
    step = jax.jit(env.step)
    for ctx in hj.context_sets(name).train[::4]:
        pos = rng.uniform(-1, 1, 2).astype(np.float32)
        vel = rng.uniform(-1, 1, 2).astype(np.float32)
        state = EnvState(DIPhysics(jnp.asarray(pos), jnp.asarray(vel)), jnp.int32(0))
        for _ in range(20):
            a = rng.uniform(-1, 1, 2).astype(np.float32)
            mass = float(ctx[0])
            friction = float(ctx[1]) if name == "di_friction" else 0.0
            af = float(ctx[1]) if name == "di" else 1.0
            ref_pos, ref_vel, ref_r = _di_reference(np.float64(state.physics.pos),
                                                    np.float64(state.physics.vel), a, mass,
                                                    friction, af)
            state, ts = step(jax.random.PRNGKey(0), state, jnp.asarray(a), jnp.asarray(ctx))
            np.testing.assert_allclose(state.physics.pos, ref_pos, atol=1e-6)
            np.testing.assert_allclose(state.physics.vel, ref_vel, atol=1e-6)
            assert float(ts.reward) == ref_r
            np.testing.assert_allclose(ts.obs, np.concatenate([ref_pos, ref_vel]), atol=1e-6)


def test_di_reward_is_sparse_goal_and_episode_truncates_at_100():
    env = hj.make_env("di")
    ctx = jnp.array([1.0, 1.0])
    inside = EnvState(DIPhysics(jnp.array([0.05, 0.0]), jnp.zeros(2)), jnp.int32(99))
    state, ts = env.step(jax.random.PRNGKey(0), inside, jnp.zeros(2), ctx)
    assert float(ts.reward) == 1.0 and bool(ts.truncated) and not bool(ts.terminated)
    outside = EnvState(DIPhysics(jnp.array([0.11, 0.0]), jnp.zeros(2)), jnp.int32(0))
    _, ts = env.step(jax.random.PRNGKey(0), outside, jnp.zeros(2), ctx)
    assert float(ts.reward) == 0.0 and not bool(ts.truncated)


def test_di_reset_starts_in_corners_at_rest():
    env = hj.make_env("di")
    keys = jax.random.split(jax.random.PRNGKey(1), 2000)
    _, ts = jax.vmap(env.reset, in_axes=(0, None))(keys, jnp.array([1.0, 1.0]))
    pos, vel = np.asarray(ts.obs[:, :2]), np.asarray(ts.obs[:, 2:])
    assert (np.abs(pos) > 0.8).all() and (np.abs(pos) <= 1.0).all()
    assert (vel == 0).all()
    # all four corners are used
    assert len({tuple(np.sign(p)) for p in pos}) == 4


def test_action_factor_reverses_the_action():
    env = hj.make_env("di")
    start = EnvState(DIPhysics(jnp.array([0.9, 0.9]), jnp.zeros(2)), jnp.int32(0))
    a = jnp.array([0.7, -0.3])
    for mass in (0.5, 1.5):
        s_pos, _ = env.step(None, start, a, jnp.array([mass, 1.0]))
        s_neg, _ = env.step(None, start, a, jnp.array([mass, -1.0]))
        s_flip, _ = env.step(None, start, -a, jnp.array([mass, 1.0]))
        np.testing.assert_array_equal(s_neg.physics.vel, -s_pos.physics.vel)
        np.testing.assert_array_equal(s_neg.physics.vel, s_flip.physics.vel)
        assert float(s_pos.physics.vel[0]) > 0


def test_ode_dynamics_and_reward_match_equations():
    env = hj.make_env("ode")
    rng = np.random.default_rng(0)
    for c0, c1 in hj.context_sets("ode").eval_out[::5]:
        x = np.float32(rng.uniform(-1, 1))
        state = EnvState(jnp.array([x]), jnp.int32(0))
        for _ in range(10):
            a = rng.uniform(-1, 1, 2)
            xdot = (c0 * complex(a[0], a[1]) + c1 * complex(a[0], a[1]) ** 2).real
            ref = np.clip(np.float64(state.physics[0]) + xdot * 0.01, -20, 20)
            state, ts = env.step(None, state, jnp.asarray(a, jnp.float32),
                                 jnp.array([c0, c1]))
            np.testing.assert_allclose(float(state.physics[0]), ref, atol=1e-5)
    bands = {0.0: 1.0, 0.07: 0.5, 0.15: 1 / 3, 0.3: 0.25, 1.0: 0.05, 2.5: 0.0}
    from hyperjax.envs.ode import ode_reward
    for x, r in bands.items():
        np.testing.assert_allclose(float(ode_reward(jnp.float32(x))), r, rtol=1e-6)
    assert env.episode_length == 200


def test_context_sets_follow_the_recipe():
    cs = hj.context_sets("di")
    assert cs.factors == ("mass", "action_factor")
    np.testing.assert_array_equal(cs.train[:4], np.float32([[0.5, -1], [0.5408, 1],
                                                            [0.602, -1], [0.6429, 1]]))
    np.testing.assert_array_equal(cs.eval_out[-2:], np.float32([[1.9388, 1], [2.0, 1]]))
    for split in contexts.SPLITS:
        arr = cs.split(split)
        assert arr.shape == (20, 2) and arr.dtype == np.float32
        assert set(arr[:, 1].tolist()) == {-1.0, 1.0}
    assert (cs.train[:, 1] == -1).sum() == 11
    assert cs.eval_in[:, 0].min() == np.float32(0.51) and cs.eval_in[:, 0].max() == np.float32(1.49)
    out = cs.eval_out[:, 0]
    assert ((out <= 0.4738 + 1e-6) | (out >= 1.5304 - 1e-6)).all()
    # The recipe, re-derived independently for DI-Friction.
    m = 0.01
    grids = [np.round(np.linspace(0.5 + m, 1.5 - m, 50), 4)] * 2
    mesh = sorted(itertools.product(*[g.tolist() for g in grids]))
    ref = np.float32([mesh[i] for i in np.linspace(0, len(mesh) - 1, 20).astype(int)])
    np.testing.assert_array_equal(hj.context_sets("di_friction").eval_in, ref)
    # splits are pairwise disjoint
    rows = [set(map(tuple, cs.split(s).tolist())) for s in contexts.SPLITS]
    assert not (rows[0] & rows[1]) and not (rows[0] & rows[2]) and not (rows[1] & rows[2])


def test_unknown_names_list_valid_ones():
    with pytest.raises(ValueError, match="unknown env 'pendulum'; valid: di, di_friction, di_perm, ode, "
                                         "cartpole"):
        hj.make_env("pendulum")
    with pytest.raises(ValueError, match="valid: di"):
        hj.context_sets("nope")


def test_malformed_context_sets_are_rejected():
    env = hj.make_env("di")
    with pytest.raises(ValueError, match=r"shape \[N, 2\]"):
        contexts.validate_context_set(np.zeros((3, 3)), env.varied)
    with pytest.raises(ValueError, match="'mass' is not finite in row 1"):
        contexts.validate_context_set([[1, 1], [np.nan, 1]], env.varied)
    with pytest.raises(ValueError, match="'mass' = 5 in row 0 is outside"):
        contexts.validate_context_set([[5, 1]], env.varied)
    with pytest.raises(ValueError, match="'action_factor' = 0.5 in row 0 is not one of"):
        contexts.validate_context_set([[1, 0.5]], env.varied)


def test_auto_reset_draws_contexts_inside_jit():
    env = hj.make_env("di")
    cs = jnp.asarray(hj.context_sets("di").train)
    wrapped = EpisodeStats(AutoReset(env, sampling="uniform"))
    n = 64
    state, ts = jax.vmap(wrapped.reset, in_axes=(0, None))(jax.random.split(jax.random.PRNGKey(0), n), cs)

    @jax.jit
    def rollout(state, key):
        def body(state, k):
            state, ts = jax.vmap(wrapped.step, in_axes=(0, 0, 0, None))(
                jax.random.split(k, n), state, jnp.zeros((n, 2)), cs)
            return state, (state.inner.context_id, ts.truncated, ts.info["context_id"])
        return jax.lax.scan(body, state, jax.random.split(key, 250))

    state, (ids, trunc, info_ids) = rollout(state, jax.random.PRNGKey(1))
    ids, trunc = np.asarray(ids), np.asarray(trunc)
    assert trunc.sum() == 2 * n  # episodes end at steps 100 and 200
    # within an episode the context is constant; it changes (for most envs) across episodes
    assert (ids[:99] == ids[0]).all() and (ids[100:199] == ids[100]).all()
    assert (ids[0] != ids[100]).mean() > 0.8
    # each env's context row is its own: many different contexts at once
    assert len(set(ids[0].tolist())) > 10
    np.testing.assert_array_equal(state.inner.context, cs[state.inner.context_id])
    # the time limit reset the step counter and the statistics closed the episode
    assert (np.asarray(state.inner.inner.t) == 50).all()
    assert (np.asarray(state.returned_episode_length) == 100).all()
    assert (np.asarray(state.episode_length) == 50).all()
    fixed = AutoReset(env, sampling="fixed")
    s, _ = fixed.reset(jax.random.PRNGKey(0), cs, 7)
    for i in range(100):
        s, ts = fixed.step(jax.random.PRNGKey(i), s, jnp.zeros(2), cs)
    assert int(s.context_id) == 7 and bool(ts.truncated) and int(s.inner.t) == 0
    assert not np.array_equal(ts.info["final_obs"], ts.obs)


def test_vmap_auto_reset_resets_only_finished_envs_with_new_contexts():
    """The batched auto-reset: identical stepping, new contexts only at episode ends."""
    from hyperjax.envs.wrappers import VmapAutoReset
    env = hj.make_env("di")
    cs = jnp.asarray(hj.context_sets("di").train)
    wrapped = VmapAutoReset(env, "uniform")
    n = 32
    state, ts = wrapped.reset(jax.random.PRNGKey(0), cs, n)
    # stagger the episodes: half the envs are 50 steps from their time limit
    state = state._replace(inner=state.inner._replace(
        t=jnp.where(jnp.arange(n) < n // 2, 50, 0).astype(jnp.int32)))

    @jax.jit
    def rollout(state, key):
        def body(state, k):
            state, ts = wrapped.step(k, state, jnp.zeros((n, 2)), cs)
            return state, (state.context_id, ts.truncated, ts.info["final_obs"], ts.obs)
        return jax.lax.scan(body, state, jax.random.split(key, 100))

    state, (ids, trunc, final_obs, obs) = rollout(state, jax.random.PRNGKey(1))
    ids, trunc = np.asarray(ids), np.asarray(trunc)
    assert trunc[49, : n // 2].all() and not trunc[49, n // 2:].any()
    assert trunc[99, n // 2:].all() and trunc.sum() == n
    assert (ids[:49] == ids[0]).all() and (ids[0, : n // 2] != ids[49, : n // 2]).mean() > 0.7
    assert (ids[49, n // 2:] == ids[0, n // 2:]).all()  # unfinished envs keep their context
    np.testing.assert_array_equal(state.context, cs[state.context_id])
    # final_obs is the last observation; obs after a reset is a corner start at rest
    assert np.abs(np.asarray(obs[49, : n // 2, 2:])).max() == 0.0
    assert np.abs(np.asarray(final_obs[49, : n // 2] - obs[49, : n // 2])).max() > 0


def test_episode_stats_return():
    env = EpisodeStats(hj.make_env("di"))
    ctx = jnp.array([1.0, 1.0])
    s, _ = env.reset(jax.random.PRNGKey(0), ctx)
    s = s._replace(inner=EnvState(DIPhysics(jnp.zeros(2), jnp.zeros(2)), jnp.int32(0)))
    for _ in range(100):
        s, ts = env.step(None, s, jnp.zeros(2), ctx)
    assert float(s.returned_episode_return) == 100.0 and int(s.returned_episode_length) == 100
    assert float(s.episode_return) == 0.0


def test_fill_context_window_runs_k_steps_in_the_context():
    env = hj.make_env("di")
    ctx = jnp.array([0.8, -1.0])
    warm = fill_context_window(env, jax.random.PRNGKey(0), ctx, lambda k, o, w: jnp.ones(2), 24)
    feats = window_features(warm.window)
    assert feats.shape == (24, 10)
    np.testing.assert_array_equal(feats[:, :4], warm.obs)
    np.testing.assert_array_equal(feats[:, 4:6], 1.0)
    np.testing.assert_allclose(feats[:, 6:], warm.next_obs - warm.obs)
    np.testing.assert_array_equal(warm.obs[1:], warm.next_obs[:-1])
    # inverted actuators: +1 action accelerates towards negative velocity
    assert (warm.next_obs[:3, 2:] < 0).all()


def test_a_grid_smaller_than_the_context_count_warns_with_its_counts():
    """One binary factor: the authors' linspace recipe gives 19 contexts of one value and 1 of
    the other in every split; make_context_sets says so. The AIB tasks' sets do not warn."""
    import warnings

    from hyperjax.envs import contexts
    binary = (contexts.Factor("sign", 1.0, (-1.0, 1.0), (-1.0, 1.0), values=(-1.0, 1.0)),)
    with pytest.warns(UserWarning, match=r"the \w+ grid has 2 points for 20 contexts; .*"
                                         r"\[19, 1\] times"):
        sets = contexts.make_context_sets(binary)
    assert (sets.train[:, 0] == -1.0).sum() == 19
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name in ("di", "ode", "cartpole"):
            hj.context_sets(name)
