"""Context methods as plug-ins: every preset's gradient routing as exact zeros, a method defined
in this file (not in the package) trained through ``make_train``, an env defined here trained
without registering it, and swept hyperparameters as pytree leaves."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hyperjax as hj
from hyperjax import methods
from hyperjax.agents import agent as agent_mod
from hyperjax.agents import replay as rb
from hyperjax.agents.agent import GROUPS
from hyperjax.envs import contexts
from hyperjax.envs.core import Env
from hyperjax.methods import ContextMethod
from hyperjax.nets.networks import Cond

TINY = dict(total_steps=20, eval_every=10, learning_starts=100, eval_episodes=1)


def _program(algo, **kw):
    return hj.make_program(hj.Config(algo=algo, **{**TINY, **kw}))


def _batch(prog, key):
    K, T = prog.agent.window_size, prog.env.episode_length
    buf = prog.init(key).replay._replace(episodes=jnp.int32(2), t=jnp.int32(T))
    rng = np.random.default_rng(0)
    buf = jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape), x.dtype)
                       if x.dtype == jnp.float32 else x, buf)
    return rb.sample(buf, key, 12, T, K)


def _moved(grads) -> set[str]:
    """The parameter groups with a non-zero gradient."""
    out = set()
    for name in GROUPS:
        leaves = jax.tree.leaves(getattr(grads, name))
        if any(float(jnp.max(jnp.abs(x))) > 0 for x in leaves):
            out.add(name)
    return out


def _expected(m):
    """What each loss may move (the authors' `dmash/contexts/sac.py`; the grid's ``rl_losses``)."""
    aux = {"method"} if m.has_aux() else None
    critic = {"critic"} | ({"method"} if "critic" in m.rl_losses else set())
    # the actor loss reaches the method through the actor's z, or through Q's z (the authors'
    # critic-trained encoder also learns from the actor loss's path through Q)
    actor = {"actor"} | ({"method"} if m.rl_losses else set())
    return aux, critic, actor


@pytest.mark.parametrize("algo", methods.names())
def test_gradient_routing_of_every_preset_is_exact(algo):
    """Gradients of each loss w.r.t. every parameter group: exactly zero outside the groups the
    method routes it to, non-zero inside."""
    prog = _program(algo)
    agent, m = prog.agent, prog.agent.method
    state = prog.init(jax.random.PRNGKey(0))
    params, hp = state.agent.params, state.agent.hparams
    batch = _batch(prog, jax.random.PRNGKey(1))
    ctx = jnp.asarray(prog.sets.train)[batch.context_id]
    k = jax.random.PRNGKey(3)
    aux, critic, actor = _expected(m)
    g_q = jax.grad(lambda p: agent.critic_loss(p, batch, ctx, k, hp)[0])(params)
    g_pi = jax.grad(lambda p: agent.actor_loss(p, batch, ctx, k, hp)[0])(params)
    assert _moved(g_q) == critic, (algo, _moved(g_q))
    assert _moved(g_pi) == actor, (algo, _moved(g_pi))
    if aux is None:
        assert not m.has_aux()
    else:
        g = jax.grad(lambda p: agent.aux_loss(p.method, batch, k, hp)[0])(params)
        assert _moved(g) == aux
        # the dynamics loss trains every method group: encoder, model (and its hypernet)
        for group, sub in g.method.items():
            assert max(float(jnp.max(jnp.abs(x))) for x in jax.tree.leaves(sub)) > 0, group


# one preset (both RL losses routed) in the default suite, the rest under -m slow
RL_ROUTED = [n if n == "dma_sh_actor_critic_grad" else pytest.param(n, marks=pytest.mark.slow)
             for n in methods.PRESETS if methods.get(n).rl_losses]


@pytest.mark.parametrize("algo", RL_ROUTED)
def test_rl_losses_step_only_the_encoder_like_torch(algo):
    """The authors step ``dce_optimizer`` (the encoder) after each RL loss and the dynamics
    model's ``fm_optimizer`` after the dynamics loss only; torch's Adam skips parameters whose
    gradient is None. So one update moves the dynamics group by exactly one Adam step of the
    dynamics loss (stepping it again on the RL losses' exact-zero gradients would move it by
    momentum), and every encoder leaf has a gradient from each routed RL loss (nothing in the
    stepped group is a torch None)."""
    prog = _program(algo)
    agent, m = prog.agent, prog.agent.method
    state = prog.init(jax.random.PRNGKey(0)).agent
    batch = _batch(prog, jax.random.PRNGKey(1))
    contexts = jnp.asarray(prog.sets.train)
    ctx = contexts[batch.context_id]
    key = jax.random.PRNGKey(5)
    hp = state.hparams
    # a momentum that zero gradients would carry on: Adam states after one dynamics step
    update = jax.jit(agent.update)
    for _ in range(2):
        new, _ = update(state, batch, contexts, key, jnp.bool_(True))
        state = state.replace(opt_state=new.opt_state)
    p, o = state.params, state.opt_state
    new, _ = update(state, batch, contexts, key, jnp.bool_(True))
    if m.has_aux():
        k_m = jax.random.split(key, 3)[0]
        g = jax.grad(lambda mp: agent.aux_loss(mp, batch, k_m, hp)[0])(p.method)
        want, want_o = jax.jit(lambda: agent_mod._step_groups(p.method, o.method, g,
                                                              hp.model_lr))()
        for a, b in zip(jax.tree.leaves(new.params.method["dynamics"]),
                        jax.tree.leaves(want["dynamics"])):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)  # rounding: ~3e-7
        for a, b in zip(jax.tree.leaves(new.opt_state.method["dynamics"]),
                        jax.tree.leaves(want_o["dynamics"])):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9)
    losses = {"critic": lambda pp: agent.critic_loss(pp, batch, ctx, key, hp)[0],
              "actor": lambda pp: agent.actor_loss(pp, batch, ctx, key, hp)[0]}
    for loss in m.rl_losses:
        g = jax.grad(losses[loss])(p)
        for path, leaf in jax.tree_util.tree_leaves_with_path(g.method["encoder"]):
            assert float(jnp.max(jnp.abs(leaf))) > 0, (algo, loss, path)


def _four_updates(prog, agent):
    """Parameters after four jitted updates of ``agent`` from the program's initial state."""
    batch = _batch(prog, jax.random.PRNGKey(1))
    ctx = jnp.asarray(prog.sets.train)
    st = prog.init(jax.random.PRNGKey(2)).agent
    upd = jax.jit(agent.update)
    for i in range(4):
        st, _ = upd(st, batch, ctx, jax.random.PRNGKey(10 + i), jnp.bool_(i % 2 == 0))
    return jax.tree.leaves(st.params)


def _plain_agent(prog):
    plain = agent_mod.Agent(prog.agent.config, prog.agent.method, prog.agent.shapes)
    plain.hoist_encoder = False
    return plain


@pytest.mark.parametrize("algo", ["dma_sh", pytest.param("dma_pearl", marks=pytest.mark.slow)])
def test_faster_update_equals_the_plain_one(algo):
    """The update's speed-up against the plain computation, on a short run of updates:
    encoding the actor iterations' z in one batched call before the loop is bit for bit the
    same as encoding inside each iteration."""
    prog = _program(algo)
    for a, b in zip(_four_updates(prog, prog.agent), _four_updates(prog, _plain_agent(prog))):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow  # a third update program (~12 s); test_nets checks the LSTM gradient itself
def test_hand_written_lstm_gradient_moves_the_update_by_rounding(monkeypatch):
    """The LSTM's hand-written gradient moves the parameters by float rounding only (autodiff
    of the unrolled recurrence instead; measured up to 4e-5 after 4 updates, most parameters
    within 1e-6)."""
    import hyperjax.nets.encoder as enc_mod
    prog = _program("dma_sh")
    plain = _four_updates(prog, _plain_agent(prog))
    monkeypatch.setattr(enc_mod, "lstm_last_hidden", lambda *a: enc_mod._lstm_steps(*a)[0])
    # Adam normalises each step, so a rounding difference in a near-zero gradient can move a
    # parameter by a fraction of a step (lr 3e-4): bound it by a third of one
    for a, b in zip(plain, _four_updates(prog, _plain_agent(prog))):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_shared_omega_is_the_dynamics_models_and_lifting_reaches_eta():
    """DMA*-SH: the actor's adapter uses h_eta(z); with the stop-gradient lifted (shadow
    gradients only) the actor's objective reaches eta, so the zeros above are its doing."""
    prog = _program("dma_sh")
    agent = prog.agent
    state = prog.init(jax.random.PRNGKey(0))
    params = state.agent.params
    batch = _batch(prog, jax.random.PRNGKey(1))
    k = jax.random.PRNGKey(3)

    def lifted(method_params):
        p = params.replace(method=method_params)
        z = agent.encode(p, batch.window, k, True)
        cond_a, _ = agent.cond_from_z(p, z, stop_gradient=False)
        return jnp.sum(agent.actor.apply(p.actor, batch.obs, cond_a)[0])

    g = jax.grad(lifted)(params.method)
    assert max(float(jnp.max(jnp.abs(x))) for x in jax.tree.leaves(g["dynamics"])) > 0


def test_aware_hypernet_shared_critic_uses_the_actors_omega():
    prog = _program("aware_hypernet_shared")
    params = prog.init(jax.random.PRNGKey(0)).agent.params
    assert "hypernet" in str(jax.tree_util.tree_structure(params.actor))
    assert "hypernet" not in str(jax.tree_util.tree_structure(params.critic))
    ctx = jnp.asarray(prog.sets.train[:3])
    cond_a, cond_q = prog.agent.condition(params, None, ctx, jax.random.PRNGKey(0), False, None)
    from hyperjax.nets.networks import own_omega
    om = own_omega(params.actor, ctx)
    np.testing.assert_array_equal(cond_q.omega.w_down, om.w_down)
    np.testing.assert_array_equal(cond_a.vec, ctx)


def test_unaware_default_trains_in_the_default_context_only():
    prog = _program("unaware_default")
    state = prog.init(jax.random.PRNGKey(0))
    assert state.replay.obs.shape[0] == 1  # one training env: the default context
    state, m = jax.jit(hj.make_train(prog.cfg))(jax.random.PRNGKey(0))
    assert m["eval_return"].shape == (3, 3, 20)  # evaluated on the three 20-context sets


def test_unaware_default_trains_and_is_evaluated_in_the_authors_ode_default():
    """``--method unaware_default`` trains in ``CONTEXT_DEFAULTS``' defaults, (0, 0) on ODE
    (``dmash/contexts/context.py``), not the env's constructor default (1, 0); its train split
    is evaluated there too (the authors' ``eval_train_envs`` are the training contexts)."""
    from hyperjax import train
    cfg = hj.Config(env="ode", algo="unaware_default", **{**TINY, "learning_starts": 200})
    _, env, _, _, lay = train._setup(cfg, None, (), None)
    np.testing.assert_array_equal(env.default_context, [1.0, 0.0])
    np.testing.assert_array_equal(lay.train_ctx, [[0.0, 0.0]])
    split_rows = np.asarray(lay.eval_ctx).reshape(3, lay.n_eval, 1, 2)
    np.testing.assert_array_equal(split_rows[0], 0.0)
    sets = hj.context_sets("ode")
    np.testing.assert_array_equal(split_rows[1, :, 0], sets.eval_in)
    # every other method evaluates its train split on the 20 training contexts
    *_, lay_dr = train._setup(dataclasses.replace(cfg, algo="dr"), None, (), None)
    np.testing.assert_array_equal(np.asarray(lay_dr.eval_ctx).reshape(3, 20, 1, 2)[0, :, 0],
                                  sets.train)


class OwnContextGate(ContextMethod):
    """A method defined outside the package: the true context through a fixed gate, no
    parameters of its own (one class, one ``register``)."""

    name = "test_gate"
    policy_merge = "concat"
    q_merge = "concat"

    def condition(self, shapes, params, window, context, key, training, hp):
        gated = jnp.tanh(context)
        return Cond(vec=gated), Cond(vec=gated)


def test_a_method_defined_here_trains_through_make_train():
    methods.register(OwnContextGate(), replace=True)
    try:
        cfg = hj.Config(algo="test_gate", **TINY)
        state, m = jax.jit(hj.make_train(cfg))(jax.random.PRNGKey(0))
        assert np.isfinite(m["q_loss"]).all() and m["aer"].shape == (3, 3)
        # its conditioning is in the networks: the actor's first layer takes obs + 2 factors
        from hyperjax.nets.networks import TORSO
        k = state.agent.params.actor["params"][TORSO]["TorchDense_0"]["kernel"]
        assert k.shape == (4 + 2, 256)
        with pytest.raises(ValueError, match="registered already"):
            methods.register(OwnContextGate())
    finally:   # later tests in this process list the registry (the CLI's --algo help)
        methods.unregister("test_gate")
    assert "test_gate" not in methods.names()


class Pendulumish(Env):
    """An env defined here: x' = x + 0.1 * gain * a, reward -x^2; never registered."""

    name = "test_line"
    obs_dim = 1
    action_dim = 1
    episode_length = 100
    factors = ("gain",)
    _default_context = (1.0,)
    varied = (contexts.Factor("gain", 1.0, (0.5, 1.5), (0.1, 2.0)),)

    def _reset(self, key, context):
        return jax.random.uniform(key, (1,), jnp.float32, -1.0, 1.0)

    def _step(self, key, x, action, context):
        x = jnp.clip(x + 0.1 * context[0] * action, -2.0, 2.0)
        return x, -x[0] ** 2, jnp.zeros((), bool)

    def _obs(self, x):
        return x


def test_an_env_with_a_wrong_obs_dim_or_reward_shape_is_named_at_trace_time():
    class WrongObs(Pendulumish):
        obs_dim = 2

    class BatchedReward(Pendulumish):
        def _step(self, key, x, action, context):
            x, r, done = super()._step(key, x, action, context)
            return x, jnp.stack([r, r]), done

    key, c = jax.random.PRNGKey(0), jnp.ones(1)
    with pytest.raises(ValueError, match=r"test_line.reset: _obs gives shape \(1,\), but "
                                         r"obs_dim = 2"):
        jax.eval_shape(WrongObs().reset, key, c)
    env = BatchedReward()
    state, _ = env.reset(key, c)
    with pytest.raises(ValueError, match=r"test_line.step: _step's reward has shape \(2,\), "
                                         r"expected a scalar"):
        jax.eval_shape(env.step, key, state, jnp.zeros(1), c)


def test_a_registered_env_is_taken_by_name():
    """``envs.register(TaskInfo(...))``: the name then works wherever a task name does
    (``make_env``, ``Config``, ``make_program``, reports' normalisation); a taken name, an
    object that is not an ``Env`` and normalising without ``return_bounds`` are refused."""
    from hyperjax import envs
    from hyperjax.analysis.stats import normalise
    info = envs.TaskInfo("test_line_reg", lambda contexts=None: Pendulumish(), "a line",
                         return_bounds=(-400.0, 0.0))
    try:
        envs.register(info)
        assert "test_line_reg" in hj.env_names() and not envs.is_mjx("test_line_reg")
        assert isinstance(hj.make_env("test_line_reg"), Pendulumish)
        cfg = hj.Config(env="test_line_reg", algo="concat", **TINY).resolved()
        assert cfg.context_size == 24 and envs.episode_length("test_line_reg") == 100
        prog = hj.make_program(cfg)                      # builds; nothing compiles here
        assert prog.sets.train.shape == (20, 1) and prog.env.name == "test_line"
        np.testing.assert_allclose(normalise(-100.0, "test_line_reg"), 0.75)
        with pytest.raises(ValueError, match="task 'test_line_reg' is registered already"):
            envs.register(info)
        with pytest.raises(ValueError, match=r"register\('x'\): make\(\) gave int, not a "):
            envs.register(envs.TaskInfo("x", lambda contexts=None: 3))
        envs.register(dataclasses.replace(info, name="test_line_nb", return_bounds=None))
        with pytest.raises(ValueError, match="task 'test_line_nb' has no return_bounds"):
            normalise(-100.0, "test_line_nb")
    finally:
        for name in ("test_line_reg", "test_line_nb", "x"):
            envs.unregister(name)
    assert "test_line_reg" not in hj.env_names()


@pytest.mark.slow
def test_a_registered_env_trains_checkpoints_and_loads_by_name(tmp_path):
    """``train_run`` and ``load_policy`` on a registered env: the run directory, its
    checkpoints and the loaded policy reproduce the run's last evaluation on eval-out."""
    from hyperjax import envs
    envs.register(envs.TaskInfo("test_line_run", lambda contexts=None: Pendulumish(),
                                return_bounds=(-400.0, 0.0)), replace=True)
    try:
        cfg = hj.Config(env="test_line_run", algo="concat", **TINY)
        out = hj.train_run(cfg, str(tmp_path / "run"), diagnostics=False, log=None)
        assert np.isfinite(out.scores["eval_out"][0])
        params, policy = hj.load_policy(str(tmp_path / "run"))
        prog = hj.make_program(cfg)
        ret = hj.evaluate(policy, params, prog.env, prog.sets.eval_out, jax.random.PRNGKey(1))
        assert ret.shape == (20, 1) and np.isfinite(ret).all()
    finally:
        envs.unregister("test_line_run")


@pytest.mark.slow  # docs/library.md's Line env (tests/test_readme.py) trains one by default
def test_an_unregistered_env_and_context_sets_train():
    env = Pendulumish()
    assert "test_line" not in hj.env_names()
    sets = contexts.make_context_sets(env.varied)
    for algo in ("concat", "dma_sh"):
        cfg = hj.Config(env="test_line", algo=algo, **TINY)
        prog = hj.make_program(cfg, sets, env=env)
        assert prog.cfg.context_size == 24
        state, m = jax.jit(lambda k: jax.lax.scan(prog.segment, prog.init(k),
                                                  jnp.arange(prog.n_segments)))(
            jax.random.PRNGKey(0))
        assert np.isfinite(m["q_loss"]).all() and m["eval_return"].shape == (3, 3, 20)
    with pytest.raises(ValueError, match="unknown env 'test_line'"):
        hj.make_program(hj.Config(env="test_line", algo="dr", **TINY))


def test_every_sweepable_config_field_sweeps():
    """Each ``Config`` field marked ``sweep=True`` is an ``HParams`` leaf that ``--sweep``
    accepts and that one vmapped update reads per run: changing it alone changes that run's
    update and no other run's, and each run equals its separate update to rounding. A new
    sweepable hyperparameter (one ``Config`` field, its ``HParams`` field and the code that
    reads it) is covered here without listing it."""
    from hyperjax.config import parse_sweep
    names = hj.Config.sweepable()
    assert hj.HParams.names() == names, "HParams' fields must be Config.sweepable()'s, in order"
    assert set(parse_sweep([f"{n}=0.5" for n in names if n != "target_entropy"]))
    prog = hj.make_program(hj.Config(algo="dma_star", **TINY), sweep=names)
    agent = prog.agent
    batch = _batch(prog, jax.random.PRNGKey(1))
    ctx = jnp.asarray(prog.sets.train)
    base = agent.default_hparams()
    other = dict(q_lr=3e-3, actor_lr=1e-3, alpha_lr=3e-3, model_lr=1e-3, tau=0.3, gamma=0.9,
                 target_entropy=-0.25, mask_rate=0.5)
    hps = [base] + [base.replace(**{n: other.get(n, 0.5 * getattr(base, n))}) for n in names]
    hps.append(base.replace(**{n: other.get(n, 0.5 * getattr(base, n)) for n in names}))
    key = jax.random.PRNGKey(0)
    inits = [agent.init(key, hp) for hp in hps]
    states = jax.tree.map(lambda *x: jnp.stack(x), *inits)
    out = jax.jit(jax.vmap(agent.update, (0, None, None, None, None)), static_argnums=4)(
        states, batch, ctx, key, True)[0]
    leaves = [np.asarray(x) for x in jax.tree.leaves(out.params)]
    for i, name in enumerate(names, start=1):
        assert any(not np.array_equal(x[i], x[0]) for x in leaves), f"{name} is not read"
    # hyperparameters are pytree leaves, a sweep is a vmap: the vmapped runs equal the
    # separate updates (to rounding), here the defaults and every name changed at once
    upd = jax.jit(agent.update, static_argnums=4)
    singles = [upd(inits[i], batch, ctx, key, True)[0] for i in (0, -1)]
    for i, single in zip((0, -1), singles):
        for x, y in zip(jax.tree.leaves(single.params), leaves):
            np.testing.assert_allclose(y[i], np.asarray(x), rtol=1e-4, atol=1e-5)
    assert all(not np.allclose(a, b) for a, b in zip(
        jax.tree.leaves(singles[0].params.critic), jax.tree.leaves(singles[1].params.critic)))


def test_swept_mask_rate_equals_the_preset_constant():
    """mask_rate read from HParams (swept) gives the update of a method built with that rate
    as a constant (to rounding)."""
    base = hj.Config(algo="dma_star", **TINY)
    prog_const = hj.make_program(dataclasses.replace(base, mask_rate=0.5))
    prog_swept = hj.make_program(base, sweep=("mask_rate",))
    key = jax.random.PRNGKey(0)
    batch = _batch(prog_const, jax.random.PRNGKey(1))
    ctx = jnp.asarray(prog_const.sets.train)
    s_const = prog_const.init(key)
    s_swept = prog_swept.init(key, {"mask_rate": 0.5})
    a = jax.jit(prog_const.agent.update, static_argnums=4)(s_const.agent, batch, ctx, key,
                                                            True)[0]
    b = jax.jit(prog_swept.agent.update, static_argnums=4)(s_swept.agent, batch, ctx, key,
                                                            True)[0]
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
        np.testing.assert_allclose(np.asarray(y), np.asarray(x), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="cannot sweep mask_rate: 'dr' has no context"):
        hj.make_program(hj.Config(algo="dr", **TINY), sweep=("mask_rate",))
    with pytest.raises(ValueError, match="cannot sweep 'batch_size'"):
        hj.make_program(base, sweep=("batch_size",))
    # ``lr`` stands for the four learning rates, as in the CLI's --sweep; a value for a name
    # the program does not sweep is refused (it would be ignored), before anything traces
    prog_lr = hj.make_program(base, sweep=("lr", "tau"))
    assert prog_lr.agent.config.swept == ("q_lr", "actor_lr", "alpha_lr", "model_lr", "tau")
    with pytest.raises(ValueError, match=r"hparams gamma: not swept by this program \(swept: "
                                         r"q_lr, actor_lr, alpha_lr, model_lr, tau\)"):
        prog_lr.init(jax.random.PRNGKey(0), {"lr": 1e-3, "gamma": 0.9})
