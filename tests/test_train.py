"""The compiled training program: seed-vmap equivalence, segments == one scan, learning."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hyperjax as hj
from hyperjax.parallel import compile_program, seed_keys

SMALL = dict(total_steps=100, eval_every=50, learning_starts=100, eval_episodes=1)


def _leaves_equal(a, b):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(la) == len(lb)
    for x, y in zip(la, lb):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _segment_runs(cfg, keys):
    """The CLI's one-seed program (``compile_program(prog, 1)``, the ``tiny_dma_sh_run``
    fixture's, so compiled once per session and read back from the persistent compilation
    cache), traced once and run from each key: ``n_segments`` calls of the segment function,
    each run returned as ``make_train`` returns, ``(state, metrics)`` without the seed axis."""
    prog = hj.make_program(cfg)
    init, seg, _ = compile_program(prog, 1)
    runs = []
    for key in keys:
        state = init(key[None])
        rows = []
        for i in range(prog.n_segments):
            state, m = seg(state, jnp.int32(i))
            rows.append(m)
        metrics = {k: np.stack([np.asarray(r[k][0]) for r in rows]) for k in rows[0]}
        runs.append((jax.tree.map(lambda x: x[0], state), metrics))
    return runs


@pytest.fixture(scope="module")
def dma_sh_runs():
    # 21 gradient steps: long enough to move every network, short enough that rounding
    # differences between batched and unbatched matmuls stay at rounding level
    cfg = hj.Config.tiny(algo="dma_sh")
    keys = seed_keys(0, 2)
    batched = jax.jit(jax.vmap(hj.make_train(cfg)))(keys)
    singles = _segment_runs(cfg, keys)
    return cfg, batched, singles


def test_vmap_over_two_seeds_equals_single_seed_segment_runs(dma_sh_runs):
    """The two-seed program (one scan, seed-vmapped) against the CLI's one-seed program run
    per seed (segments between evaluations): the same computation. Batched and unbatched
    matmuls round differently on XLA:CPU (~1e-7), and XLA may unroll the segment program's
    step loops (constant bounds), which changes rounding again; SAC amplifies that over many
    updates, so the check uses 20 updates and a tolerance far below the gap between the two
    seeds (> 0.01). The random phase (no floats from the networks) and the counters are
    bitwise. ``test_segments_equal_one_scan`` (slow) compares segments with the unbatched scan
    alone, at 1e-5."""
    _, (b_state, b_metrics), singles = dma_sh_runs
    for i, (state, metrics) in enumerate(singles):
        for k in b_metrics:
            # losses are continuous; returns count goal hits, where a 1e-4 drift can move one
            # episode across the goal boundary by a step (0.05 AER with one eval episode)
            counts = k in ("aer", "eval_return", "train_return")
            np.testing.assert_allclose(np.asarray(b_metrics[k][i]), np.asarray(metrics[k]),
                                       rtol=1e-3, atol=(1.0 if counts else 1e-5), err_msg=k)
        pa = jax.tree.map(lambda x: x[i], b_state.agent.params)
        for x, y in zip(jax.tree.leaves(pa), jax.tree.leaves(state.agent.params)):
            np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=0, atol=1e-4)
        np.testing.assert_array_equal(b_state.replay.action[i, :, 0, 24:],
                                      state.replay.action[:, 0, 24:])  # same random phase
        _leaves_equal(jax.tree.map(lambda x: x[i], (b_state.replay.episodes, b_state.replay.t,
                                                     b_state.segments_done)),
                      (state.replay.episodes, state.replay.t, state.segments_done))
    # the two seeds differ by far more than the rounding
    assert not np.allclose(b_metrics["q_loss"][0], b_metrics["q_loss"][1])
    w0, w1 = (b_state.agent.params.actor["params"]["mean"]["kernel"][i] for i in (0, 1))
    assert float(jnp.max(jnp.abs(w0 - w1))) > 0.01


@pytest.mark.slow  # one more DMA*-SH program (~35 s): the default test above covers both
def test_segments_equal_one_scan():
    """The same computation, compiled in two contexts: XLA may unroll the scan's three
    segments and specialise their step loops (constant bounds), which changes float rounding
    (~1e-7), not the algorithm. The random phase (no floats from the networks) is bitwise."""
    cfg = hj.Config.tiny(algo="dma_sh")
    key = seed_keys(0, 1)[0]
    s_state, s_metrics = jax.jit(hj.make_train(cfg))(key)
    (state, metrics), = _segment_runs(cfg, [key])
    for k in s_metrics:
        np.testing.assert_allclose(metrics[k], np.asarray(s_metrics[k]), rtol=1e-4, atol=1e-5,
                                   err_msg=k)
    for x, y in zip(jax.tree.leaves(state.agent.params), jax.tree.leaves(s_state.agent.params)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=0, atol=1e-5)
    np.testing.assert_array_equal(state.replay.action[:, 0, 24:],
                                  s_state.replay.action[:, 0, 24:])
    _leaves_equal((state.replay.episodes, state.replay.t, state.segments_done),
                  (s_state.replay.episodes, s_state.replay.t, s_state.segments_done))


def test_metrics_shapes_and_counters(dma_sh_runs):
    cfg, (state, m), _ = dma_sh_runs
    assert m["aer"].shape == (2, 3, 3) and m["eval_return"].shape == (2, 3, 3, 20)
    # the authors' accounting: evaluations after steps 0, 10, 20 (100 random steps before)
    np.testing.assert_array_equal(m["step"][0], [0, 10, 20])
    np.testing.assert_array_equal(state.segments_done, [3, 3])
    # 100 random + 21 update steps: episode 2 (from g = 100) holds 21 steps
    assert int(state.replay.episodes[0]) == 2 and int(state.replay.t[0]) == 21
    # the first interval ends with the update at step 0: one update, finite losses
    assert np.isfinite(m["q_loss"][:, 0]).all() and np.isfinite(m["model_loss"][:, 0]).all()
    assert int(state.agent.opt_state.critic.count[0]) == 21
    # 21 updates of Adam moved alpha (and every network)
    assert (m["alpha"][:, -1] < 1.0).all()


# Concat, DA, DMA, DMA-Pearl and DMA* in the compiled loop run under -m slow: their losses and
# gradient routing are checked for every preset in the default suite (test_methods), the loop
# around the update is the same for every method with an encoder (DMA*-SH above) and for every
# method without one (DR here), and Concat learns in the compiled loop below (ODE).
SLOW = pytest.mark.slow


@pytest.mark.parametrize("algo", ["dr", pytest.param("concat", marks=SLOW),
                                  pytest.param("da", marks=SLOW),
                                  pytest.param("dma", marks=SLOW),
                                  pytest.param("dma_pearl", marks=SLOW),
                                  pytest.param("dma_star", marks=SLOW)])
def test_every_method_trains(algo):
    cfg = hj.Config(algo=algo, **SMALL)
    state, m = jax.jit(hj.make_train(cfg))(jax.random.PRNGKey(0))
    assert np.isfinite(m["q_loss"]).all() and np.isfinite(m["actor_loss"]).all()
    assert ("model_loss" in m) == (algo.startswith("dma"))
    assert m["eval_return"].shape == (3, 3, 20)


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="unknown algo 'sac'; valid: dr, concat, da"):
        hj.Config(algo="sac").resolved()
    with pytest.raises(ValueError, match="unknown env 'cartpole2'"):
        hj.Config(env="cartpole2").resolved()
    with pytest.raises(ValueError, match="total_steps must be a positive integer"):
        hj.Config(total_steps=0).resolved()
    with pytest.raises(ValueError, match="learning_starts=50 must be at least the episode "
                                         "length 100"):
        hj.Config(learning_starts=50).resolved()
    with pytest.raises(ValueError, match="eval_every=5000 is larger than total_steps=1000"):
        hj.Config(total_steps=1000).resolved()
    # the batch against the contexts trained in: once, where their number is known
    with pytest.raises(ValueError, match="batch_size=256 is not divisible by the 20 training"):
        hj.make_program(hj.Config(batch_size=256, algo="dr"))
    with pytest.raises(ValueError, match="num_envs=30 is not a multiple of the 20 training"):
        hj.make_program(hj.Config(num_envs=30, algo="dr"))
    with pytest.raises(ValueError, match="a shared merge needs the dynamics model's hypernetwork"):
        hj.methods.GridMethod("bad", source="true", policy_merge="shared", q_merge="shared")
    with pytest.raises(ValueError, match="mask_rate: 'concat' has no context encoder"):
        hj.Config(algo="concat", mask_rate=0.3).resolved()
    cfg = hj.Config(algo="dma_star").resolved()
    m = cfg.method()
    assert (cfg.mask_rate, m.encoder, cfg.context_size) == (0.2, "star", 24)
    assert hj.Config(algo="dma_sh", mask_rate=0.1).resolved().mask_rate == 0.1
    assert cfg.per_context_batch() == 12


def test_the_tiny_preset_is_the_docs_budget_with_one_random_episode():
    assert hj.Config.tiny(algo="dma_sh") == hj.Config(algo="dma_sh", **{**SMALL, "total_steps":
                                                                        20, "eval_every": 10})
    ode = hj.Config.tiny(env="ode", eval_episodes=2).resolved()
    assert (ode.learning_starts, ode.eval_episodes, ode.total_steps) == (200, 2, 20)
    assert hj.Config().total_steps == 100_000            # Config() is the paper's budget


def _ode_final_aer(algo):
    """AER at the last evaluation of a 5,000-step run on the ODE task, seed 0."""
    base = dict(env="ode", total_steps=5000, eval_every=2500, learning_starts=1000,
                eval_episodes=2)
    _, m = jax.jit(hj.make_train(hj.Config(algo=algo, **base)))(jax.random.PRNGKey(0))
    return float(np.asarray(m["aer"])[-1, 0])


def test_learning_concat_learns_the_ode_task():
    """A short run on the ODE task learns: random or broken agents stay near the reward of
    doing nothing (about 40 of 200; DR, which cannot know the sign, ends at 42 here)."""
    aer = _ode_final_aer("concat")
    assert aer > 100, aer


@pytest.mark.slow  # a second 5,000-step program (~50 s in the suite)
def test_learning_concat_beats_dr_on_ode():
    """The context-aware agent learns, DR cannot know the sign."""
    out = {algo: _ode_final_aer(algo) for algo in ("concat", "dr")}
    assert out["concat"] > 100, out
    assert out["concat"] > out["dr"] + 30, out


def test_typed_and_raw_keys_train_and_evaluate_alike():
    """``jax.random.key(0)`` (typed) and ``jax.random.PRNGKey(0)`` (raw ``uint32[2]``) give the
    same train state bitwise, seed-vmapped too (``init`` turns the key into raw key data first:
    the rest of ``train`` only sees the state), and the same evaluation. A key of another
    implementation is refused in one line."""
    cfg = hj.Config(algo="dr", **{**SMALL, "total_steps": 20, "eval_every": 10})
    prog = hj.make_program(cfg)
    init = jax.jit(jax.vmap(prog.init))
    state = init(jax.random.split(jax.random.key(0), 2))
    _leaves_equal(init(jax.random.split(jax.random.PRNGKey(0), 2)), state)
    params = jax.tree.map(lambda x: x[0], state.agent.params)
    policy, ctx = hj.make_policy(prog.agent), jnp.asarray(prog.sets.eval_out)
    np.testing.assert_array_equal(
        hj.evaluate(policy, params, prog.env, ctx, jax.random.key(3)),
        hj.evaluate(policy, params, prog.env, ctx, jax.random.PRNGKey(3)))
    with pytest.raises(ValueError, match="hyperjax takes threefry2x32 keys.*got a rbg key"):
        prog.init(jax.random.key(0, impl="rbg"))

    # the seed-batched parameters (what vmap over seeds trains) are named, not a Flax error;
    # checked on shapes, so before anything runs, under jit too
    with pytest.raises(ValueError, match=r"params carry a leading axis of 2 \(a seed-batched "
                                         r"train state\): pass one run's, jax.tree.map"):
        jax.jit(lambda p: hj.evaluate(policy, p, prog.env, ctx, jax.random.key(3)))(
            state.agent.params)
    other = jax.tree.map(lambda x: x[:, :1] if x.ndim > 1 else x, params)
    with pytest.raises(ValueError, match=r"params\S+ has shape \[\d+, 1\], this policy"):
        hj.evaluate(policy, other, prog.env, ctx, jax.random.key(3))
