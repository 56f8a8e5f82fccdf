"""Norms, the hypernetwork adapter (Theorem A.1 witness), the encoder, gradient routing."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hyperjax as hj
from hyperjax.agents import replay as rb
from hyperjax.nets.encoder import ContextEncoder
from hyperjax.nets.hypernet import HyperNet, adapter_apply, adapter_size
from hyperjax.nets.layers import avg_l1_norm, sim_norm
from hyperjax.nets.networks import Cond


def test_avg_l1_norm():
    x = jnp.array([[1.0, -3.0, 2.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    y = avg_l1_norm(x)
    np.testing.assert_allclose(y[0], x[0] / 1.5)
    np.testing.assert_allclose(jnp.mean(jnp.abs(y[0])), 1.0)
    np.testing.assert_array_equal(y[1], 0.0)  # max(mean|x|, 1e-8) guards zero rows


def test_sim_norm_groups_are_simplices():
    x = jax.random.normal(jax.random.PRNGKey(0), (5, 8)) * 3
    y = sim_norm(x, 4)
    g = y.reshape(5, 2, 4)
    np.testing.assert_allclose(g.sum(-1), 1.0, rtol=1e-6)
    assert (y >= 0).all() and (y <= 1).all()
    np.testing.assert_allclose(g[:, 0], jax.nn.softmax(x[:, :4]), rtol=1e-6)
    with pytest.raises(ValueError, match="does not divide"):
        sim_norm(jnp.zeros((1, 6)), 4)


def _witness_params():
    """Hand-set h_eta and adapter so that relu(x + g(x; h(z))) read out by w gives s * z."""
    hn = HyperNet()
    params = jax.tree.map(jnp.zeros_like, hn.init(jax.random.PRNGKey(0), jnp.zeros((1, 8))))
    p = jax.tree.map(np.array, params)["params"]
    d0, d1 = p["TorchDense_0"], p["TorchDense_1"]
    d0["kernel"][0, 0], d0["kernel"][0, 1] = 1.0, -1.0      # u1 = relu(z), u2 = relu(-z)
    d1["kernel"][0, 0], d1["kernel"][1, 1] = 1.0, 1.0        # identity on (u1, u2)
    wd = p["w_down"]                                          # W_down: h1 = x1, h2 = x4
    wd["bias"][0 * 256 + 0] = 1.0
    wd["bias"][1 * 256 + 3] = 1.0
    wu = p["w_up"]                                            # W_up[i, j] at i * 32 + j
    wu["kernel"][0, 0 * 32 + 0] = 1.0; wu["bias"][0 * 32 + 0] = -1.0   # g1 = (u1 - 1) h1
    wu["kernel"][1, 1 * 32 + 0] = 1.0                                   # g2 = u2 h1
    wu["kernel"][0, 2 * 32 + 1] = 1.0                                   # g3 = u1 h2
    wu["kernel"][1, 3 * 32 + 1] = 1.0; wu["bias"][3 * 32 + 1] = -1.0   # g4 = (u2 - 1) h2
    return hn, {"params": jax.tree.map(jnp.asarray, p)}


def test_hand_set_hypernet_adapter_reproduces_s_times_z_exactly():
    """Notes §8, Theorem A.1: f*(s, z) = s * z is exactly representable by H_hyper."""
    hn, params = _witness_params()
    grid = jnp.arange(-8, 9) / 4.0
    s, z = [a.ravel() for a in jnp.meshgrid(grid, grid)]
    x = jnp.zeros((s.shape[0], 256)).at[:, 0].set(jax.nn.relu(s)).at[:, 3].set(jax.nn.relu(-s))
    zin = jnp.zeros((s.shape[0], 8)).at[:, 0].set(z)
    y = adapter_apply(x, hn.apply(params, zin))
    f = y[:, 0] - y[:, 1] - y[:, 2] + y[:, 3]
    np.testing.assert_array_equal(f, s * z)
    assert adapter_size() == 16_672


def test_hypernet_outputs_per_sample_weights():
    hn = HyperNet()
    z = jax.random.uniform(jax.random.PRNGKey(0), (3, 8))
    params = hn.init(jax.random.PRNGKey(1), z)
    om = hn.apply(params, z)
    assert om.w_down.shape == (3, 32, 256) and om.w_up.shape == (3, 256, 32)
    assert om.b_down.shape == (3, 32) and om.b_up.shape == (3, 256)
    n = sum(x.size for x in jax.tree.leaves(params))
    # ~1.09 M (the authors' `dmash/contexts/model.py`)
    assert n == 8 * 64 + 64 + 64 * 64 + 64 + 64 * 16_672 + 16_672
    x = jax.random.normal(jax.random.PRNGKey(2), (3, 256))
    one = adapter_apply(x[1:2], jax.tree.map(lambda a: a[1:2], om))
    np.testing.assert_allclose(adapter_apply(x, om)[1:2], one, rtol=1e-5, atol=1e-6)


def _encoder(**kw):
    return ContextEncoder(obs_dim=4, action_dim=2, context_size=24, **kw)


def test_encoder_shapes_modes_and_masking():
    enc = _encoder(mask_rate=0.4)
    w = jax.random.normal(jax.random.PRNGKey(0), (16, 24, 10))
    p = enc.init(jax.random.PRNGKey(1), w, jax.random.PRNGKey(2), True)
    assert enc.subset_size == 4
    z_eval = enc.apply(p, w, None, False).z
    assert z_eval.shape == (16, 8)
    np.testing.assert_allclose(z_eval.reshape(16, 2, 4).sum(-1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(enc.apply(p, w, None, False).z, z_eval)  # eval: deterministic
    z1 = enc.apply(p, w, jax.random.PRNGKey(3), True).z
    z2 = enc.apply(p, w, jax.random.PRNGKey(4), True).z
    assert not np.allclose(z1, z2)  # training: shuffle, mask and subset are random
    # eval mode reads exactly the equidistant timesteps linspace(0, 23, 4) = 0, 7, 15, 23
    w2 = w.at[:, 1:7].set(99.0).at[:, 8:15].set(-99.0)
    np.testing.assert_allclose(enc.apply(p, w2, None, False).z, z_eval, rtol=1e-6)
    with pytest.raises(ValueError, match=r"window must be \[B, 24, 10\]"):
        enc.apply(p, w[:, :5], None, False)


def test_bernoulli_at_draws_the_same_bits_as_the_full_bernoulli():
    """``bernoulli_at`` computes only the indexed elements of ``jax.random.bernoulli``, bit for
    bit (partitionable threefry: an element's bits depend on the key and its index alone)."""
    from hyperjax.nets.encoder import bernoulli_at
    key = jax.random.PRNGKey(7)
    shape = (6, 128, 3)
    pos = jax.random.randint(jax.random.PRNGKey(8), (6, 25), 0, 128)
    index = (jnp.arange(6)[:, None, None], pos[..., None], jnp.arange(3))
    for p in (0.6, jnp.float32(0.25)):
        full = jax.random.bernoulli(key, p, shape)
        np.testing.assert_array_equal(bernoulli_at(key, p, shape, index), full[index])
        np.testing.assert_array_equal(jax.jit(bernoulli_at, static_argnums=2)(
            key, p, shape, index), full[index])
    typed = jax.random.key(7)
    np.testing.assert_array_equal(bernoulli_at(typed, 0.6, shape, index),
                                  jax.random.bernoulli(typed, 0.6, shape)[index])


def test_encoder_mask_drawn_only_where_read_equals_the_full_mask():
    """The training encoder draws the input mask only at the n timesteps the LSTM reads; z is
    bit for bit the authors' order: shuffle, mask all K, embed all K, select n."""
    import hyperjax.nets.encoder as enc_mod
    enc = ContextEncoder(obs_dim=5, action_dim=1, context_size=128, mask_rate=0.4)
    w = jax.random.normal(jax.random.PRNGKey(0), (12, 128, 11))
    p = enc.init(jax.random.PRNGKey(1), w, jax.random.PRNGKey(2), True)
    key = jax.random.PRNGKey(3)
    z = enc.apply(p, w, key, True).z

    def reference(params, window, key):
        e = params["params"]
        k_perm, k_mask, k_sub, _ = jax.random.split(key, 4)
        window = window[:, jax.random.permutation(k_perm, 128)]
        keep = jax.random.bernoulli(k_mask, 1.0 - 0.4, (12, 128, 3))
        window = window * keep[..., np.repeat([0, 1, 2], [5, 1, 5])].astype(window.dtype)
        x = avg_l1_norm(window @ e["embed"]["kernel"])
        idx = jnp.sort(jax.lax.top_k(jax.random.uniform(k_sub, (12, 128)), 25)[1], axis=-1)
        x = jnp.take_along_axis(x, idx[..., None], axis=1)
        lstm = e["lstm"]
        h = enc_mod.lstm_last_hidden(x, lstm["w_ih"], lstm["w_hh"],
                                     lstm["b_ih"] + lstm["b_hh"])
        return sim_norm(h @ e["summarize"]["kernel"], 4)

    np.testing.assert_array_equal(z, reference(p, w, key))


def test_lstm_gradient_equals_autodiff_to_rounding():
    """``lstm_last_hidden``: the forward is the plain recurrence bit for bit; its hand-written
    gradient (weight gradients as one matmul over the steps) equals autodiff of the unrolled
    recurrence to float rounding. 8 steps (the runs use 4 or 25, ``int(0.2 K)``): the code is
    the same at every length, and the unrolled autodiff reference compiles in a third of 25's
    time."""
    from hyperjax.nets.encoder import _lstm_steps, lstm_last_hidden
    ks = jax.random.split(jax.random.PRNGKey(0), 4)
    args = (jax.random.normal(ks[0], (32, 8, 32)),
            0.2 * jax.random.normal(ks[1], (32, 128)),
            0.2 * jax.random.normal(ks[2], (32, 128)),
            0.2 * jax.random.normal(ks[3], (128,)))
    plain = lambda *a: _lstm_steps(*a)[0]
    np.testing.assert_array_equal(jax.jit(lstm_last_hidden)(*args), jax.jit(plain)(*args))
    loss = lambda f: jax.jit(jax.grad(lambda *a: jnp.sum(jnp.sin(3 * f(*a))),
                                      argnums=(0, 1, 2, 3)))
    for ours, ref in zip(loss(lstm_last_hidden)(*args), loss(plain)(*args)):
        np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-6 * float(jnp.abs(ref).max()))


def test_pearl_encoder_kl_and_mean_at_eval():
    enc = _encoder(mask_rate=0.0, input_norm=False, output_norm=False, pearl=True)
    w = jax.random.normal(jax.random.PRNGKey(0), (4, 24, 10))
    p = enc.init(jax.random.PRNGKey(1), w, jax.random.PRNGKey(2), True)
    out = enc.apply(p, w, jax.random.PRNGKey(3), True)
    ev = enc.apply(p, w, None, False)
    assert (out.kl > 0).all() and out.z.shape == (4, 8)
    assert not np.allclose(out.z, ev.z)


def _program(algo, **kw):
    cfg = hj.Config(algo=algo, total_steps=200, eval_every=100, learning_starts=100,
                    eval_episodes=1, **kw)
    return hj.make_program(cfg)


def _filled_replay(prog, key):
    """A replay with random data written through the public start_episode/add API."""
    K, T = prog.cfg.context_size, prog.env.episode_length
    buf = prog.init(key).replay
    rng = np.random.default_rng(0)
    r = lambda *s: jnp.asarray(rng.normal(size=s), jnp.float32)
    for _ in range(2):
        buf = rb.start_episode(buf, r(20, K, 4), r(20, K, 2), r(20, K, 4))
        for _ in range(T):
            buf = rb.add(buf, K, r(20, 4), r(20, 2), r(20), r(20, 4), jnp.zeros(20, bool),
                         jnp.zeros(20, bool))
    return buf


def test_dma_sh_actor_and_critics_use_the_models_omega():
    prog = _program("dma_sh")
    params = prog.init(jax.random.PRNGKey(0)).agent.params
    # no hypernetwork of their own: the only generated weights are the dynamics model's
    assert "hypernet" not in str(jax.tree_util.tree_structure(params.actor))
    assert "hypernet" not in str(jax.tree_util.tree_structure(params.critic))
    assert "hypernet" in str(jax.tree_util.tree_structure(params.method["dynamics"]))
    da = _program("da").init(jax.random.PRNGKey(0)).agent.params
    assert "hypernet" in str(jax.tree_util.tree_structure(da.actor))
    assert da.method == {}


def test_window_sampling_returns_the_right_transitions():
    prog = _program("dma_sh")
    K, T = 24, 100
    buf = prog.init(jax.random.PRNGKey(0)).replay
    # encode (context, episode, row) into the data so every sample can be traced back
    code = lambda c, e, r: c * 1e4 + e * 1e3 + r
    for e in range(3):
        rows = jnp.arange(K)[None, :] + jnp.zeros((20, 1))
        cs = jnp.arange(20)[:, None] + jnp.zeros((1, K))
        warm = code(cs, e, rows)
        buf = rb.start_episode(buf, jnp.repeat(warm[..., None], 4, -1),
                               jnp.repeat(warm[..., None], 2, -1),
                               jnp.repeat(warm[..., None] + 0.5, 4, -1))
        for t in range(T if e < 2 else 37):
            v = code(jnp.arange(20.0), e, K + t)
            buf = rb.add(buf, K, jnp.repeat(v[:, None], 4, -1), jnp.repeat(v[:, None], 2, -1),
                         v, jnp.repeat(v[:, None], 4, -1) + 0.5, jnp.zeros(20, bool),
                         jnp.zeros(20, bool))
    assert int(rb.num_completed(buf)) == 2  # episode 2 is being written
    b = rb.sample(buf, jax.random.PRNGKey(5), 12, T, K)
    assert b.window.shape == (240, K, 10)
    c = np.asarray(b.context_id)
    np.testing.assert_array_equal(c, np.repeat(np.arange(20), 12))
    obs = np.asarray(b.obs[:, 0])
    assert (np.floor(obs / 1e4) == c).all()  # the sample's own context
    row = obs % 1e3
    assert (row >= K).all()  # a real step, never a warm-up row
    ep = np.floor(obs % 1e4 / 1e3)
    assert (ep < 2).all()  # completed episodes only (the authors' buffer), never the current
    w_obs = np.asarray(b.window[:, :, 0])
    expect = code(c[:, None], ep[:, None], row[:, None] + np.arange(-K + 1, 1)[None])
    np.testing.assert_array_equal(w_obs, expect)  # [t-K+1 ... t] of the same episode
    np.testing.assert_array_equal(b.window[:, :, 6:], 0.5)  # delta-s = next_obs - obs
    np.testing.assert_array_equal(b.reward, obs)
    assert set(np.unique(ep).tolist()) == {0.0, 1.0}
