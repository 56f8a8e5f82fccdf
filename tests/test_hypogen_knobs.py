"""HyPoGen's ablation knobs (issue 18 §4) and the unbiased model selection (§3): each knob
changes exactly what it names, the splits of Table 19 and Fig. 4, and selection episodes
kept apart from the reported ones."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hyperjax.hypogen import data as D, lqr, models as M, specs as S, train as T


def _shapes(model, obs=5, act=2):
    return jax.eval_shape(lambda k: model.init(
        k, jnp.zeros((2, 1)), jnp.zeros(4, jnp.int32), jnp.zeros((4, obs)),
        jnp.zeros((4, act)), jnp.zeros((4, obs))), jax.random.key(0))


def _generate(model, obs=5, act=2):
    p = model.init(jax.random.key(0), jnp.zeros((2, 1)), jnp.zeros(4, jnp.int32),
                   jnp.zeros((4, obs)), jnp.zeros((4, act)), jnp.zeros((4, obs)))
    return p, model.apply(p, jnp.array([[0.5], [1.5]]), method="generate")


@pytest.mark.parametrize("algo", ["hypogen", "hyperzero"])
def test_target_layers_shape_the_generated_policy(algo):
    """Table 18's knob: 3 target layers → W shapes [T, 256, obs], [T, 256, 256], [T, act, 256]."""
    t = M.TargetNetConfig(layers=3)
    _, w = _generate(M.make_model(algo, 5, 2, target=t, num_blocks=2))
    assert [tuple(x.shape) for x, _ in w] == [(2, 256, 5), (2, 256, 256), (2, 2, 256)]
    _, w2 = _generate(M.make_model(algo, 5, 2, num_blocks=2))
    assert [tuple(x.shape) for x, _ in w2] == [(2, 256, 5), (2, 2, 256)]


def test_target_activation_is_used_between_layers_only():
    """relu vs tanh between layers; the last layer is tanh (policy) or identity (Q) either way."""
    k1, k2 = jax.random.split(jax.random.key(1))
    layers = [(jax.random.normal(k1, (3, 4)), jnp.zeros(3)), (jax.random.normal(k2, (1, 3)),
                                                               jnp.zeros(1))]
    x = jnp.array([1.0, -2.0, 0.5, -0.3])
    h = layers[0][0] @ x
    for act, f in (("relu", jax.nn.relu), ("tanh", jnp.tanh)):
        want = layers[1][0] @ f(h)
        np.testing.assert_allclose(M.target_forward(layers, x, False, act), want, rtol=1e-5)
        np.testing.assert_allclose(M.target_forward(layers, x, True, act), jnp.tanh(want),
                                   rtol=1e-5)
    assert not np.allclose(M.target_forward(layers, x, False, "relu"),
                           M.target_forward(layers, x, False, "tanh"))
    with pytest.raises(ValueError, match="unknown target activation 'gelu'"):
        M.make_model("hypogen", 5, 2, target=M.TargetNetConfig(act="gelu"))


def test_block_mlp_depth_and_width():
    """Tables 21–22: every block MLP gets ``block_layers`` Linears of width ``block_width``."""
    p = _shapes(M.make_model("hypogen", 5, 2, num_blocks=1, use_q=False,
                             target=M.TargetNetConfig(block_layers=3, block_width=16)))
    fwd = p["params"]["pi_gen"]["block_0"]["forward_in"]
    assert [fwd[f"TorchDense_{i}"]["kernel"].shape for i in range(3)] == [
        (256, 16), (16, 16), (16, 5)]
    p1 = _shapes(M.make_model("hypogen", 5, 2, num_blocks=1, use_q=False,
                              target=M.TargetNetConfig(block_layers=1)))
    assert list(p1["params"]["pi_gen"]["block_0"]["forward_in"]) == ["TorchDense_0"]


def _block(din, dw, t=3, d_out=2):
    blk = M.OptBlock((5, 64), (64, d_out), d_out, 16, 2, din, dw)
    z, codes = jnp.ones((t, 256)), [jnp.ones((t, 128)) * 0.1, jnp.ones((t, 128)) * -0.2]
    p = blk.init(jax.random.key(0), z, codes)
    return blk, p, z, codes


@pytest.mark.parametrize("din,dw", [("slice", "direct"), ("direct", "direct"),
                                    ("full", "slice"), ("direct", "full")])
def test_chain_rule_variants(din, dw):
    """The released dl_din_way / dl_dw_way: direct = exact mat-vec (no parameters), slice = one
    MLP (2·out → 1) per row, full = one MLP ([g, J.flatten()] → d)."""
    blk, p, z, codes = _block(din, dw)
    names = set(p["params"])
    assert ("slice_1" in names) == (din == "slice") and ("full_in_1" in names) == (din == "full")
    assert ({"slice_w_0", "slice_w_1"} <= names) == (dw == "slice")
    assert ({"full_w_0", "full_w_1"} <= names) == (dw == "full")
    if din == "full":   # layer 1: [g (d_out = 2), J_in (64 x 2) flattened] -> 64
        assert p["params"]["full_in_1"]["TorchDense_0"]["kernel"].shape == (2 + 64 * 2, 16)
    grads = blk.apply(p, z, codes)
    assert [g.shape for g in grads] == [(3, 128), (3, 128)]


def test_direct_chain_rule_is_the_exact_product():
    """``direct`` computes J·g exactly: the top layer's latent gradient equals
    einsum(g, J_w) with g and J_w read off the block's own MLPs."""
    blk, p, z, codes = _block("direct", "direct")
    grads = blk.apply(p, z, codes)
    pp = p["params"]
    mlp = lambda name, x: M.MLP(16, pp[name]["TorchDense_1"]["kernel"].shape[1]).apply(
        {"params": pp[name]}, x)
    g = mlp("dloss_dout", z)
    h1 = mlp("forward_0", jnp.concatenate([mlp("forward_in", z), codes[0]], -1))
    j_w = mlp("dout_dw_1", jnp.concatenate([h1, codes[1]], -1)).reshape(3, 128, 2)
    np.testing.assert_allclose(grads[1], jnp.einsum("to,tdo->td", g, j_w), rtol=1e-5,
                               atol=1e-6)


def test_bad_chain_rule_name():
    with pytest.raises(ValueError, match="unknown din_way 'exact'"):
        M.make_model("hypogen", 5, 2, target=M.TargetNetConfig(din_way="exact"))


def test_fig4_split_and_table19_fraction():
    """Fig. 4: cheetah trained on speeds 1 and 10, tested on 2 … 9. Table 19: half held out."""
    g = S.make_grid("cheetah_speed")
    sp = S.split_specs(g, 123, "fig4")
    assert sorted(g.specs[sp.train, 0]) == [1.0, 10.0]
    assert list(g.specs[sp.test, 0]) == [2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]
    assert len(sp.unused) == 40 - 10
    with pytest.raises(ValueError, match="fig4 needs a one-factor grid"):
        S.split_specs(S.make_grid("cheetah_speed_length"), 123, "fig4")
    half = S.split_specs(S.subset_grid(S.make_grid("finger_speed"), 10), 123, "faithful", 0.5)
    assert (len(half.train), len(half.test), len(half.unused)) == (5, 5, 0)


def test_a_split_without_train_or_held_out_specs_is_refused_before_any_stage():
    """``--test_fraction=0.01`` (41 specs: none held out) ran every stage and reported NaN;
    ``--num_specs=3`` (none to train on) failed with a traceback after the expert and data
    stages. Both are one line from ``resolved``, before anything runs."""
    from hyperjax.hypogen.pipeline import PipelineConfig, PipelineError
    with pytest.raises(PipelineError, match=r"41 specs at test_fraction=0.01 leaves 40 train "
                                            r"/ 0 held-out specs: both need at least one"):
        PipelineConfig(test_fraction=0.01).resolved()
    with pytest.raises(PipelineError, match=r"3 specs at test_fraction=0.8 leaves 0 train / 2 "
                                            r"held-out"):
        PipelineConfig(num_specs=3).resolved()
    S.split_specs(S.make_grid("lqr_di"), 123, "faithful", 0.05)   # 2 of 41 held out: fine


def test_the_random_floor_follows_eval_episodes(tmp_path, monkeypatch):
    """The uniform-random floor is measured over the run's ``eval_episodes``: read back when
    they match, measured again when they changed (it lived in the dataset, whose record has no
    ``eval_episodes``, so another count reused the old floor)."""
    from hyperjax.hypogen import stages
    from hyperjax.hypogen.pipeline import PipelineConfig
    from hyperjax.hypogen.tasks import make_task_env
    cfg = PipelineConfig(num_specs=10, eval_episodes=2).resolved()
    grid = cfg.grid()
    env = make_task_env(cfg.task, grid)
    d = str(tmp_path)
    quiet = lambda msg: None
    two = stages.stage_random_floor(cfg, d, grid, env, log=quiet)
    ref = np.asarray(D.random_returns(env, jnp.asarray(grid.specs, jnp.float32),
                                      jax.random.key(1), 2)).mean(-1)
    np.testing.assert_allclose(two, ref, rtol=1e-6)
    three = stages.stage_random_floor(dataclasses.replace(cfg, eval_episodes=3), d, grid, env,
                                      log=quiet)
    assert three.shape == (10,) and not np.allclose(two, three)
    monkeypatch.setattr(D, "random_returns", None)      # read back: nothing is measured
    np.testing.assert_array_equal(
        stages.stage_random_floor(dataclasses.replace(cfg, eval_episodes=3), d, grid, env,
                                  log=quiet), three)


def test_the_papers_failure_rule_and_training_distribution_by_hand():
    """App. C.6's failure rule (reward < 0.05 for 50 consecutive steps) and C.7's
    in-distribution specs (within one std of the training specs on every factor)."""
    r = np.ones((4, 120))
    r[1, 10:60] = 0.0                  # 50 low steps in a row: failed
    r[2, 10:59] = 0.0                  # 49, a high step, 49 more: not
    r[2, 60:109] = 0.0
    r[3, :] = 0.05                     # 0.05 is not below 0.05
    assert D.mujoco_failed(r).tolist() == [False, True, False, False]
    assert D.mujoco_failed(r.reshape(2, 2, 120)).shape == (2, 2)
    train = np.array([[1.0, 0.0], [3.0, 0.0], [5.0, 2.0], [7.0, 2.0]])   # mean (4, 1), std
    test = np.array([[4.0, 1.0], [1.77, 0.5], [6.3, 2.0], [0.0, 1.0]])   # (2.236, 1)
    assert S.in_training_distribution(test, train).tolist() == [True, True, False, False]


def test_breakdowns_of_the_report_by_hand():
    """Tables 24 / 26–27 / 4 from per-episode fields of two seeds (hand-computed), and results
    written before those fields are left out."""
    from hyperjax.hypogen.pipeline import PipelineConfig
    from hyperjax.hypogen.report import breakdowns
    cfg = PipelineConfig(task="cheetah_speed")
    train = [[1.0], [2.0], [3.0]]                      # mean 2, std 0.816
    seed = lambda ret, ok, bc: dict(train_specs=train, test_specs=[[2.5], [9.0]],
                                    episode_returns_last=ret, episode_success_last=ok,
                                    blockwise_bc=bc)
    runs = {"hypogen": [seed([[10.0, 20.0], [30.0, 50.0]], [[True, False], [True, True]],
                             [3.0, 2.0, 1.0]),
                        seed([[0.0, 40.0], [60.0, 80.0]], [[False, True], [False, True]],
                             [5.0, 2.0, 1.0])],
            "old": [dict(per_spec_last=[1.0])]}
    lines, out = breakdowns(cfg, runs)
    ok = np.array([10.0, 30.0, 50.0, 40.0, 80.0])      # the successful episodes' returns
    np.testing.assert_allclose(out["success_only"]["hypogen"]["mean"], ok.mean())
    np.testing.assert_allclose(out["success_only"]["hypogen"]["std"], ok.std())
    assert (out["success_only"]["hypogen"]["count"], out["success_only"]["hypogen"]["episodes"]
            ) == (5, 8)
    d = out["distribution"]["hypogen"]                # spec 2.5 in, 9.0 out
    np.testing.assert_allclose(d["return_in"], (np.mean([15.0, 20.0]), np.std([15.0, 20.0])))
    np.testing.assert_allclose(d["return_out"], (np.mean([40.0, 70.0]), np.std([40.0, 70.0])))
    assert d["n_in"] == (1.0, 0.0) and d["n_out"] == (1.0, 0.0)
    assert out["blockwise_bc"]["hypogen"] == [4.0, 2.0, 1.0]
    assert "old" not in out["distribution"] and any("Table 24" in x for x in lines)


def test_paper_cells_keep_the_papers_rankings():
    """The transcribed Tables 1 and 2 (``hyperjax.hypogen.paper``) against the paper's own
    marks: HyPoGen bold (best model) in all nine Table 1 columns; in Table 2 the bold and
    underlined success rates (UVFA best on LiftCube cube size, HyPoGen elsewhere)."""
    from hyperjax.hypogen import paper
    models = [a for a in paper.ALGOS if a != "expert"]
    assert sorted(paper.TABLE1) == sorted(f"{b}_{f}" for b in ("cheetah", "finger", "walker")
                                          for f in ("speed", "length", "speed_length"))
    for task, row in paper.TABLE1.items():
        assert max(models, key=row.get) == "hypogen", task
        assert set(row) == set(paper.ALGOS)
    second = {"lift_cube_cube": ("uvfa", "cond"), "lift_cube_stiffness": ("hypogen", "pearl"),
              "lift_cube_damping": ("hypogen", "uvfa"), "lift_cube_length": ("hypogen", "pearl"),
              "pick_cube_cube": ("hypogen", "uvfa"), "pick_cube_stiffness": ("hypogen", "pearl"),
              "pick_cube_damping": ("hypogen", "cond"), "pick_cube_length": ("hypogen", "cond")}
    assert sorted(paper.TABLE2) == sorted(second)
    for task, row in paper.TABLE2.items():
        ranked = sorted(models, key=lambda a: -row[a][0])
        assert tuple(ranked[:2]) == second[task], task
    assert paper.cell("finger_speed", "hypogen") == 835.21
    assert paper.cell("lift_cube_stiffness", "hyperzero") == (0.0, 200.0)
    assert paper.cell("lqr_di", "hypogen") is None and paper.cell("finger_speed", "x") is None


def test_paper_lines_put_ours_beside_the_paper():
    from hyperjax.hypogen.report import paper_lines
    lines = paper_lines("cheetah_speed", {"hypogen": 409.615, "expert": float("nan"),
                                         "cond_scheduled": 1.0})
    assert "| hypogen | 409.6 | 819.23 | 50% |" in lines
    assert "| expert | – | 869.59 | – |" in lines
    assert not any("cond_scheduled" in x for x in lines)
    lines = paper_lines("lift_cube_damping", {"hypogen": (0.5, 100.0)})
    assert "| hypogen | 50.0 % | 93.28 % | 100.0 | 24.78 |" in lines
    assert paper_lines("lqr_di", {"hypogen": 1.0}) == []


def test_the_report_of_a_table2_task_puts_the_paper_beside_ours():
    """``report.report`` on a LiftCube-damping run (synthetic results, no training): the
    success table and, beside it, the paper's Table 2 cells for each model and the expert."""
    import types

    from hyperjax.hypogen.pipeline import PipelineConfig
    from hyperjax.hypogen.report import report
    cfg = PipelineConfig.for_task("lift_cube_damping")
    grid = S.make_grid("lift_cube_damping")
    sp = S.split_specs(grid, cfg.seed_list[0], cfg.split, cfg.test_fraction)
    n = len(grid)
    ds = types.SimpleNamespace(returns=lambda: np.ones((n, 2)), meta=dict(
        expert_success=[1.0] * n, expert_length=[20.0] * n, expert_trained=[True] * n))
    res = dict(test_return_last=1.0, test_return_selected=1.0, train_return_last=2.0,
               test_ids=[int(i) for i in sp.test], per_spec_last=[1.0] * len(sp.test),
               train_ids=[int(i) for i in sp.train], per_train_spec_last=[2.0] * len(sp.train),
               test_success_last=0.25, test_length_last=150.0, test_success_selected=0.5)
    lines, summary = report(cfg, grid, ds, {"hypogen": [res]}, np.zeros(n))
    assert "| hypogen | 25.0 % | 93.28 % | 150.0 | 24.78 |" in lines
    assert "| expert | 100.0 % | 97.28 % | 20.0 | 16.30 |" in lines
    assert not any("Table 1" in x for x in lines)
    cfg = PipelineConfig(task="finger_speed")          # a Table 1 task: returns
    grid = S.make_grid("finger_speed")
    sp = S.split_specs(grid, cfg.seed_list[0], cfg.split, cfg.test_fraction)
    n = len(grid)
    ds = types.SimpleNamespace(returns=lambda: np.full((n, 2), 500.0), meta={})
    res.update(test_return_last=417.6, test_ids=[int(i) for i in sp.test],
               per_spec_last=[1.0] * len(sp.test), train_ids=[int(i) for i in sp.train],
               per_train_spec_last=[2.0] * len(sp.train))
    lines, _ = report(cfg, grid, ds, {"hypogen": [res]}, np.zeros(n))
    assert "| hypogen | 417.6 | 835.21 | 50% |" in lines
    assert "| expert | 500.0 | 975.71 | 51% |" in lines


def test_subset_grid_is_evenly_spaced():
    g = S.subset_grid(S.make_grid("finger_speed"), 10)
    assert list(g.specs[:, 0]) == [-15, -12, -9, -5, -2, 2, 5, 9, 12, 15]
    assert S.subset_grid(g, 0) is g
    with pytest.raises(ValueError, match="num_specs must be 0"):
        S.subset_grid(g, 1)


def test_selection_episodes_are_not_the_reported_ones():
    """§3: ``segment`` selects on episodes of its own; ``evaluate`` reports on others."""
    grid = S.make_grid("lqr_di")
    env = lqr.make_lqr_task("lqr_di")
    ex = lqr.make_experts(grid.specs[:4])
    sp = jnp.asarray(grid.specs[:4], jnp.float32)
    out = jax.jit(lambda k: D.rollout(env, lambda e, o, s: lqr.expert_action(e[0], o, s),
                                      lambda e, o, a, s: lqr.expert_q(e[0], e[1], o, a, s),
                                      (ex.gain, ex.p), sp, k, 2))(jax.random.key(0))
    ds = D.Dataset(spec=np.asarray(sp), **{k: np.asarray(out[k]) for k in D.KEYS[1:]}, meta={})
    cfg = T.FitConfig(algo="cond", epochs=1, eval_every=1, eval_episodes=2)
    with pytest.raises(ValueError, match="select_key_seed must differ"):
        T.make_fit(cfg, env, D.flatten(ds, [0, 1]), grid.specs[2:4], 5, 5)
    fit = T.make_fit(cfg, env, D.flatten(ds, [0, 1]), grid.specs[2:4])
    st, m = fit.segment(fit.init(jax.random.key(0)))
    reported = float(fit.evaluate(st.params).mean())
    select = float(fit.evaluate(st.params, key=jax.random.key(1003)).mean())
    assert float(m["select_return"]) == pytest.approx(select, rel=1e-5)
    assert reported != pytest.approx(select, rel=1e-6)
    train = fit.evaluate(st.params, specs=grid.specs[:2])
    assert train.shape == (2, 2)


def test_update_layernorm_off_keeps_the_update_magnitude():
    """``update_layernorm=False`` drops the ln_w / ln_b modules and changes θ^K."""
    on = M.make_model("hypogen", 5, 2, num_blocks=1, use_q=False)
    off = M.make_model("hypogen", 5, 2, num_blocks=1, use_q=False,
                       target=M.TargetNetConfig(update_layernorm=False))
    p_on, w_on = _generate(on)
    p_off, w_off = _generate(off)
    assert "ln_w0" in p_on["params"]["pi_gen"] and "ln_w0" not in p_off["params"]["pi_gen"]
    assert not np.allclose(w_on[0][0], w_off[0][0])
