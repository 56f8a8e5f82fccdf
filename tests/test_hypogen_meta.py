"""The Meta Policy (MAML) and PEARL baselines (issue 18 §4; the baselines of both released
repositories): the KL, the
second-order inner loop, PEARL's previous-(s, a) context at rollout, learning, fine-tuning."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hyperjax.hypogen import data as D, lqr, meta as MT, specs as S, train as T


def test_kl_to_standard_normal_exact():
    mu, lv = jnp.zeros((3, 4)), jnp.zeros((3, 4))
    assert float(MT.kl_standard_normal(mu, lv)) == 0.0
    # per sample: -0.5 * sum(1 + 0 - 1 - 1) over 2 dims = 1; log var = log 4: -0.5*(1+ln4-4)
    assert float(MT.kl_standard_normal(jnp.ones((5, 2)), jnp.zeros((5, 2)))) == pytest.approx(1.0)
    want = -0.5 * (1 + np.log(4.0) - 4.0)
    assert float(MT.kl_standard_normal(jnp.zeros((1, 1)), jnp.full((1, 1), np.log(4.0)))) == \
        pytest.approx(want, rel=1e-6)


def _batch(model, m=8, seed=0):
    k1, k2 = jax.random.split(jax.random.key(seed))
    return (jax.random.normal(k1, (m, model.obs_dim)),
            jnp.tanh(jax.random.normal(k2, (m, model.act_dim))))


def test_maml_is_second_order():
    """One inner step: the meta-gradient is ∇_θ L_eval(θ − α∇L_adapt(θ)), which differs from
    the first-order ∇L_eval at the adapted θ' (learn2learn ``first_order=False``)."""
    model = MT.MetaModel("meta", 3, 2, 1)
    cfg = MT.MetaConfig(adaptation_steps=1, fast_lr=0.5)
    params = jax.jit(model.init)(jax.random.key(0))  # one compile, not eager
    obs, act = _batch(model)
    spec = jnp.array([1.3])
    key = jax.random.key(1)
    g = jax.grad(lambda p: MT.maml_task_loss(model, cfg, p, spec, obs, act, key)[0])(params)
    mse = lambda pp, o, a: jnp.mean((model.predict(pp, jnp.broadcast_to(spec, (4, 1)), o) - a)
                                     ** 2)
    adapt = lambda pp: jax.tree_util.tree_map(
        lambda p, q: p - 0.5 * q, pp, jax.grad(mse)(pp, obs[:4], act[:4]))
    second = jax.grad(lambda pp: mse(adapt(pp), obs[4:], act[4:]))(params["policy"])
    first = jax.grad(mse)(adapt(params["policy"]), obs[4:], act[4:])
    flat = lambda t: jnp.concatenate([x.ravel() for x in jax.tree_util.tree_leaves(t)])
    np.testing.assert_allclose(flat(g["policy"]), flat(second), rtol=1e-4, atol=1e-7)
    assert float(jnp.abs(flat(second) - flat(first)).max()) > 1e-5


def test_pearl_context_is_the_previous_transition():
    """At rollout PEARL encodes the previous (s, a), zeros at the start, and carries (s, a)."""
    model = MT.MetaModel("pearl", 3, 2, 1)
    params = jax.jit(model.init)(jax.random.key(0))  # one compile, not eager
    act, carry0 = model.rollout_policy()
    assert [float(jnp.abs(c).max()) for c in carry0] == [0.0, 0.0]
    obs, key = jnp.array([0.1, -0.2, 0.3]), jax.random.key(5)
    a, carry = act(params, obs, jnp.array([1.0]), carry0, key)
    mu, lv = model.encoder.apply(params["encoder"], *carry0)
    want = model.predict(params["policy"], MT._sample(mu, lv, key)[None], obs[None])[0]
    np.testing.assert_allclose(a, want, rtol=1e-6)
    np.testing.assert_array_equal(carry[0], obs)
    np.testing.assert_array_equal(carry[1], a)
    # the spec is ignored: PEARL never sees it
    a2, _ = act(params, obs, jnp.array([-7.0]), carry0, key)
    np.testing.assert_array_equal(a, a2)


@pytest.fixture(scope="module")
def lqr_data():
    grid = S.make_grid("lqr_di")
    env = lqr.make_lqr_task("lqr_di")
    ids = np.array([0, 10, 20, 30, 40])
    ex = lqr.make_experts(grid.specs[ids])
    sp = jnp.asarray(grid.specs[ids], jnp.float32)
    out = jax.jit(lambda k: D.rollout(env, lambda e, o, s: lqr.expert_action(e[0], o, s),
                                      lambda e, o, a, s: lqr.expert_q(e[0], e[1], o, a, s),
                                      (ex.gain, ex.p), sp, k, 2))(jax.random.key(0))
    ds = D.Dataset(spec=np.asarray(sp), **{k: np.asarray(out[k]) for k in D.KEYS[1:]}, meta={})
    return env, ds


# MAML's learning (~27 s) under -m slow: its second-order meta-gradient is checked exactly
# above and its training loop runs in test_unequal_spec_counts_train_and_finetune
@pytest.mark.parametrize("algo", [pytest.param("meta", marks=pytest.mark.slow), "pearl"])
def test_meta_training_lowers_the_eval_half_loss(lqr_data, algo):
    env, ds = lqr_data
    cfg = T.FitConfig(algo=algo, epochs=40, eval_every=20, eval_episodes=1,
                      learning_rate=1e-3)
    fit = MT.make_meta_fit(cfg, env, D.flatten(ds, [0, 2, 4]), ds.spec[[1, 3]])
    st = fit.init(jax.random.key(0))
    st, m1 = fit.segment(st)
    st, m2 = fit.segment(st)
    assert float(m2["bc"][-5:].mean()) < 0.7 * float(m1["bc"][:5].mean()), (m1["bc"], m2["bc"])
    assert fit.evaluate(st.params).shape == (2, 1)


def test_finetune_trains_one_copy_per_spec(lqr_data):
    env, ds = lqr_data
    cfg = T.FitConfig(algo="meta", epochs=1, eval_every=1, eval_episodes=1)
    fit = MT.make_meta_fit(cfg, env, D.flatten(ds, [0, 2, 4]), ds.spec[[1, 3]])
    st = fit.init(jax.random.key(0))
    tuned = MT.finetune(fit, st.params, D.flatten(ds, [1, 3]))
    leaf0 = jax.tree_util.tree_leaves(st.params)[0]
    leaf = jax.tree_util.tree_leaves(tuned)[0]
    assert leaf.shape == (2, *leaf0.shape)
    assert float(jnp.abs(leaf[0] - leaf0).max()) > 0 and float(jnp.abs(leaf[0] - leaf[1]).max()) > 0
    r = MT.evaluate_finetuned(fit, env, tuned, ds.spec[[1, 3]], 1, jax.random.key(3))
    assert r.shape == (2, 1) and bool(jnp.all(jnp.isfinite(r)))


def test_unequal_spec_counts_train_and_finetune(lqr_data):
    """Demonstrations cut at success leave specs with different transition counts: the MAML
    sampler draws only each spec's own rows and fine-tuning takes fewer batches for a shorter
    spec (no Adam step on an empty batch); a spec without rows is refused."""
    env, ds = lqr_data
    flat = D.flatten(ds, [0, 1])
    short = np.flatnonzero(flat.task_id == 1)[:40]        # spec 1 keeps 40 rows
    keep = np.concatenate([np.flatnonzero(flat.task_id == 0), short])
    flat = flat._replace(**{k: getattr(flat, k)[keep] for k in
                            ("task_id", "obs", "action", "next_obs", "reward", "discount",
                             "value")})
    obs, _ = MT.group_by_task(flat, 2, ("obs", "action"), int(np.bincount(flat.task_id).max()))
    np.testing.assert_array_equal(obs[1, :40], flat.obs[flat.task_id == 1])
    perm = np.asarray(MT.valid_permutation(jax.random.key(0), 10, 4))
    assert sorted(perm[:4]) == [0, 1, 2, 3] and sorted(perm[4:]) == list(range(4, 10))
    cfg = T.FitConfig(algo="meta", epochs=2, eval_every=1, eval_episodes=1)
    fit = MT.make_meta_fit(cfg, env, flat, ds.spec[[2]])
    st, m = fit.segment(fit.init(jax.random.key(0)))
    assert np.isfinite(float(m["loss"][-1]))
    tuned = MT.finetune(fit, st.params, flat, MT.MetaConfig(finetune_batch=32))
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree_util.tree_leaves(tuned))
    empty = flat._replace(task_id=np.zeros_like(flat.task_id))
    with pytest.raises(ValueError, match="transitions for every spec"):
        MT.make_meta_fit(cfg, env, empty, ds.spec[[2]])
