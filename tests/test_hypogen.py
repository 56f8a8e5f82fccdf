"""HyPoGen pipeline: spec grids, the paper's split, the LQR task and experts, the dataset format,
the models (parameter counts, θ⁰, stop-gradients, LayerNorm), the loss and schedule, the CLI."""
import dataclasses
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from cli_cases import cli_with_file_limit, run_cases

from hyperjax.hypogen import data as D
from hyperjax.hypogen import lqr, models as M, specs as S, train as T

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# --- grids and splits ---------------------------------------------------------------------------

@pytest.mark.parametrize("task,n,first,last", [
    ("cheetah_speed", 40, -10.0, 10.0), ("walker_speed", 40, -5.0, 5.0),
    ("finger_speed", 30, -15.0, 15.0), ("cheetah_length", 41, 0.3, 0.7),
    ("walker_length", 41, 0.1, 0.5), ("finger_length", 31, 0.1, 0.4),
    ("cheetah_speed_length", 90, 1.0, 10.0), ("walker_speed_length", 81, 1.0, 5.0),
    ("finger_speed_length", 105, 1.0, 15.0), ("lqr_di", 41, 0.5, 2.5),
    ("lqr_di_goal", 35, 0.5, 2.0)])
def test_spec_grids_match_tables_6_to_8(task, n, first, last):
    g = S.make_grid(task)
    assert len(g) == n and len(set(g.strings())) == n
    assert g.specs[0, 0] == first and g.specs[-1, 0] == last
    if task.endswith("_speed"):
        assert 0.0 not in g.specs and np.all(np.diff(g.specs[:, 0]) > 0)
    if task == "cheetah_speed":
        assert sorted(np.abs(g.specs[:, 0]))[:2] == [0.5, 0.5]


def test_bad_grid_name():
    with pytest.raises(ValueError, match="unknown spec task 'cheetah_sped'"):
        S.make_grid("cheetah_sped")


@pytest.mark.parametrize("task,n_train,n_test", [
    ("cheetah_speed", 7, 32), ("finger_speed", 5, 24), ("cheetah_length", 8, 32),
    ("finger_length", 6, 24)])
def test_faithful_split_reproduces_the_released_rounding(task, n_train, n_test):
    g = S.make_grid(task)
    for seed in S.PAPER_SEEDS:
        sp = S.split_specs(g, seed)
        assert (len(sp.train), len(sp.test), len(sp.unused)) == (n_train, n_test, 1)
        # The released procedure, restated: sort strings, shuffle, slice.
        order = sorted(g.strings())
        np.random.default_rng(seed).shuffle(order)
        assert [g.strings()[i] for i in sp.test] == order[:n_test]
        assert [g.strings()[i] for i in sp.train] == order[n_test:n_test + n_train]
        clean = S.split_specs(g, seed, "clean")
        assert len(clean.unused) == 0 and len(clean.train) == n_train + 1
        np.testing.assert_array_equal(clean.test, sp.test)
    assert not np.array_equal(S.split_specs(g, 123).test, S.split_specs(g, 233).test)
    assert S.spec_string([-0.5]) == "-0.5" and S.spec_string([1.0, 0.3]) == "1.0_0.3"


def test_split_bad_mode():
    with pytest.raises(ValueError, match="unknown split mode 'fair'"):
        S.split_specs(S.make_grid("lqr_di"), 0, "fair")


# --- the LQR task and its experts ---------------------------------------------------------------

def test_lqr_di_dynamics_are_exact():
    env = lqr.make_lqr_task("lqr_di_goal")
    spec = jnp.array([2.0, 0.25])
    state, ts = env.reset(jax.random.key(0), spec)
    assert np.all(np.abs(ts.obs[:2]) <= 1.0) and np.all(ts.obs[2:] == 0.0)
    state = state._replace(physics=lqr.LQRPhysics(jnp.array([0.5, -0.5]), jnp.array([0.2, 0.1])))
    a = jnp.array([0.5, -3.0])                        # second entry clips to -1
    _, ts = env.step(jax.random.key(1), state, a, spec)
    np.testing.assert_allclose(ts.obs, [0.52, -0.49, 0.2 + 0.1 * 4.0 * 0.5 / 2.0,
                                        0.1 - 0.1 * 4.0 / 2.0], rtol=1e-6)
    e = np.array([0.25, -0.75])
    cost = e @ e + 0.1 * (0.2 ** 2 + 0.1 ** 2) + 0.1 * (0.25 + 1.0)
    np.testing.assert_allclose(ts.reward, -cost, rtol=1e-6)


def test_lqr_riccati_fixed_point_and_bellman_q():
    p, k = lqr.lqr_solution(1.25)
    a, b, q, r = lqr._system(1.25)
    g = lqr.GAMMA
    rhs = q + g * a.T @ p @ a - g ** 2 * a.T @ p @ b @ np.linalg.solve(r + g * b.T @ p @ b,
                                                                        b.T @ p @ a)
    np.testing.assert_allclose(p, rhs, atol=1e-9)
    # On an unsaturated state, Q*(s, a*) = r + γ Q*(s', a*') and Q* is maximal at a*.
    spec = jnp.array([1.25, 0.25])
    ex = lqr.make_experts(np.array([[1.25, 0.25]]))
    env = lqr.make_lqr_task("lqr_di_goal")
    obs = jnp.array([0.3, 0.2, 0.05, -0.1])
    st = env.reset(jax.random.key(0), spec)[0]._replace(
        physics=lqr.LQRPhysics(obs[:2], obs[2:]))
    act = lqr.expert_action(ex.gain[0], obs, spec)
    assert np.all(np.abs(act) < 1.0)
    _, ts = env.step(jax.random.key(0), st, act, spec)
    q0 = lqr.expert_q(ex.gain[0], ex.p[0], obs, act, spec)
    q1 = lqr.expert_q(ex.gain[0], ex.p[0], ts.obs, lqr.expert_action(ex.gain[0], ts.obs, spec),
                      spec)
    np.testing.assert_allclose(q0, ts.reward + g * q1, rtol=1e-5)
    for d in (0.05, -0.05):
        assert lqr.expert_q(ex.gain[0], ex.p[0], obs, act + d, spec) < q0


# --- dataset -----------------------------------------------------------------------------------

def _lqr_dataset(episodes=2, steps=None):
    grid = S.make_grid("lqr_di")
    ex = lqr.make_experts(grid.specs)
    out = D.rollout(lqr.make_lqr_task("lqr_di"), lambda e, o, s: lqr.expert_action(e[0], o, s),
                    lambda e, o, a, s: lqr.expert_q(e[0], e[1], o, a, s), (ex.gain, ex.p),
                    jnp.asarray(grid.specs, jnp.float32), jax.random.key(0), episodes, steps)
    return grid, out


def test_dataset_round_trip_and_flatten(tmp_path):
    grid, out = _lqr_dataset(episodes=2, steps=10)
    assert out["obs"].shape == (41, 2, 10, 4) and out["value"].shape == (41, 2, 10)
    np.testing.assert_array_equal(out["obs"][:, :, 1:], out["next_obs"][:, :, :-1])
    D.save_dataset(str(tmp_path), grid.specs, out, {"task": "lqr_di"})
    ds = D.load_dataset(str(tmp_path))
    for k in D.KEYS[1:]:
        np.testing.assert_array_equal(getattr(ds, k), np.asarray(out[k]))
    np.testing.assert_array_equal(ds.spec, grid.specs.astype(np.float32))
    assert ds.meta == {"task": "lqr_di"} and np.all(ds.discount == 1.0)
    flat = D.flatten(ds, [3, 7])
    assert flat.obs.shape == (40, 4) and list(np.bincount(flat.task_id)) == [20, 20]
    np.testing.assert_array_equal(flat.obs[20:], ds.obs[7].reshape(20, 4))
    with pytest.raises(ValueError, match="missing 'value'"):
        D.save_dataset(str(tmp_path), grid.specs, {k: v for k, v in out.items() if k != "value"},
                       {})
    with pytest.raises(FileNotFoundError):
        D.load_dataset(str(tmp_path / "nope"))


# --- models ------------------------------------------------------------------------------------

def _init(model, t=2, obs=17, act=6, spec_dim=1, key=0):
    return model.init(jax.random.key(key), jnp.zeros((t, spec_dim)), jnp.zeros(4, jnp.int32),
                      jnp.zeros((4, obs)), jnp.zeros((4, act)), jnp.zeros((4, obs)))


# Parameter counts of the released modules (ReNginx/HyPoGen @b286e2f, models/hypernetworks.py and
# models/hypogen_core.py), counted by instantiating them under torch 2.13 (CPU) with the
# released configs: DoubleHeadedHyPoGen(1, 256, [obs, obs+act], [act, 1], 256, num_layers=8,
# weight_dim=128, enc_dec_dim=256, opt_block_dim=128, num_opt_mlp_layer=2,
# num_enc_dec_layer=2, dl_din_way="slice", dl_dw_way="direct", use_td=..., domain_task=...)
# (LiftCube / PickCube: the 3-layer tanh target), DoubleHeadedHyperNetwork(1, 256, [obs,
# obs+act], [act, 1], 256). sum(p.numel() for p in model.parameters()).
RELEASED_COUNTS = {
    ("hypogen", "cheetah", True): 31_692_028, ("hypogen", "cheetah", False): 16_270_104,
    ("hypogen", "lift_cube", False): 69_149_308, ("hypogen", "pick_cube", False): 70_969_540,
    ("hyperzero", "cheetah", True): 3_612_935, ("hyperzero", "lift_cube", False): 7_034_376,
    ("hyperzero", "pick_cube", False): 8_218_632,
}
DIMS = {"cheetah": (17, 6), "lift_cube": (42, 7), "pick_cube": (51, 7)}


@pytest.mark.parametrize("algo,task,use_td", sorted(RELEASED_COUNTS))
def test_parameter_counts_equal_the_released_models(algo, task, use_td):
    """HyPoGen with ``use_td=False`` (the ManiSkill config) has no Q generator; HyperZero
    keeps its Q heads (the released class always builds them) and its fixed 2-layer ReLU
    target; HyPoGen's tree includes the modules the release builds but never reads (h_N, the
    first layer's propagation)."""
    obs, act = DIMS[task]
    target = M.TargetNetConfig(3, "tanh") if task != "cheetah" and algo == "hypogen" \
        else M.TargetNetConfig()
    model = M.make_model(algo, obs, act, use_td=use_td, target=target)
    shapes = jax.eval_shape(lambda k: _init(model, obs=obs, act=act, key=k), 0)
    assert M.count_params(shapes) == RELEASED_COUNTS[algo, task, use_td]
    q_part = "q_gen" if algo == "hypogen" else "q_heads_0"
    assert (q_part in M.param_breakdown(shapes)) == (algo != "hypogen" or use_td)


def test_parameter_counts_cheetah_dims():
    """Notes §1.2, §1.7: embedding 387,328; Cond ≈ 0.46M."""
    shapes = {a: jax.eval_shape(lambda k, a=a: _init(M.make_model(a, 17, 6), key=k), 0)
              for a in ("hyperzero", "cond")}
    assert M.param_breakdown(shapes["hyperzero"])["embed"] == 387_328
    assert M.count_params(shapes["cond"]) == 459_014


def test_theta0_matters_and_lr_init():
    """Table 3 property: replacing θ⁰ by random values changes the generated policy."""
    model = M.make_model("hypogen", 4, 2, num_blocks=2)
    params = _init(model, obs=4, act=2, spec_dim=2)
    p = params["params"]["pi_gen"]
    assert p["lr_0"] == np.float32(-0.01) and p["lr_1"] == np.float32(-0.01)
    specs = jnp.array([[1.0, 0.0], [2.0, 0.5]])
    obs = jax.random.normal(jax.random.key(1), (16, 4))
    act = lambda prm: jax.vmap(lambda w: model.apply(prm, w, obs, method="act"))(
        model.apply(prm, specs, method="generate"))
    base = act(params)
    leaves = {k: v for k, v in p.items() if k.startswith("theta0")}
    rnd = {k: jax.random.normal(jax.random.key(i), v.shape) for i, (k, v) in
           enumerate(sorted(leaves.items()))}
    swapped = jax.tree_util.tree_map(lambda x: x, params)
    swapped["params"]["pi_gen"] = {**p, **rnd}
    assert float(jnp.abs(act(swapped) - base).max()) > 1e-2
    # and different specs give different policies
    assert float(jnp.abs(base[0] - base[1]).max()) > 1e-4


@pytest.mark.parametrize("algo", [pytest.param("hypogen", marks=pytest.mark.slow), "hyperzero",
                                  pytest.param("cond", marks=pytest.mark.slow), "uvfa"])
def test_init_runs_eagerly_and_equals_the_jitted_init(algo):
    """``make_fit``'s ``init`` runs op by op (XLA:CPU compiles HyPoGen's jitted init for
    ~85 s): its parameters equal the jitted init's bitwise, typed and raw keys alike.
    HyPoGen (2 blocks: each is built alike; its jitted init alone compiles ~50 s) and Cond
    (UVFA's layers) are ``slow``; HyperZero's own initialisers and UVFA's run by default."""
    model = T.make_model(algo, 2, 1, num_blocks=2)
    specs = jnp.linspace(0.5, 2.5, 8, dtype=jnp.float32)[:, None]
    f = lambda k: T.init_params(model, k, specs)
    for key in (jax.random.key(5), jax.random.PRNGKey(5)):
        for a, b in zip(jax.tree.leaves(jax.jit(f)(key)), jax.tree.leaves(f(key))):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_weight_layernorm_normalises_whole_tensor():
    ln = M.WeightLayerNorm((3, 5))
    x = jax.random.normal(jax.random.key(0), (4, 3, 5)) * 7 + 2
    y = ln.apply(ln.init(jax.random.key(1), x), x)
    np.testing.assert_allclose(y.mean((-2, -1)), 0, atol=1e-5)
    np.testing.assert_allclose(y.var((-2, -1)), 1, atol=1e-3)


def test_td_next_action_is_stop_gradient_exactly():
    """The TD target's next action sg[π̂(s')]: its derivative w.r.t. the policy heads is exactly
    0, while Q̂'s own derivative is not (HyperZero's `RLApproximator.update`)."""
    model = M.make_model("hyperzero", 4, 2)
    params = _init(model, obs=4, act=2)
    obs = jax.random.normal(jax.random.key(2), (4, 4))
    tid = jnp.array([0, 1, 0, 1])
    g = jax.grad(lambda p: model.apply(p, jnp.array([[0.3], [0.9]]), tid, obs, obs[:, :2],
                                       obs).q_next.sum())(params)["params"]
    assert all(float(jnp.abs(x).max()) == 0.0 for x in jax.tree_util.tree_leaves(
        [g["pi_heads_0"], g["pi_heads_1"]]))
    assert float(jnp.abs(g["q_heads_0"]["Dense_0"]["kernel"]).max()) > 0


def test_masked_loss_equals_unpadded_mean():
    pred = jax.random.normal(jax.random.key(0), (2, 6, 3))
    target = jnp.zeros((2, 6, 3))
    mask = jnp.array([1, 1, 1, 1, 0, 0], jnp.float32)
    np.testing.assert_allclose(T._masked_mse(pred, target, mask),
                               jnp.square(pred[:, :4]).mean(), rtol=1e-6)


def test_schedule_halves_at_released_epochs():
    """RLApproximator (HyPoGen, HyperZero, UVFA) halves at 1500/1800/1900 of 2000 epochs;
    PolicyApproximator (Cond) and MetaPolicyApproximator (Meta, PEARL) keep a plain Adam."""
    spe = 3
    for algo in ("hypogen", "hyperzero", "uvfa"):
        sched = T.lr_schedule(algo, 5e-4, 2000, spe)
        for epoch, lr in ((0, 5e-4), (1499, 5e-4), (1500, 2.5e-4), (1800, 1.25e-4),
                          (1900, 6.25e-5), (1999, 6.25e-5)):
            assert abs(float(sched(epoch * spe)) - lr) < 1e-6 * lr
    assert T.lr_schedule("cond", 1e-4, 2000, spe) == 1e-4
    import inspect
    from hyperjax.hypogen import meta
    assert "piecewise" not in inspect.getsource(meta.make_meta_fit)


def test_short_fit_learns_and_evaluates():
    """Cond Policy on 8 train specs for 20 epochs: BC loss falls and the zero-shot return on
    the held-out specs rises far above the untrained policy's."""
    grid, out = _lqr_dataset(episodes=3)
    ds = D.Dataset(spec=grid.specs.astype(np.float32),
                   **{k: np.asarray(out[k]) for k in D.KEYS[1:]}, meta={})
    sp = S.split_specs(grid, 123)
    fit = T.make_fit(T.FitConfig(algo="cond", epochs=20, eval_every=10, eval_episodes=2),
                     lqr.make_lqr_task("lqr_di"), D.flatten(ds, sp.train), grid.specs[sp.test])
    st = fit.init(jax.random.key(0))
    flat = D.flatten(ds, sp.train)
    batch = {k: jnp.asarray(getattr(flat, k)) for k in
             ("task_id", "obs", "action", "next_obs", "reward", "discount", "value")}
    bc0 = T.loss_fn(fit.model, st.params, jnp.asarray(flat.specs), batch,
                    jnp.ones(len(flat.obs)), 0.0, 0.0)[1]["bc"]
    untrained = float(fit.evaluate(st.params).mean())
    st, m1 = fit.segment(st)
    st, m2 = fit.segment(st)
    assert m2["bc"][-1] < 0.5 * bc0, (bc0, m2["bc"][-1])
    trained = float(fit.evaluate(st.params).mean())
    expert = float(out["reward"][sp.test].sum(-1).mean())
    assert trained > untrained + 0.5 * (expert - untrained), (untrained, trained, expert)
    assert float(st.best_return) >= float(m2["select_return"]) - 1e-6


# --- CLI ---------------------------------------------------------------------------------------

def _cli(*args):
    return subprocess.run([sys.executable, "-m", "experiments.hypogen", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=900)


BAD_INPUT = [
    (["--algo=hypogen,hypogenn"], "unknown algo 'hypogenn'"),
    (["--task=cheetah_speed", "--expert=lqr"], "--expert=lqr needs --task=lqr_di"),
    (["--epochs=30", "--eval_every=20"], "must divide"),
    (["--split=half"], "flag --split=half"),
    (["--expert=ppo"], "--expert=ppo needs a manipulation task"),
    (["--task=lift_cube_stiffness", "--ppo_hidden=64,x"], "--ppo_hidden must be"),
    # --split=maniskill is accepted when given (it reaches the next check)
    (["--task=lift_cube_stiffness", "--split=maniskill", "--ppo_hidden=64,x"],
     "--ppo_hidden must be"),
    (["--task=lift_cube_mass"], "unknown spec task 'lift_cube_mass'"),
    (["--overwrite", "false"], r"unexpected argument\(s\) 'false'"),
    (["--task=lift_cube_stiffness", "--ppo_init=/nonexistent.npz"], "--ppo_init=.* is not a file"),
]


def test_cli_bad_input_is_one_line():
    """Each bad input: exit status 2 and one stderr line naming it. The first case runs as its
    own process (the real exit status and everything on fd 2); the rest in one process."""
    import re
    args, pattern = BAD_INPUT[0]
    res = _cli(*args)
    assert res.returncode == 2, res.stderr
    lines = [l for l in res.stderr.strip().splitlines() if l.strip()]
    assert len(lines) == 1 and re.search(pattern, lines[0]), res.stderr
    for (args, pattern), (code, err) in zip(BAD_INPUT, run_cases("experiments.hypogen",
                                                                 [a for a, _ in BAD_INPUT])):
        lines = [l for l in err.strip().splitlines() if l.strip()]
        assert code == 2 and len(lines) == 1 and re.search(pattern, lines[0]), (args, code, err)


def test_cli_full_disk_is_one_line_and_keeps_the_finished_stages(tmp_path):
    """The disk fills while the dataset is written (a 50 kB file size limit): exit 2, one
    line naming the file and the OS error; the experts stay, no half-written file does."""
    run = str(tmp_path / "run")
    res = cli_with_file_limit(50_000, "experiments.hypogen", "--algo=cond", "--epochs=10",
                              "--eval_every=10", "--episodes_per_spec=2", f"--run_dir={run}")
    assert res.returncode == 2, res.stderr[-3000:]
    assert res.stderr.strip().splitlines() == [
        f"error: cannot write {run}/dataset.npz: File too large (errno 27); finished stages "
        f"are kept (rerun the command to go on)"], res.stderr[-3000:]
    assert sorted(os.listdir(run)) == ["experts.npz"]


def test_manipulation_defaults_are_the_released_ones():
    """maniskill_exp.yaml / ppo_rollout.py / ppo.py: the maniskill split, 1000 demonstrations
    and 100 evaluation episodes per spec, HyPoGen's 3-layer tanh target; HyperZero keeps its
    fixed 2-layer ReLU target unless the depth fields are given. The CLI maps its flags onto
    the same ``PipelineConfig.for_task``."""
    from hyperjax.hypogen.pipeline import PipelineConfig
    cfg = PipelineConfig.for_task("lift_cube_stiffness").resolved()
    assert (cfg.split, cfg.episodes_per_spec, cfg.eval_episodes, cfg.bc_only, cfg.expert,
            cfg.expert_steps) == ("maniskill", 1000, 100, True, "ppo", 4_000_000)
    assert tuple(cfg.target_config("hypogen"))[:2] == (3, "tanh")
    assert tuple(cfg.target_config("hyperzero"))[:2] == (2, "relu")
    cfg = PipelineConfig.for_task("lift_cube_stiffness", target_layers=4, episodes_per_spec=5)
    assert (cfg.split, cfg.episodes_per_spec, cfg.eval_episodes) == ("maniskill", 5, 100)
    assert tuple(cfg.target_config("hypogen"))[:2] == (4, "tanh")
    assert tuple(cfg.target_config("hyperzero"))[:2] == (4, "tanh")
    dmc = PipelineConfig.for_task("cheetah_speed").resolved()
    assert (dmc.split, dmc.expert, dmc.epochs, tuple(dmc.target_config())[:2]) == (
        "faithful", "td3", 2000, (2, "relu"))


def test_cli_pipeline_and_stage_skipping(tmp_path):
    """The CLI runs the pipeline; the library's ``run_pipeline`` then reads every stage back,
    refuses stale or damaged stage outputs in one line naming the field or file, and redoes
    them with ``overwrite``."""
    import re

    from hyperjax.hypogen.pipeline import PipelineConfig, PipelineError, run_pipeline
    run = str(tmp_path / "run")
    res = _cli("--algo=cond,uvfa", "--epochs=10", "--eval_every=10", "--episodes_per_spec=2",
               "--eval_episodes=2", f"--run_dir={run}")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "experts: closed-form LQR for 41 specs" in res.stdout
    for f in ("experts.npz", "dataset.npz", "results.md", "results.json",
              "cond/seed_123/result.json", "uvfa/seed_123/log.jsonl",
              "uvfa/seed_123/checkpoint"):
        assert os.path.exists(os.path.join(run, f)), f
    with open(os.path.join(run, "results.json")) as f:
        r = json.load(f)
    assert set(r["table"]) == {"cond", "uvfa"} and len(r["runs"]["cond"][0]["test_specs"]) == 32
    assert "| expert |" in open(os.path.join(run, "results.md")).read()
    # the paper's breakdowns and the per-spec plot are the report's (LQR has no success rule)
    c = r["runs"]["cond"][0]
    inside = S.in_training_distribution(c["test_specs"], c["train_specs"])
    per = np.asarray(c["episode_returns_last"]).mean(-1)
    assert np.asarray(c["episode_returns_last"]).shape == (32, 2)
    np.testing.assert_allclose(r["breakdowns"]["distribution"]["cond"]["return_in"][0],
                               per[inside].mean())
    np.testing.assert_allclose(r["breakdowns"]["distribution"]["cond"]["return_out"][0],
                               per[~inside].mean())
    assert r["breakdowns"]["success_only"] == {} and 0 < inside.sum() < 32
    assert os.path.getsize(os.path.join(run, "plots", "per_spec_returns.png")) > 10_000
    # the CLI refuses a stage made with other settings: one line, exit 2
    res = _cli("--algo=cond", "--epochs=20", "--eval_every=10", "--episodes_per_spec=2",
               "--eval_episodes=2", f"--run_dir={run}")
    lines = [l for l in res.stderr.strip().splitlines() if l.strip()]
    assert res.returncode == 2 and len(lines) == 1 and re.search(
        r"result .*result.json was made with epochs=10, this run has epochs=20", lines[0]), \
        res.stderr[-2000:]

    same = dict(epochs=10, eval_every=10, episodes_per_spec=2, eval_episodes=2)
    said = []
    again = run_pipeline(PipelineConfig(algos=("cond",), **same), run, log=said.append)
    assert any("made with these settings: reused" in s for s in said)
    assert any("cond seed 123: finished earlier with these settings" in s for s in said)
    assert again["runs"]["cond"][0] == r["runs"]["cond"][0]

    def refused(pattern, run_dir=run, **fields):
        with pytest.raises(PipelineError) as e:
            run_pipeline(PipelineConfig(**{"algos": ("cond",), **same, **fields}), run_dir,
                         log=None)
        assert "\n" not in str(e.value) and re.search(pattern, str(e.value)), str(e.value)

    refused(r"dataset .* was made with episodes_per_spec=2, this run has episodes_per_spec=3: "
            r"pass --overwrite", episodes_per_spec=3)
    refused(r"dataset .* was made with task='lqr_di', this run has task='lqr_di_goal'",
            task="lqr_di_goal")
    refused(r"--epochs must be >= 1", epochs=0)
    refused(r"is a file, not a directory", run_dir=os.path.join(run, "results.md"))
    # one writer per run directory: the AIB driver's lock (rundir.lock_run_dir)
    from hyperjax.rundir import lock_run_dir
    with lock_run_dir(run):
        refused(r"run directory .*run is in use by another run \(pid \d+\); wait for it to end "
                r"or choose another --run_dir")
    # damaged files: one line naming the file, and the stage can be redone
    ds = os.path.join(run, "dataset.npz")
    raw = open(ds, "rb").read()
    for damage in (os.urandom(4000), raw[: len(raw) // 2]):
        open(ds, "wb").write(damage)
        refused(r"dataset .*dataset.npz is (damaged|not an npz).*record it again")
    os.remove(ds)
    exp = os.path.join(run, "experts.npz")
    open(exp, "wb").write(open(exp, "rb").read()[:100])
    refused(r"experts .*experts.npz is damaged")
    said = []
    run_pipeline(PipelineConfig(algos=("cond",), **same), run, overwrite=True, log=said.append,
                 progress_fn=lambda epoch, m: said.append((epoch, m["algo"], m["seed"])))
    assert any("experts: closed-form LQR" in str(s) for s in said)
    assert not any("finished earlier" in str(s) for s in said)
    assert (10, "cond", 123) in said

    # the trained generator, read back from the run directory alone: the policy of any spec;
    # rolled out on the reported episodes it gives the result's per-spec returns
    from hyperjax.hypogen.generator import load_generator
    g = load_generator(run, "cond")
    res = g.result
    test = jnp.asarray(res["test_specs"], jnp.float32)
    got = D.rollout(g.env, g.act, None, g.generate(test), test, jax.random.key(3),
                    2, record=False).mean(-1)
    np.testing.assert_allclose(got, res["per_spec_last"], rtol=1e-5, atol=1e-4)
    a = g.policy([1.37])(np.zeros(g.env.obs_dim, np.float32))     # a spec of no grid
    assert a.shape == (g.env.action_dim,) and np.all(np.abs(a) <= 1)
    for kwargs, msg in [(dict(algo="hypogen"), r"has no hypogen run \(it has: cond"),
                        (dict(algo="cond", seed=5), r"no finished seed 5 \(finished: 123\)"),
                        (dict(algo="pearl"), "adapts at test time"),
                        (dict(algo="cond", which="first"), "which must be 'last' or 'best'")]:
        with pytest.raises(ValueError, match=msg):
            load_generator(run, **kwargs)

    # a baseline defined here is one algos.register: the config, the fit, the result files
    # and the report take it like the released ones (the stages above are read back)
    from hyperjax.hypogen import algos
    # (Cond Policy's own facts under another name: its fit program is Cond's, read back from
    # the compilation cache; the docs register one with other facts, and FitConfig reads them)
    algos.register(algos.Algo(
        "cond_scheduled", "Cond Policy, registered here", learning_rate=1e-4,
        build=lambda obs_dim, act_dim, *, use_q, **_: M.CondPolicy(obs_dim, act_dim, use_q)))
    try:
        assert "cond_scheduled (Cond Policy, registered here)" in algos.help_text()
        out = run_pipeline(PipelineConfig(algos=("cond", "cond_scheduled"), **same), run,
                           log=None)
        assert set(out["table"]) == {"cond", "cond_scheduled"}
        got = out["runs"]["cond_scheduled"][0]
        assert got["config"]["algo"] == "cond_scheduled" and np.isfinite(got["test_return_last"])
        assert os.path.exists(os.path.join(run, "cond_scheduled", "seed_123", "checkpoint"))
        assert "| cond_scheduled |" in open(os.path.join(run, "results.md")).read()
        assert T.FitConfig(algo="cond_scheduled").lr() == 1e-4
        algos.register(dataclasses.replace(algos.get("cond_scheduled"), learning_rate=3e-4,
                                           scheduled=True), replace=True)
        assert T.FitConfig(algo="cond_scheduled").lr() == 3e-4
        # halved at 75 % of the epochs: step 16 of 10 epochs x 2 steps
        assert float(T.lr_schedule("cond_scheduled", 3e-4, 10, 2)(17)) == pytest.approx(1.5e-4)
    finally:
        algos.unregister("cond_scheduled")
    with pytest.raises(PipelineError, match="unknown algo 'cond_scheduled'; valid: hypogen"):
        PipelineConfig(algos=("cond_scheduled",)).resolved()


# --- MJX spec tasks (host-side model edits and the reward are cheap; stepping MJX is slow) ------

def test_speed_tolerance_exact_values():
    from hyperjax.hypogen.dmc import speed_tolerance
    np.testing.assert_allclose(speed_tolerance(jnp.float32(2.5), 2.0), 1.0)
    np.testing.assert_allclose(speed_tolerance(jnp.float32(1.0), 2.0), 1 - 0.9 * 0.5, rtol=1e-6)
    np.testing.assert_allclose(speed_tolerance(jnp.float32(0.0), 2.0), 0.1, rtol=1e-6)
    np.testing.assert_allclose(speed_tolerance(jnp.float32(-1.0), 2.0), 0.0)
    # a negative spec reverses the direction
    np.testing.assert_allclose(speed_tolerance(jnp.float32(-3.0), -2.0), 1.0)
    np.testing.assert_allclose(speed_tolerance(jnp.float32(-1.0), -2.0), 0.55, rtol=1e-6)


@pytest.mark.parametrize("body,length", [("cheetah", 0.62), ("walker", 0.17), ("finger", 0.31)])
def test_torso_length_edits(body, length):
    from hyperjax.hypogen import dmc
    grid = S.SpecGrid(f"{body}_length", ("length",), np.array([[length]]))
    env = dmc.make_spec_task(f"{body}_length", grid)
    m = env.mj_model([length])
    if body == "cheetah":
        np.testing.assert_allclose(m.geom("torso").size[1], length, rtol=1e-6)  # half-length
        np.testing.assert_allclose(m.body("fthigh").pos, [length, 0, 0], rtol=1e-6)
        np.testing.assert_allclose(m.body("bthigh").pos, [-length, 0, 0], rtol=1e-6)
        np.testing.assert_allclose(m.geom("head").pos, [length + 0.1, 0, 0.1], rtol=1e-6)
    elif body == "walker":
        np.testing.assert_allclose(m.geom("torso").size[:2], [0.07, length], rtol=1e-6)
    else:
        np.testing.assert_allclose(m.geom("distal").size[1], length / 2, rtol=1e-6)
        np.testing.assert_allclose(m.body("spinner").pos, [length + 0.04, 0, 0.4], rtol=1e-6)
        np.testing.assert_allclose(m.geom("cap1").size[1], length - 0.07, rtol=1e-6)
        assert m.dof_damping[m.joint("hinge").id] == pytest.approx(0.03)
    default = env.mj_model([S.DEFAULT_LENGTH[body]])
    assert not np.allclose(default.body_mass, m.body_mass)
    # the dyn experiments' reward: overwrite_all's margin 1 for every body (dyn_exp.yaml),
    # with the linear sigmoid's floor 0 below v = 1 - 1/0.9
    m_dyn = float(env._speed(jnp.array([length], jnp.float32)))
    assert m_dyn == 1.0
    tol = lambda v: float(dmc.speed_tolerance(jnp.float32(v), m_dyn))
    assert tol(1.0) == 1.0 and tol(0.0) == pytest.approx(0.1) and tol(-0.2) == 0.0


def test_unknown_spec_task():
    from hyperjax.hypogen import dmc
    with pytest.raises(ValueError, match="unknown MJX spec task 'lqr_di'"):
        dmc.make_spec_task("lqr_di")


@pytest.mark.slow
def test_mjx_spec_task_smoke_reward_follows_the_spec():
    """Cheetah speed specs ±3 from the same start under the same actions: the rewards follow
    the spec's formula on the torso speed, and the two signs give different rewards."""
    from hyperjax.hypogen import dmc
    from mujoco_playground._src import mjx_env
    grid = S.SpecGrid("cheetah_speed", ("speed",), np.array([[-3.0], [3.0]]))
    env = dmc.make_spec_task("cheetah_speed", grid)
    ctx = jnp.asarray(grid.specs, jnp.float32)
    st, _ = jax.vmap(env.reset)(jnp.stack([jax.random.key(0)] * 2), ctx)
    step = jax.jit(jax.vmap(env.step))
    a = jnp.tile(jnp.array([[0.5, -0.5, 0.3, -0.3, 0.2, 0.1]]), (2, 1))
    for _ in range(20):
        st, ts = step(jnp.stack([jax.random.key(1)] * 2), st, a, ctx)
    v = jax.vmap(lambda d: mjx_env.get_sensor_data(env.backend.mj_model, d,
                                                    "torso_subtreelinvel")[0])(
        st.physics.state.data)
    np.testing.assert_allclose(v[0], v[1], rtol=1e-5)
    np.testing.assert_allclose(ts.reward, dmc.speed_tolerance(v, ctx[:, 0]), rtol=1e-5)


# --- the default task's properties (the paper's Tables 3-4 and Table 1's ordering) --------------

@pytest.fixture(scope="module")
def default_task_runs():
    """HyPoGen and Cond Policy trained on lqr_di with the CPU defaults (200 epochs, seed 123)."""
    grid = S.make_grid("lqr_di")
    env = lqr.make_lqr_task("lqr_di")
    ex = lqr.make_experts(grid.specs)
    out = jax.jit(lambda k: D.rollout(env, lambda e, o, s: lqr.expert_action(e[0], o, s),
                                      lambda e, o, a, s: lqr.expert_q(e[0], e[1], o, a, s),
                                      (ex.gain, ex.p), jnp.asarray(grid.specs, jnp.float32), k,
                                      10))(jax.random.key(0))
    ds = D.Dataset(spec=grid.specs.astype(np.float32),
                   **{k: np.asarray(out[k]) for k in D.KEYS[1:]}, meta={})
    sp = S.split_specs(grid, 123)
    flat = D.flatten(ds, sp.train)
    runs = {}
    for algo in ("hypogen", "cond"):
        fit = T.make_fit(T.FitConfig(algo=algo, epochs=200), env, flat, grid.specs[sp.test])
        st = fit.init(jax.random.key(123))
        for _ in range(10):
            st, _ = fit.segment(st)
        runs[algo] = dict(fit=fit, state=st, last=float(fit.evaluate(st.params).mean()),
                          best=float(fit.evaluate(st.best_params).mean()))
    return runs, flat, float(ds.returns()[sp.test].mean())


@pytest.mark.slow
def test_hypogen_beats_cond_policy_on_held_out_specs(default_task_runs):
    runs, _, expert = default_task_runs
    h, c = runs["hypogen"], runs["cond"]
    assert h["last"] > c["last"] and h["best"] > c["best"], (h["last"], c["last"], expert)


@pytest.mark.slow
def test_bc_loss_falls_block_by_block(default_task_runs):
    """Table 4 property: the BC loss of θ^k on the training specs decreases for k = 1 … 8."""
    runs, flat, _ = default_task_runs
    h = runs["hypogen"]
    bc = T.blockwise_bc(h["fit"].model, h["state"].params, flat)
    assert bc.shape == (8,) and np.all(np.diff(bc) < 0), bc


def test_td3_experts_vmapped_over_specs():
    """Two lqr_di specs, 24 steps: replay filled per spec, updates from seed_steps on, actor and
    targets moved only by the delayed updates, the exploration std schedule (1.0 → 0.1)."""
    from hyperjax.hypogen import experts as X
    cfg = X.TD3Config(total_steps=24, random_steps=4, seed_steps=8, batch_size=8,
                      buffer_size=100, hidden=32, std_steps=100)
    assert float(cfg.std(0)) == 1.0 and abs(float(cfg.std(50)) - 0.55) < 1e-6
    assert abs(float(cfg.std(10_000)) - 0.1) < 1e-6
    env = lqr.make_lqr_task("lqr_di")
    specs = np.array([[0.5], [2.0]], np.float32)
    init, _ = X.make_td3(env, cfg)
    s0 = jax.vmap(init)(jax.random.split(jax.random.key(0), 2), jnp.asarray(specs))
    s = X.train_experts(env, specs, cfg, jax.random.key(0), segments=2, log=lambda *_: None)
    assert list(s.step) == [24, 24] and list(s.replay.size) == [24, 24]
    assert s.replay.obs.shape[1] == 24 and float(jnp.abs(s.replay.obs).min(-1).max()) > 0
    moved = lambda a, b: max(float(jnp.abs(x - y).max()) for x, y in
                             zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))
    assert moved(s.critic, s0.critic) > 0 and moved(s.actor, s0.actor) > 0
    assert 0 < moved(s.target_actor, s0.target_actor) < moved(s.actor, s0.actor)
    q = jax.vmap(X.expert_value(32))(s, s.replay.obs[:, 0], s.replay.action[:, 0], specs)
    assert q.shape == (2,) and bool(jnp.all(jnp.isfinite(q)))


def test_td3_batched_step_resets_per_spec_and_keeps_its_branches():
    """The experts' step is batched over specs: (1) each spec's trajectory is the one it has
    trained alone, with episodes that end on different steps (spec 1 starts 4 steps into its
    episode), so a reset reaches only the spec whose episode ended; (2) the warm-up, actor-delay
    and reset branches are real ``cond`` branches in its program, not selects that compute both
    (a batched predicate under vmap: an actor update every step, a reset every step)."""
    from hyperjax.hypogen import experts as X
    cfg = X.TD3Config(total_steps=24, random_steps=4, seed_steps=8, batch_size=8,
                      buffer_size=100, hidden=32, std_steps=100)
    env = lqr.make_lqr_task("lqr_di")
    env.episode_length = 7
    init, step = X.make_td3(env, cfg)
    specs = jnp.asarray([[0.5], [2.0]], jnp.float32)
    s0 = jax.vmap(init)(jax.random.split(jax.random.key(0), 2), specs)
    t0 = s0.env_state.t.at[1].set(4)
    s0 = s0._replace(env_state=s0.env_state._replace(t=t0))
    run = jax.jit(lambda s, sp: jax.lax.scan(lambda c, _: step(c, sp), s, None, 24))
    both, m = run(s0, specs)
    assert np.all(np.asarray(m["last_return"])[-1] != 0)
    first = np.argmax(np.asarray(m["last_return"]) != 0, axis=0)
    assert list(first) == [6, 2]                      # episodes end on different steps
    for i in range(2):
        alone, _ = run(jax.tree_util.tree_map(lambda x: x[i:i + 1], s0), specs[i:i + 1])
        for a, b in zip(jax.tree_util.tree_leaves(both), jax.tree_util.tree_leaves(alone)):
            if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
                a, b = jax.random.key_data(a), jax.random.key_data(b)
            np.testing.assert_allclose(np.asarray(a[i]), np.asarray(b[0]), rtol=1e-5,
                                       atol=1e-6)

    def conds(jaxpr):
        n = 0
        for e in jaxpr.eqns:
            n += e.primitive.name == "cond"
            for p in e.params.values():
                for j in p if isinstance(p, (list, tuple)) else [p]:
                    if hasattr(j, "jaxpr") and hasattr(j.jaxpr, "eqns"):
                        n += conds(j.jaxpr)
        return n
    assert conds(jax.make_jaxpr(step)(s0, specs).jaxpr) >= 3     # reset, warm-up, actor delay


def test_td3_experts_resume_mid_run_bitwise():
    """A TD3 expert stage checkpointed after its first segment and resumed from there ends
    bitwise where the uninterrupted run ends (replay and key are in the state)."""
    from hyperjax import checkpoint
    from hyperjax.hypogen import experts as X
    cfg = X.TD3Config(total_steps=24, random_steps=4, seed_steps=8, batch_size=8,
                      buffer_size=100, hidden=32, std_steps=100)
    env = lqr.make_lqr_task("lqr_di")
    specs = np.array([[0.5], [2.0]], np.float32)
    quiet = lambda *_: None
    full = X.train_experts(env, specs, cfg, jax.random.key(0), segments=3, log=quiet)
    saved = {}

    def kill_after_first(i, state):
        saved[i] = state
        if i == 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        X.train_experts(env, specs, cfg, jax.random.key(0), segments=3, log=quiet,
                        on_segment=kill_after_first)
    import tempfile
    d = tempfile.mkdtemp()
    checkpoint.save(d, 1, saved[0], {"segment": 0})
    init, _ = X.make_td3(env, cfg)
    abstract = jax.eval_shape(jax.vmap(init), jax.random.split(jax.random.key(0), 2),
                              jnp.asarray(specs))
    state, record = checkpoint.restore(d, abstract)
    resumed = X.train_experts(env, specs, cfg, jax.random.key(0), segments=3, log=quiet,
                              state=state, start_segment=record["segment"] + 1)
    raw = lambda x: np.asarray(jax.random.key_data(x) if jax.dtypes.issubdtype(
        x.dtype, jax.dtypes.prng_key) else x)
    for a, b in zip(jax.tree_util.tree_leaves(full), jax.tree_util.tree_leaves(resumed)):
        np.testing.assert_array_equal(raw(a), raw(b))
    assert X.td3_config("walker_speed").batch_size == 512       # cfgs/task/walker_walk.yaml
    assert X.td3_config("cheetah_length").batch_size == 256
