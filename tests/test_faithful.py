"""Faithfulness to the authors' code (github dma-sh/dmash, c74cb4a), item by item.

Each test restates what the authors' code does (file named in the test) and checks hyperjax
against it: DMA-Pearl's loss, the step accounting, the replay, the warm-ups, the SAC
log-probability, the LSTM, and ODE-k.
"""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hyperjax as hj
from hyperjax.agents import replay as rb
from hyperjax.agents import sac
from hyperjax.envs import contexts
from hyperjax.envs.wrappers import initial_window, push_window, window_features
from hyperjax.nets.encoder import ContextEncoder, TorchLSTM

TINY = dict(total_steps=20, eval_every=10, learning_starts=100, eval_episodes=1)


def _program(algo, **kw):
    return hj.make_program(hj.Config(algo=algo, **{**TINY, **kw}))


def _replay_with_random_data(prog, n_episodes=2, seed=0):
    K, T = prog.cfg.context_size, prog.env.episode_length
    buf = prog.init(jax.random.PRNGKey(seed)).replay
    rng = np.random.default_rng(seed)
    r = lambda *s: jnp.asarray(rng.normal(size=s), jnp.float32)
    for _ in range(n_episodes):
        buf = rb.start_episode(buf, r(20, K, 4), r(20, K, 2), r(20, K, 4))
        for _ in range(T):
            buf = rb.add(buf, K, r(20, 4), r(20, 2), r(20), r(20, 4), jnp.zeros(20, bool),
                         jnp.zeros(20, bool))
    return buf


# --- 1. DMA-Pearl ------------------------------------------------------------------------

def test_pearl_loss_uses_the_kl_mean_over_batch_and_dims_with_layernorm_heads():
    """encoder.py ``PLSTMContextEncoder``: ``output_mu = Linear -> LayerNorm``, ``output_var =
    Linear -> LayerNorm -> Softplus``; util.py ``"dce_kl": dce_kl.mean()`` (over batch *and*
    dims); sac.py ``total_loss * (1 + dce_kl * 0.4)``. With the LayerNorms' scales set to 0,
    mu and var are their biases, so the KL is known in closed form."""
    prog = _program("dma_pearl")
    agent = prog.agent
    state = prog.init(jax.random.PRNGKey(0)).agent
    params, hp = state.params, state.hparams
    enc = params.method["encoder"]
    assert set(enc) >= {"mu", "mu_norm", "var", "var_norm"}
    mu = np.linspace(-1.0, 1.5, 8).astype(np.float32)
    raw = np.linspace(-2.0, 2.0, 8).astype(np.float32)
    enc = {**enc, "mu_norm": {"scale": jnp.zeros(8), "bias": jnp.asarray(mu)},
           "var_norm": {"scale": jnp.zeros(8), "bias": jnp.asarray(raw)}}
    model = {**params.method, "encoder": enc}
    var = np.log1p(np.exp(raw.astype(np.float64)))
    kl_mean = np.mean(0.5 * (var + mu.astype(np.float64) ** 2 - 1.0 - np.log(var)))
    batch = rb.sample(_replay_with_random_data(prog), jax.random.PRNGKey(1), 12, 100, 24)
    loss, mse = agent.aux_loss(model, batch, jax.random.PRNGKey(2), hp)
    np.testing.assert_allclose(float(loss), float(mse) * (1.0 + 0.4 * kl_mean), rtol=1e-5)
    # the sum over the 8 dimensions (effective beta 3.2) would be far off
    assert abs(float(loss) - float(mse) * (1.0 + 3.2 * kl_mean)) > 1e-3 * float(loss)


def test_pearl_kl_comes_from_its_own_encoder_pass():
    """util.py ``compute_context_and_..._kl``: z from ``dce(...)``, the KL from a second call
    ``dce.get_kl(...)`` with its own shuffle and random subset."""
    prog = _program("dma_pearl")
    agent = prog.agent
    state = prog.init(jax.random.PRNGKey(0)).agent
    model, hp = state.params.method, state.hparams
    batch = rb.sample(_replay_with_random_data(prog), jax.random.PRNGKey(1), 12, 100, 24)
    key = jax.random.PRNGKey(5)
    loss, mse = agent.aux_loss(model, batch, key, hp)
    k_z, k_kl = jax.random.split(key)
    m, shapes = agent.method, agent.shapes
    same_pass = m.encode_out(shapes, model, batch.window, k_z, True)
    pred = m._model(shapes).dynamics.apply({"params": model["dynamics"]}, batch.obs,
                                         batch.action, same_pass.z)
    np.testing.assert_allclose(float(mse), float(jnp.mean(
        (pred - (batch.next_obs - batch.obs)) ** 2)), rtol=1e-6)
    kl = m.encode_out(shapes, model, batch.window, k_kl, True).kl
    np.testing.assert_allclose(float(loss), float(mse) * (1 + 0.4 * float(jnp.mean(kl))),
                               rtol=1e-6)
    assert abs(float(jnp.mean(kl)) - float(jnp.mean(same_pass.kl))) > 1e-6


def test_pearl_variance_has_no_clamp():
    """The authors' Softplus head has no floor (hyperjax had ``var >= 1e-7``)."""
    enc = ContextEncoder(obs_dim=4, action_dim=2, context_size=24, mask_rate=0.0,
                         input_norm=False, output_norm=False, pearl=True)
    w = jax.random.normal(jax.random.PRNGKey(0), (3, 24, 10))
    p = enc.init(jax.random.PRNGKey(1), w, jax.random.PRNGKey(2), False)
    p = jax.tree_util.tree_map_with_path(
        lambda path, x: jnp.full_like(x, -30.0) if "var_norm" in str(path) and "bias" in str(
            path) else (jnp.zeros_like(x) if "var_norm" in str(path) else x), p)
    kl = enc.apply(p, w, None, False).kl  # var = softplus(-30) ~ 9.4e-14
    var = math.log1p(math.exp(-30.0))
    mu = enc.apply(p, w, None, False).z
    expect = np.mean(0.5 * (var + np.asarray(mu, np.float64) ** 2 - 1 - math.log(var)), -1)
    np.testing.assert_allclose(np.asarray(kl), expect, rtol=1e-4)


# --- 2. Step accounting ----------------------------------------------------------------------

def test_steps_count_like_the_authors():
    """sac.py ``for step in np.arange(-learning_starts, total_timesteps + 1)``: L random vector
    steps, N + 1 steps with a gradient step each, evaluations at 0, E, ..., N."""
    cfg = hj.Config(algo="dr", total_steps=150, eval_every=50, learning_starts=200,
                    eval_episodes=1)
    prog = hj.make_program(cfg)
    assert prog.n_segments == 4
    assert [prog.segment_steps(k) for k in range(4)] == [(0, 201), (201, 251), (251, 301),
                                                         (301, 351)]
    state, m = jax.jit(hj.make_train(cfg))(jax.random.PRNGKey(0))
    np.testing.assert_array_equal(m["step"], [0, 50, 100, 150])
    assert int(state.agent.opt_state.critic.count) == 151  # N + 1 gradient steps
    # 351 vector steps: episodes at g = 0, 100, 200, 300; the last holds 51 steps
    assert int(state.replay.episodes) == 4 and int(state.replay.t) == 51
    assert np.isfinite(m["q_loss"]).all()  # segment 0 ends with the update at step 0


# --- 3. Replay ---------------------------------------------------------------------------

def test_replay_samples_completed_episodes_only_and_evicts_the_oldest():
    """dataset.py ``MemoryEfficientContextReplayBuffer``: capacity int(min(buffer, total) / T)
    episodes, episodes drawn from the completed ones (``_size`` grows on ``dones``)."""
    T, K = 5, 2
    slots = rb.num_slots(10, 100, T)
    assert slots == 3  # 2 completed episodes + the one being written
    assert rb.num_slots(100_000, 100_000, 100) == 1001  # DI at the paper's budget
    assert rb.num_slots(100_000, 100_000, 1000) == 101
    buf = rb.init(1, slots, K, T, 1, 1)
    seen = []
    for e in range(5):
        buf = rb.start_episode(buf, jnp.full((1, K, 1), -1.0), jnp.zeros((1, K, 1)),
                               jnp.zeros((1, K, 1)))
        for t in range(T if e < 4 else 3):
            v = jnp.full((1, 1), float(e))
            buf = rb.add(buf, K, v, v, v[:, 0], v, jnp.zeros(1, bool), jnp.zeros(1, bool))
        if e == 0:  # nothing completed yet; after episode 0 ends, only it is sampled
            continue
        b = rb.sample(buf, jax.random.PRNGKey(e), 200, T, K)
        seen.append(set(np.unique(np.asarray(b.obs)).tolist()))
    # episode e running: completed are the two before it (episode 0 evicted from e = 3 on)
    assert seen == [{0.0}, {0.0, 1.0}, {1.0, 2.0}, {2.0, 3.0}]


def test_replay_capacity_follows_the_gradient_step_budget():
    """``min(buffer_size, total_timesteps)`` with total_timesteps the gradient steps: 100
    random + 201 update steps into 2 episodes of capacity (the random episode is evicted)."""
    cfg = hj.Config(algo="dr", total_steps=200, eval_every=100, learning_starts=100,
                    eval_episodes=1)
    prog = hj.make_program(cfg)
    state = prog.init(jax.random.PRNGKey(0))
    assert state.replay.obs.shape[1] == 3


# --- 4. Warm-ups -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sh_prog():
    return _program("dma_sh", learning_starts=200)


def test_training_window_starts_as_k_copies_of_s0(sh_prog):
    """sac.py: ``obs_stack = deque([obs] * K)``, zero actions, ``next_obs_stack`` the same."""
    state = sh_prog.init(jax.random.PRNGKey(0))
    w = state.window
    np.testing.assert_array_equal(w.obs, jnp.repeat(state.obs[:, None], 24, 1))
    np.testing.assert_array_equal(w.next_obs, w.obs)
    np.testing.assert_array_equal(w.action, 0.0)
    state, _ = jax.jit(sh_prog.steps)(state, 0, 1)  # episode 0's prefix is that window
    np.testing.assert_array_equal(state.replay.obs[:, 0, :24], w.obs)
    np.testing.assert_array_equal(state.replay.action[:, 0, :24], 0.0)


def test_no_warmup_in_the_random_phase(sh_prog):
    """sac.py warms up only for ``step >= 0``: episode 1 (random phase) starts with episode 0's
    last K transitions in its window."""
    state = sh_prog.init(jax.random.PRNGKey(0))
    state, _ = jax.jit(sh_prog.steps)(state, 0, 101)
    r = state.replay
    for arr in (r.obs, r.action, r.next_obs):
        np.testing.assert_array_equal(arr[:, 1, :24], arr[:, 0, 100:124])


def test_training_warmup_is_deterministic_eval_mode_from_the_previous_window(sh_prog):
    """sac.py ``fill_context_window``: ``compute_context(..., training=False)`` and
    ``actor.get_action(..., training=False)``, starting from the deques as they are (the
    previous episode's window). Each stored warm-up action is recomputed from that window."""
    prog, agent = sh_prog, sh_prog.agent
    steps = jax.jit(prog.steps)
    state, _ = steps(prog.init(jax.random.PRNGKey(0)), 0, 200)  # random phase: 2 episodes
    params, window = state.agent.params, state.window
    state2, _ = steps(state, 200, 201)  # s = 0: warm-up, then the first update
    r = state2.replay
    slot = (int(r.episodes) - 1) % r.obs.shape[1]  # episode 2's slot
    w_obs, w_act, w_next = (x[:, slot, :24] for x in (r.obs, r.action, r.next_obs))
    ctx = jnp.asarray(prog.sets.train)
    for t in range(24):
        feats = window_features(window)
        a = agent.act(params, w_obs[:, t], feats, ctx, jax.random.PRNGKey(t),
                      deterministic=True, encoder_training=False)
        np.testing.assert_allclose(np.asarray(a), np.asarray(w_act[:, t]), rtol=0, atol=1e-6)
        window = jax.vmap(push_window)(window, w_obs[:, t], w_act[:, t], w_next[:, t])
    # the encoder in training mode (random subset and mask) would act otherwise
    a_train = agent.act(params, w_obs[:, 0], window_features(state.window), ctx,
                        jax.random.PRNGKey(9), deterministic=True, encoder_training=True)
    assert not np.allclose(np.asarray(a_train), np.asarray(w_act[:, 0]), atol=1e-6)


def test_eval_warmup_starts_from_k_copies_of_a_reset_state(sh_prog):
    """sac.py ``make_evaluation_and_fill_ds``: ``obs = envs.reset()``, the deques are K copies
    of it, then ``fill_context_window`` resets again: the first warm-up action sees
    K x (s0', 0, s0') of that first reset."""
    prog, agent = sh_prog, sh_prog.agent
    params = prog.init(jax.random.PRNGKey(0)).agent.params
    ctx = jnp.asarray(prog.sets.train[:3])
    key = jax.random.PRNGKey(4)
    _, traj = prog.rollout(params, key, ctx)
    # the rollout's resets: one batched call of 3 x 3 envs; the second three fill the deques
    keys = jax.random.split(jax.random.split(key, 3)[0], 9)
    _, ts0 = jax.vmap(prog.env.reset)(keys[3:6], ctx)
    w0 = initial_window(ts0.obs, 24, 2)
    a0 = agent.act(params, traj.obs[:, 0], window_features(w0), ctx, key, deterministic=True,
                   encoder_training=False)
    np.testing.assert_allclose(np.asarray(a0), np.asarray(traj.action[:, 0]), atol=1e-6)
    zeros = jnp.zeros((3, 24, 10))
    a_zero = agent.act(params, traj.obs[:, 0], zeros, ctx, key, deterministic=True,
                       encoder_training=False)
    assert not np.allclose(np.asarray(a_zero), np.asarray(traj.action[:, 0]), atol=1e-6)


# --- 5. SAC numerics ---------------------------------------------------------------------

def test_log_prob_is_cleanrls_with_the_1e6_cap():
    """model.py ``Actor.get_action``: ``normal.log_prob(x) - log(scale (1 - y^2) + 1e-6)``,
    summed over actions; distrax's exact form stays behind ``exact=True``."""
    mean = jnp.array([[0.0, 0.8], [-0.5, 0.3]])
    log_std = jnp.array([[-1.0, -0.5], [-2.0, -1.5]])
    key = jax.random.PRNGKey(0)
    a, logp = sac.sample_and_log_prob(mean, log_std, key, -1.0, 1.0)
    f32 = np.float32  # torch's float32 arithmetic: 1 - y^2 rounds near saturation
    std = np.exp(np.asarray(log_std, f32))
    x = np.asarray(mean, f32) + std * np.asarray(jax.random.normal(key, mean.shape), f32)
    ref = (-0.5 * ((x - np.asarray(mean, f32)) / std) ** 2 - np.log(std) - f32(0.5 * np.log(2 * np.pi))
           - np.log(f32(1.0) * (f32(1) - np.tanh(x) ** 2) + f32(1e-6))).sum(-1)
    np.testing.assert_allclose(np.asarray(logp), ref, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(np.asarray(a), np.tanh(x), atol=1e-6)
    # at mean 12 the correction is capped at log(1e-6); the exact one is not
    mean = jnp.array([[0.0, 0.8], [12.0, -0.5]])
    log_std = jnp.array([[-1.0, -0.5], [-5.0, -1.5]])
    _, logp = sac.sample_and_log_prob(mean, log_std, key, -1.0, 1.0)
    _, exact = sac.sample_and_log_prob(mean, log_std, key, -1.0, 1.0, exact=True)
    assert float(exact[1]) > float(logp[1]) + 5.0
    # the cap zeroes the correction's gradient for large pre-tanh actions
    g = jax.grad(lambda m: sac.sample_and_log_prob(m, log_std, key, -1.0, 1.0)[1].sum())(mean)
    assert abs(float(g[1, 0])) < 1e-3


def test_config_flag_selects_the_exact_log_prob():
    p0 = _program("dr")
    p1 = _program("dr", exact_tanh_logprob=True)
    params = p0.init(jax.random.PRNGKey(0)).agent.params
    obs = jnp.full((4, 4), 0.3)
    k = jax.random.PRNGKey(1)
    from hyperjax.nets.networks import Cond
    l0 = p0.agent.losses.log_prob(params.actor, obs, Cond(), k)
    l1 = p1.agent.losses.log_prob(params.actor, obs, Cond(), k)
    assert not np.allclose(np.asarray(l0), np.asarray(l1))


def test_lstm_is_torch_nn_lstm():
    """encoder.py ``nn.LSTM(32, 32)``: weights and both biases ~ U(+-1/sqrt(32)), gates i, f,
    g, o; checked against the equations in float64."""
    lstm = TorchLSTM(32)
    x = jax.random.normal(jax.random.PRNGKey(0), (5, 4, 32))
    p = lstm.init(jax.random.PRNGKey(1), x)["params"]
    assert {k: v.shape for k, v in p.items()} == {"w_ih": (32, 128), "w_hh": (32, 128),
                                                  "b_ih": (128,), "b_hh": (128,)}
    bound = 1 / math.sqrt(32)
    allw = np.concatenate([np.ravel(v) for v in p.values()])
    assert np.abs(allw).max() <= bound and np.abs(allw).max() > 0.95 * bound
    assert abs(allw.std() - bound / math.sqrt(3)) < 0.01  # uniform, not lecun / orthogonal
    h = np.zeros((5, 32))
    c = np.zeros((5, 32))
    sig = lambda v: 1 / (1 + np.exp(-v))
    P = {k: np.asarray(v, np.float64) for k, v in p.items()}
    for t in range(4):
        gates = np.asarray(x[:, t], np.float64) @ P["w_ih"] + P["b_ih"] + h @ P["w_hh"] + P["b_hh"]
        i, f, g, o = np.split(gates, 4, axis=-1)
        c = sig(f) * c + sig(i) * np.tanh(g)
        h = sig(o) * np.tanh(c)
    np.testing.assert_allclose(np.asarray(lstm.apply({"params": p}, x)), h, atol=1e-5)


# --- 6. ODE-k ------------------------------------------------------------------------------

def _authors_xdot(params, a):
    """``ComplexODE._get_xdot`` (dmash/envs/ode.py), only_two=False."""
    a = complex(a[0], a[1])
    return float(sum(c * a ** (i + 1) for i, c in enumerate(params)).real)


@pytest.mark.parametrize("k", [1, 3, 5, 20])
def test_ode_k_steps_like_the_authors(k):
    env = hj.make_env(f"ode_{k}")
    assert env.factors == tuple(f"parameter_{j}" for j in range(k))
    assert (env.obs_dim, env.action_dim, env.episode_length) == (1, 2, 200)
    np.testing.assert_array_equal(env.default_context, np.ones(k))
    rng = np.random.default_rng(k)
    state, ts = env.reset(jax.random.PRNGKey(0), jnp.ones(k))
    x = float(ts.obs[0])
    for _ in range(5):
        c = rng.uniform(-1.5, 1.5, k)
        a = rng.uniform(-1, 1, 2)
        state, ts = env.step(None, state, jnp.asarray(a, jnp.float32),
                             jnp.asarray(c, jnp.float32))
        x = float(np.clip(x + _authors_xdot(c, a) * 0.01, -20, 20))
        np.testing.assert_allclose(float(ts.obs[0]), x, rtol=1e-4, atol=1e-5)


def test_ode_k_context_sets_are_sampled_like_the_authors():
    """context.py ``setup_context_env``: ``np.random.seed(seed)``, then for more than two
    factors each of the 20 contexts draws every factor by ``np.random.choice`` from its grid
    (train, then in, then out), sorted."""
    def authors(k, seed):
        np.random.seed(seed)
        out = {}
        for split in ("train", "eval_in", "eval_out"):
            f = contexts.Factor("p", 1.0, (-5.0, 5.0), (-10.0, 10.0))
            grid = f.split_values(split).tolist()
            mesh = [{f"parameter_{j}": np.random.choice(grid) for j in range(k)}
                    for _ in range(20)]
            mesh = sorted(mesh, key=lambda d: [d[n] for n in d])
            out[split] = np.array([[d[f"parameter_{j}"] for j in range(k)] for d in mesh],
                                  np.float32)
        return out

    for k, seed in ((3, 0), (5, 7), (20, 1)):
        sets = hj.context_sets(f"ode_{k}", seed)
        ref = authors(k, seed)
        for split in ("train", "eval_in", "eval_out"):
            np.testing.assert_array_equal(sets.split(split), ref[split])
    assert not np.array_equal(hj.context_sets("ode_5", 0).train,
                              hj.context_sets("ode_5", 1).train)
    # one and two factors keep the mesh recipe
    np.testing.assert_array_equal(hj.context_sets("ode_2").train, hj.context_sets("ode").train)
    assert hj.context_sets("ode_1").train.shape == (20, 1)


def test_ode_k_is_registered_validated_and_classed():
    names = hj.env_names()
    assert all(f"ode_{k}" in names for k in range(1, 21)) and "ode_21" not in names
    from hyperjax.envs import TASKS
    assert TASKS["ode_5"].overlap is False
    assert TASKS["ode_5"].return_bounds == (0.0, 200.0)
    env = hj.make_env("ode_5")
    with pytest.raises(ValueError, match="'parameter_3' = 11 in row 0 is outside"):
        contexts.validate_context_set([[0, 0, 0, 11, 0]], env.varied)
    with pytest.raises(ValueError, match="ODE-k needs k in 1..20"):
        from hyperjax.envs.ode import ComplexODEk
        ComplexODEk(21)
