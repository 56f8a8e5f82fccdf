"""``hyperjax.guards``: the non-finite guard (a run that diverges stops the batch; under a sweep
a diverging point is named and the other points train on) and the memory check."""
import json
import os
import time

import numpy as np
import pytest

import hyperjax as hj
from hyperjax import guards

from cli_cases import aib


def test_the_guard_names_the_sweep_point_and_stops_only_when_every_run_diverged(
        monkeypatch, tmp_path):
    """Runs in ``hyperjax.run``'s order (point-major, seeds inner): run 3 of 2 seeds x 2 points
    is seed 1 of the second point. A diverging point used to be reported as "seed 1" and
    stopped the healthy point too."""
    bad = {}
    monkeypatch.setattr(guards, "non_finite", lambda state, rows, updates: dict(bad))
    points = [{"q_lr": 1e-3}, {"q_lr": 1e30}]
    g = guards.DivergenceGuard(0, 2, points)
    assert g.check(None, [], True, 100, str(tmp_path), 100) == []
    bad.update({3: "q_loss"})
    (line,) = g.check(None, [], True, 200, str(tmp_path), 100)
    assert "non-finite q_loss at step 200 in seed 1 of sweep point q_lr=1e+30: that run " \
           "diverged" in line
    assert g.diverged == [dict(quantity="q_loss", step=200, seed=1, hparams={"q_lr": 1e30})]
    assert g.check(None, [], True, 300, str(tmp_path), 100) == []      # said once
    bad.update({0: "actor parameters", 1: "q_loss", 2: "q_loss"})
    with pytest.raises(guards.NonFiniteError, match=r"non-finite actor parameters at step 400 "
                                                    r"in seed 0 of sweep point q_lr=0.001 "
                                                    r"\(every run of the sweep has diverged\)"):
        g.check(None, [], True, 400, str(tmp_path), 100)
    # without a sweep a diverging seed stops the batch at once
    with pytest.raises(guards.NonFiniteError, match=r"non-finite q_loss at step 100 in seed 4; "
                                                    r"stopping: no checkpoint had been written"):
        bad.clear()
        bad.update({1: "q_loss"})
        guards.DivergenceGuard(3, 2, [{}]).check(None, [], True, 100, str(tmp_path), 100)


def test_a_diverging_sweep_point_is_listed_and_the_healthy_one_trains_on(tmp_path):
    """``--sweep=lr=1e30,3e-4`` through the library driver: the first point diverges, is said
    once and listed in summary.json's ``diverged``; the second trains to the end with finite
    AER (the whole sweep used to stop, naming "seed 0")."""
    said = []
    cfg = hj.Config(algo="dr", total_steps=300, eval_every=100, learning_starts=100,
                    eval_episodes=1)
    d = str(tmp_path / "run")
    hj.train_run(cfg, d, sweep=("lr=1e30,3e-4",), random_baseline=False, log=said.append)
    lines = [s for s in said if "diverged" in s]
    assert len(lines) == 1 and "in seed 0 of sweep point q_lr=1e+30, actor_lr=1e+30" in lines[0]
    summary = json.load(open(os.path.join(d, "summary.json")))
    (div,) = summary["diverged"]
    assert div["hparams"]["q_lr"] == 1e30 and div["seed"] == 0 and div["step"] <= 300
    healthy = [p for p in summary["sweep"] if p["hparams"]["q_lr"] == 3e-4][0]
    assert all(np.isfinite(v[0]) for v in healthy["aer"].values()), healthy   # (mean, std, seeds)
    # the diverged point scores NaN, never the 0 its NaN states would have read as AER
    gone = [p for p in summary["sweep"] if p["hparams"]["q_lr"] == 1e30][0]
    assert all(np.isnan(v[0]) for v in gone["aer"].values()), gone
    rows = [json.loads(x) for x in open(os.path.join(d, "metrics.jsonl"))]
    assert all(np.isnan(r["aer"]) for r in rows if r["hparams"]["q_lr"] == 1e30
               and r["step"] >= div["step"])


def test_non_finite_guard_stops_and_keeps_last_finite_checkpoint(tmp_path):
    d = str(tmp_path / "run")
    res = aib("--algo=dr", "--total_steps=1000", "--eval_every=100", "--learning_starts=100",
              "--eval_episodes=1", "--q_lr=1e30", "--actor_lr=1e30", f"--out_dir={d}")
    assert res.returncode == 1, (res.returncode, res.stderr[-2000:])
    line = res.stderr.strip().splitlines()[-1]
    assert "non-finite" in line and "at step" in line and "in seed 0" in line, line
    ckpts = os.path.join(d, "checkpoints")
    if "no checkpoint had been written" in line:  # the message says what is true
        assert not os.path.isdir(ckpts) or not os.listdir(ckpts)
    else:  # checkpoint n holds n segments: the evaluations at steps 0 .. (n - 1) * 100
        steps = sorted(int(x) for x in os.listdir(ckpts))
        assert f"({max(steps)} segment(s)" in line
        assert (max(steps) - 1) * 100 < int(line.split("at step ")[1].split()[0])
    assert not os.path.exists(os.path.join(d, "summary.json"))


# --- the memory check ------------------------------------------------------------------------

def test_a_train_state_that_cannot_fit_is_refused_before_compiling():
    t0 = time.time()
    res = aib("--algo=dr", "--env=di", "--seeds=100000", "--total_steps=100000",
              "--report=false")
    assert res.returncode == 2, res.stderr[-2000:]
    assert "needs" in res.stderr and "GiB" in res.stderr and "is available" in res.stderr
    assert "compiled" not in res.stdout
    assert time.time() - t0 < 120


def test_state_bytes_counts_the_replay():
    prog = hj.make_program(hj.Config(algo="dr", total_steps=100, eval_every=100,
                                     learning_starts=100, eval_episodes=1))
    one, four = guards.state_bytes(prog, 1), guards.state_bytes(prog, 4)
    assert four == 4 * one
    # at least obs and next_obs of one stored episode per context, float32
    assert one > 20 * 100 * 2 * prog.env.obs_dim * 4
