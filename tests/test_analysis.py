"""Evaluation protocol and diagnostics: estimators against closed forms, the shadow gradients,
the probe's windows, the aggregate statistics and the report writer."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hyperjax.analysis import representation as rep
from hyperjax.analysis import stats


# --- estimators ----------------------------------------------------------------------------

@pytest.mark.parametrize("rho", [0.0, 0.5, 0.9])
def test_ksg_on_correlated_gaussians(rho):
    """I(X; Y) = -1/2 log(1 - rho^2) for a bivariate Gaussian (Kraskov et al. 2004)."""
    rng = np.random.default_rng(1)
    n = 4000
    x = rng.standard_normal(n)
    y = rho * x + np.sqrt(1 - rho**2) * rng.standard_normal(n)
    assert rep.ksg_mutual_information(x, y) == pytest.approx(-0.5 * np.log(1 - rho**2), abs=0.03)


def test_ksg_vector_valued_and_discrete():
    rng = np.random.default_rng(2)
    n = 4000
    # two independent pairs, each rho = 0.8: I = 2 * (-1/2 log(1 - 0.64))
    x = rng.standard_normal((n, 2))
    y = 0.8 * x + 0.6 * rng.standard_normal((n, 2))
    assert rep.ksg_mutual_information(x, y) == pytest.approx(-np.log(1 - 0.64), abs=0.05)
    # z reveals a fair binary mode exactly: I = log 2 (the jitter breaks the ties)
    s = rng.choice([-1.0, 1.0], n)
    z = s[:, None] + 0.1 * rng.standard_normal((n, 8))
    assert rep.ksg_mutual_information(z, s) == pytest.approx(np.log(2), abs=0.02)
    # unit-variance scaling without centring, as the authors: scale-invariant
    assert rep.ksg_mutual_information(10 * x + 3, y) == rep.ksg_mutual_information(x, y)
    with pytest.raises(ValueError, match="same number of samples"):
        rep.ksg_mutual_information(x, y[:10])


def _balanced(means, sigma, n=4):
    """Per-context samples mean +- sigma in every dimension: within variance exactly sigma^2."""
    means = np.asarray(means, np.float64)
    signs = np.array([1, -1] * (n // 2), np.float64)[:, None]
    return means[:, None, :] + sigma * signs[None]


def test_variance_decomposition_closed_form():
    # 4 contexts, 2 modes; d = 2. Context means: mode -1 at (0, +-1), mode +1 at (4, +-1).
    means = [[0, 1], [0, -1], [4, 1], [4, -1]]
    z = _balanced(means, sigma=0.5)
    d = rep.variance_decomposition(z, [-1, -1, 1, 1])
    assert d["within_context"] == pytest.approx(0.25)          # sigma^2
    assert d["within_mode"] == pytest.approx(1.0 / 2)          # var (+-1) in dim 1, / d
    assert d["between_mode"] == pytest.approx(4.0 / 2)         # var (0, 4) = 4 in dim 0, / d
    assert d["total"] == pytest.approx(0.25 + 0.5 + 2.0)
    assert d["total"] == pytest.approx(rep.variability(z))
    # one mode: no between-mode term, the law of total covariance still adds up
    d1 = rep.variance_decomposition(z, [0, 0, 0, 0])
    assert d1["between_mode"] == 0.0
    assert d1["within_context"] + d1["within_mode"] == pytest.approx(d1["total"])
    rng = np.random.default_rng(0)
    zr = rng.standard_normal((20, 256, 8)) + rng.standard_normal((20, 1, 8))
    dr = rep.variance_decomposition(zr, rng.choice([-1, 1], 20))
    assert dr["within_context"] + dr["within_mode"] + dr["between_mode"] == \
        pytest.approx(dr["total"], rel=1e-12)


def test_cosine_and_overlap():
    z = _balanced(np.eye(4), sigma=0.1)  # orthogonal means
    np.testing.assert_allclose(rep.cosine_matrix(z), np.eye(4), atol=1e-12)
    assert rep.representation_overlap(z) == pytest.approx(0.25)            # diagonal in
    assert rep.representation_overlap(z, diagonal=False) == pytest.approx(0.0)
    z2 = _balanced([[1, 0], [2, 0], [-1, 0]], sigma=0.1)
    cos = rep.cosine_matrix(z2)
    np.testing.assert_allclose(cos, [[1, 1, -1], [1, 1, -1], [-1, -1, 1]], atol=1e-12)
    assert rep.representation_overlap(z2, diagonal=False) == pytest.approx(-1 / 3)
    assert rep.variability(z2) == pytest.approx((np.var([1, 2, -1]) + 0.01 + 0.01) / 2)


def test_diagnose_keys_and_modes():
    rng = np.random.default_rng(3)
    ctx = np.array([[m, s] for s in (-1.0, 1.0) for m in (0.5, 1.0, 1.5)])
    z = rng.standard_normal((6, 64, 8)) * 0.01 + ctx[:, None, 1:2]
    d = rep.diagnose(z, ctx, ("mass", "action_factor"), "action_factor")
    assert d["mi_mode"] == pytest.approx(np.log(2), abs=0.05)
    assert d["between_mode"] > 100 * d["within_mode"]
    assert np.asarray(d["cosine"]).shape == (6, 6)
    d0 = rep.diagnose(z, ctx, ("mass", "friction"), None)
    assert d0["mi_mode"] is None and d0["between_mode"] == 0.0


# --- statistics ----------------------------------------------------------------------------

def test_normalise_and_classes():
    assert stats.normalise(50.0, "di") == 0.5
    assert stats.normalise(100.0, "ode") == 0.5
    assert stats.normalise(250.0, "cheetah") == 0.25
    assert stats.task_class("di") == "non_overlap" and stats.task_class("walker") == "overlap"
    with pytest.raises(ValueError, match="unknown env 'pong'"):
        stats.normalise(1.0, "pong")


def test_iqm_and_interval():
    scores = np.arange(1, 9, dtype=float).reshape(4, 2) / 10  # 0.1 .. 0.8
    iqm, lo, hi = stats.iqm(scores, reps=500)
    assert iqm == pytest.approx(np.mean([0.3, 0.4, 0.5, 0.6]))  # middle half
    assert lo <= iqm <= hi and hi - lo > 0
    m, lo, hi = stats.mean_ci([1.0, 1.0, 1.0], reps=200)
    assert (m, lo, hi) == (1.0, 1.0, 1.0)


def _scores():
    """Synthetic study: DI (non-overlap) and DI-Friction (overlap), 3 seeds."""
    base = {"dr": 20.0, "concat": 50.0, "da": 40.0, "dma_sh": 60.0}
    return {env: {a: {s: [v + f, v + f + 1, v + f + 2] for s in stats.SPLITS}
                  for a, v in base.items()}
            for env, f in (("di", 0.0), ("di_friction", 30.0))}


def test_gain_table_by_class():
    g = stats.gain_table(_scores(), reps=200)
    # non-overlap = DI only: IQMs 61 vs 21 (normalised by 100 alike; 3 seeds keep all three)
    assert g["train"]["dr"]["non_overlap"]["gain"][0] == pytest.approx(100 * (61 - 21) / 21)
    assert g["eval_out"]["concat"]["overlap"]["gain"][0] == pytest.approx(100 * (91 - 81) / 81)
    # all, aggregated: 18 scores each, the middle 10 of a symmetric set average 76 and 56
    assert g["aggregated"]["da"]["all"]["gain"][0] == pytest.approx(100 * (76 - 56) / 56)
    assert g["aggregated"]["da"]["all"]["envs"] == ["di", "di_friction"]
    assert np.isnan(stats.relative_gain(1.0, 0.0))
    only_di = {"di": _scores()["di"]}
    assert stats.gain_table(only_di, reps=200)["train"]["dr"]["overlap"] is None


# --- the report and figures ------------------------------------------------------------------

def test_report_and_plots(tmp_path):
    from hyperjax.analysis.report import Study, fig4_summary
    from hyperjax.analysis.study import write_study
    scores = _scores()
    steps = [1000, 2000]
    curves = {env: {a: {"step": steps, **{s: [[0.0, x] for x in per[s]] for s in stats.SPLITS}}
                    for a, per in algos.items()} for env, algos in scores.items()}
    rng = np.random.default_rng(0)
    fig4_ctx = [[0.8, -1.0], [1.0, -1.0], [1.3, -1.0], [0.8, 1.0], [1.0, 1.0], [1.3, 1.0]]
    diag_seed = rep.diagnose(rng.standard_normal((20, 32, 8)), rng.standard_normal((20, 2)),
                             ("mass", "action_factor"), "action_factor")
    diag_seed.update(shadow_actor=0.5, shadow_critic=0.25)
    cos = np.where(np.equal.outer([0, 0, 0, 1, 1, 1], [0, 0, 0, 1, 1, 1]), 1.0, 0.2)
    diags = {"di": {"dma_sh": {"splits": {s: [diag_seed] * 3 for s in stats.SPLITS},
                               "fig4": [cos.tolist()] * 3, "fig4_contexts": fig4_ctx}}}
    study = Study(["di", "di_friction"], ["dr", "concat", "da", "dma_sh"], scores, curves,
                  diags, dict(seeds=3, total_steps=2000, eval_every=1000, eval_episodes=5))
    path = write_study(study, str(tmp_path), reps=100)
    text = open(path).read()
    # per-task AER: DI DMA*-SH train = mean(60, 61, 62) = 61, std sqrt(2/3)
    assert "| DMA*-SH | 61.00 ± 0.82 [" in text
    # IQM of normalised scores (all / overlap / non-overlap) for DR on train:
    # IQM over {.20 .21 .22 .50 .51 .52} = mean(.21 .22 .50 .51) = .36; overlap .51; non .21
    assert "0.360/0.510/0.210" in text
    # relative gain vs DR, train, non-overlap: (61 - 21) / 21 = 190.5 %
    assert "190.5" in text and "vs Concat" in text
    assert "| DMA*-SH | 1.00 to 1.00 | 0.20 to 0.20 |" in text
    assert fig4_summary(cos, [-1, -1, -1, 1, 1, 1]) == ((1.0, 1.0), (0.2, 0.2))
    assert "I(z;c)" in text and "0.5 ± 0" in text
    for name in ("curves_di.png", "curves_di_friction.png", "iqm.png", "cosine_di.png",
                 "variance_di.png"):
        p = tmp_path / "plots" / name
        assert p.exists() and p.stat().st_size > 5000, name
        assert f"plots/{name}" in text
    assert (tmp_path / "study.json").exists()
    # the paper's figures beside ours, with a verdict per cell
    assert "## Against the paper (v2)" in text and "2 of the paper's 13 suite tasks" in text
    assert "| di | DR | " in text and "| – | no paper figure |" in text
    row = [x for x in text.splitlines() if x.startswith("| train | DMA*-SH | all |")][0]
    assert "| 0.84 | below |" in row  # ours 0.61 (normalised 61 / 100) vs the paper's 0.84
    row = [x for x in text.splitlines() if x.startswith("| train | vs DR | non-overlap |")][0]
    assert "| 190.5 [" in row and row.endswith("| 90.9 | above |")  # a ratio of IQMs, its CI
    # the headline row: eval-out x non-overlap against v1's 111.8 % and v2's 97.3 %
    rows = [x for x in text.splitlines() if x.startswith("| vs DR | 190.5 [")]
    assert len(rows) == 2 and "| v1 abstract | 111.8 | above | di |" in rows[0]


def test_paper_verdicts():
    from hyperjax.analysis.paper import AER, IQM, verdict
    assert verdict((0.5, 0.4, 0.6), 0.55) == "inside"
    assert verdict((0.5, 0.4, 0.6), 0.7) == "below"
    assert verdict((0.5, 0.4, 0.6), 0.3) == "above"
    assert verdict((960.0, 950.0, 990.0), (967.0, 954.0, 978.0)) == "overlaps"
    assert verdict((900.0, 880.0, 940.0), (967.0, 954.0, 978.0)) == "below"
    assert verdict(None, 0.5) == "not run" and verdict((1, 0, 2), None) == "no paper figure"
    assert IQM["eval_out"]["dma_sh"] == (.68, .59, .73) and AER["cartpole"]["concat"] == 863


# --- JAX side: shadow gradients and the probe -------------------------------------------------

@pytest.fixture(scope="module")
def small_sh():
    from hyperjax import Config, make_program
    prog = make_program(Config(env="di", algo="dma_sh", total_steps=200, eval_every=100,
                               learning_starts=100, eval_episodes=1))
    state = prog.init(jax.random.PRNGKey(0))
    state, _ = jax.jit(prog.steps)(state, 0, 101)  # one completed episode of replay
    return prog, state


def test_shadow_gradients_lift_the_stop_gradient(small_sh):
    from hyperjax.agents import replay as rb
    from hyperjax.analysis.probe import shadow_gradients
    prog, state = small_sh
    agent, params = prog.agent, state.agent.params
    batch = rb.sample(state.replay, jax.random.PRNGKey(1), 12, 100, 24)
    hp = state.agent.hparams
    g = jax.jit(lambda p, b: shadow_gradients(agent, p, b, None, jax.random.PRNGKey(2), hp))(
        params, batch)
    assert np.isfinite(g["actor"]) and g["actor"] > 0
    assert np.isfinite(g["critic"]) and g["critic"] > 0
    # with the stop-gradient in place (the method), the same derivative is exactly zero
    z = agent.encode(params, batch.window, jax.random.PRNGKey(3), True)

    def actor_obj(z):
        cond, _ = agent.cond_from_z(params, z, stop_gradient=True)
        mean, _ = agent.actor.apply(params.actor, batch.obs, cond)
        return jnp.sum(mean)

    assert float(jnp.abs(jax.grad(actor_obj)(z)).max()) == 0.0


def test_probe_windows_and_shapes(small_sh):
    from hyperjax.analysis.probe import make_probe
    prog, state = small_sh
    with pytest.raises(ValueError, match="fewer than n_windows=256"):
        make_probe(prog, episodes=2)
    probe = make_probe(prog, episodes=3, n_windows=256)
    ctx = jnp.asarray(prog.sets.train[:4])
    out = jax.jit(probe)(state, jax.random.PRNGKey(5), ctx)
    assert out["z"].shape == (4, 256, 8) and out["returns"].shape == (4, 3)
    # SimNorm output: two groups of 4 summing to one
    np.testing.assert_allclose(np.asarray(out["z"]).reshape(4, 256, 2, 4).sum(-1), 1.0,
                               rtol=1e-5)
    # the windows: rebuilt step by step with push_window from each episode's start
    from hyperjax.analysis.probe import gather_windows
    from hyperjax.envs.wrappers import Window, push_window, window_features
    ret, traj = jax.jit(prog.rollout)(state.agent.params, jax.random.PRNGKey(6),
                                      jnp.repeat(ctx[:2], 2, axis=0))
    assert ret.shape == (4,) and traj.obs.shape == (4, 24 + 100, 4)
    K, T = 24, 100
    traj2 = jax.tree.map(lambda x: x.reshape(2, 2 * (K + T), *x.shape[2:]), traj)
    pick = jnp.array([[0, 5, 99, 100 + 30], [100 + 99, 1, 23, 100]])
    got = gather_windows(traj2, pick, K, T)
    for c in range(2):
        for j, p in enumerate(np.asarray(pick[c])):
            e, t = divmod(int(p), T)
            w = Window(jnp.zeros((K, 4)), jnp.zeros((K, 2)), jnp.zeros((K, 4)))
            for r in range(K + t + 1):
                w = push_window(w, traj.obs[2 * c + e, r], traj.action[2 * c + e, r],
                                traj.next_obs[2 * c + e, r])
            np.testing.assert_array_equal(got[c, j], window_features(w))


@pytest.mark.slow
def test_cli_study_report_and_resume(tmp_path):
    """(slow: 1-2 min, three compiles; the default suite stays under 15 min.) Two methods in one launch: per-run directories, diagnostics for the inferred method, the
    report and figures at the top; a resumed finished study recompiles nothing."""
    import json
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = tmp_path / "study"
    args = [sys.executable, "-m", "experiments.aib", "--algo=dr,dma", "--env=di", "--seeds=2",
            "--total_steps=100", "--eval_every=100", "--learning_starts=100",
            "--eval_episodes=1", "--bootstrap_reps=100", "--diag_windows=64",
            f"--out_dir={out}"]
    res = subprocess.run(args, cwd=root, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    for algo in ("dr", "dma"):
        assert (out / "di" / algo / "summary.json").exists()
    assert not (out / "di" / "dr" / "diagnostics.json").exists()
    diag = json.loads((out / "di" / "dma" / "diagnostics.json").read_text())
    assert len(diag["splits"]["eval_out"]) == 2 and diag["n_windows"] == 64
    assert np.asarray(diag["fig4"]).shape == (2, 6, 6) and diag["encoder_training"]
    d = diag["splits"]["train"][0]
    assert d["within_context"] + d["within_mode"] + d["between_mode"] == \
        pytest.approx(d["total"], rel=1e-9)
    text = (out / "report.md").read_text()
    for s in ("## AER per task", "## IQM of normalised scores", "## Representation diagnostics",
              "| DMA |", "plots/curves_di.png", "plots/cosine_di.png"):
        assert s in text, s
    assert "Relative gain" not in text  # no DMA*-SH in this study
    res = subprocess.run(args + ["--resume"], cwd=root, capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.count("finished earlier") == 2 and "compiled in" not in res.stdout
