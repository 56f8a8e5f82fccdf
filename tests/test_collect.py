"""``hyperjax.analysis.collect`` and ``python -m experiments.report``: runs and studies read
back from disk, pooled by (task, method), refused when their budgets or code versions differ,
damaged directories named; and the paper's gain statistic (``stats.gain_table``)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from cli_cases import run_cases

from hyperjax.analysis import collect, paper, stats

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CODE = {"version": "0.2.0", "commit": "abc123"}


def _run_dir(path, env, algo, per_seed, total=20, every=10, episodes=1, code=CODE, seed0=0):
    """A finished run directory as ``train_run`` writes it: ``per_seed[i]`` is seed i's score
    (max of the last two evaluations) in every split; its curve over steps 0, every, ...,
    total ends ``score - 1, score``."""
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(dict(env=env, algo=algo, total_steps=total, eval_every=every,
                       eval_episodes=episodes, seeds=len(per_seed), seed=seed0), f)
    steps = list(range(0, total + 1, every))
    with open(os.path.join(path, "metrics.jsonl"), "w") as f:
        for i, score in enumerate(per_seed):
            curve = [0.0] * (len(steps) - 2) + [score - 1.0, score]
            for split in stats.SPLITS:
                for step, aer in zip(steps, curve):
                    f.write(json.dumps(dict(seed=seed0 + i, step=step, split=split, aer=aer,
                                            returns=[aer])) + "\n")
    with open(os.path.join(path, "summary.json"), "w") as f:
        json.dump({"aer": {}, **({"code": code} if code else {})}, f)
    return path


def test_v2_iqm_table_gives_v2_table_9():
    """The paper's gain is a ratio of IQMs: v2's rounded IQM table reproduces all 27 cells of
    v2's Table 9 to 0.1."""
    cells = 0
    for regime, by_base in paper.GAIN.items():
        for b, per_class in by_base.items():
            for j, want in enumerate(per_class):
                got = stats.relative_gain(paper.IQM[regime]["dma_sh"][j], paper.IQM[regime][b][j])
                assert abs(got - want) <= 0.05 + 1e-9, (regime, b, j, got, want)
                cells += 1
    assert cells == 27


def test_gain_is_a_ratio_of_iqms_not_of_means():
    """One outlier among four runs: the IQM drops it, a mean does not (100 % against 14 %)."""
    scores = {"di": {"dma_sh": {s: [50.0, 50.0, 50.0, 50.0] for s in stats.SPLITS},
                     "dr": {s: [25.0, 25.0, 25.0, 100.0] for s in stats.SPLITS}}}
    cell = stats.gain_table(scores, "dma_sh", ("dr",), reps=200)["train"]["dr"]["all"]
    gain, lo, hi = cell["gain"]
    assert gain == pytest.approx(100.0)                      # IQM 0.5 vs 0.25
    assert stats.relative_gain(0.5, np.mean([.25, .25, .25, 1.0])) == pytest.approx(14.2857, 1e-4)
    assert lo <= gain <= hi
    p = cell["poi"][0]    # P(0.5 > y): 3 of 4 runs of DR are lower
    assert p == pytest.approx(0.75)
    assert cell["envs"] == ["di"]


def test_unequal_seed_counts_pool_and_bootstrap():
    cols_eq = [np.array([0.42, 0.72, 0.0, 0.3, 0.15, 0.09, 0.19, 0.35]),
               np.array([0.4, 0.54, 0.42, 0.69, 0.2, 0.88, 0.03, 0.67])]
    rng = np.random.get_state()
    point, lo, hi = stats.iqm_ci(cols_eq, reps=4000)  # equal counts: rliable
    # reproducible (rliable draws from NumPy's global RNG, which iqm_ci seeds and restores)
    np.random.seed(123)
    assert stats.iqm_ci(cols_eq, reps=4000) == (point, lo, hi)
    np.random.set_state(rng)
    assert stats.iqm_ci(cols_eq, reps=4000) == (point, lo, hi)
    assert np.random.get_state()[1].tolist() == rng[1].tolist()
    assert point == pytest.approx(stats.iqm_of(cols_eq))
    b = stats.bootstrap_iqms(cols_eq, reps=4000)   # the generalised resampler agrees
    assert np.percentile(b, 2.5) == pytest.approx(lo, abs=0.02)
    assert np.percentile(b, 97.5) == pytest.approx(hi, abs=0.02)
    cols = [np.array([0.1, 0.4, 0.5]), np.array([0.3, 0.2, 0.9, 0.8, 0.7])]
    point, lo, hi = stats.iqm_ci(cols, reps=500)
    assert point == pytest.approx(stats.iqm_of(cols)) and lo <= point <= hi
    scores = {"di": {"dma_sh": {s: [60.0, 62.0, 61.0] for s in stats.SPLITS},
                     "dr": {s: [20.0, 25.0, 22.0, 21.0, 30.0] for s in stats.SPLITS}},
              "ode": {"dr": {s: [80.0, 90.0] for s in stats.SPLITS}}}
    table = stats.iqm_table(scores, ["dma_sh", "dr"], reps=200)
    assert table["train"]["all"]["dr"] is not None
    g = stats.gain_table(scores, "dma_sh", ("dr",), reps=200)["eval_out"]["dr"]["all"]
    assert g["envs"] == ["di"]  # only the task both ran
    # scipy's trim_mean cuts int(0.25 n) runs at each end: none of 3, one of 5 (21, 22, 25 kept)
    dr = np.mean([0.21, 0.22, 0.25])
    assert g["gain"][0] == pytest.approx(100 * (0.61 - dr) / dr, rel=1e-6)


def test_runs_pool_by_task_and_method(tmp_path):
    _run_dir(tmp_path / "a" / "di" / "dr", "di", "dr", [20.0, 30.0])
    _run_dir(tmp_path / "b" / "dr", "di", "dr", [40.0], seed0=7)
    _run_dir(tmp_path / "a" / "di" / "dma_sh", "di", "dma_sh", [60.0])
    runs, skipped = collect.load([str(tmp_path / "a"), str(tmp_path / "b")])
    assert not skipped and len(runs) == 3
    study = collect.merge(runs)
    assert study.scores["di"]["dr"]["train"] == [20.0, 30.0, 40.0]   # 2 + 1 seeds
    assert study.scores["di"]["dma_sh"]["eval_out"] == [60.0]
    assert study.meta["budgets"] == {"di": [20, 10, 1]}
    assert {p["path"] for p in study.meta["pooled"]} == {
        str(tmp_path / "a" / "di" / "dr"), str(tmp_path / "b" / "dr"),
        str(tmp_path / "a" / "di" / "dma_sh")}


def test_mixed_budgets_or_code_are_refused_unless_allowed(tmp_path):
    _run_dir(tmp_path / "dr", "di", "dr", [20.0])
    _run_dir(tmp_path / "sh", "di", "dma_sh", [60.0], total=30, every=10)
    runs, _ = collect.load([str(tmp_path)])
    with pytest.raises(collect.CollectError, match=r"di: budgets differ \(.*dr \[20, 10, 1\].*"
                                                   r"dma_sh \[30, 10, 1\]"):
        collect.merge(runs)
    study = collect.merge(runs, allow_mixed=True)
    assert "budgets differ" in study.meta["mixed"][0]
    _run_dir(tmp_path / "sh", "di", "dma_sh", [60.0], code={"version": "0.2.0",
                                                                     "commit": "def456"})
    runs, _ = collect.load([str(tmp_path)])
    with pytest.raises(collect.CollectError, match="code versions differ .*abc123.*def456"):
        collect.merge(runs)
    # runs that predate the record pool within one directory given, not across two
    _run_dir(tmp_path / "old1" / "dr", "di", "dr", [20.0], code=None)
    _run_dir(tmp_path / "old1" / "sh", "di", "dma_sh", [60.0], code=None)
    _run_dir(tmp_path / "old2" / "concat", "di", "concat", [50.0], code=None)
    collect.merge(collect.load([str(tmp_path / "old1")])[0])
    with pytest.raises(collect.CollectError, match="code versions differ"):
        collect.merge(collect.load([str(tmp_path / "old1"), str(tmp_path / "old2")])[0])


@pytest.mark.parametrize("damage,why", [
    ("metrics", "metrics.jsonl: unreadable"), ("summary", "no summary.json"),
    ("config", "config.json: unreadable"), ("short", "rows end at step 10")])
def test_a_damaged_run_directory_is_named_and_skipped_or_refused(tmp_path, damage, why):
    _run_dir(tmp_path / "good", "di", "dr", [20.0])
    bad = _run_dir(tmp_path / "bad", "di", "dma_sh", [60.0])
    if damage == "metrics":
        with open(bad / "metrics.jsonl", "a") as f:
            f.write('{"seed": 0, "st')
    elif damage == "summary":
        os.remove(bad / "summary.json")
    elif damage == "config":
        (bad / "config.json").write_text("{")
    else:
        lines = (bad / "metrics.jsonl").read_text().splitlines()
        (bad / "metrics.jsonl").write_text("\n".join(l for l in lines
                                                     if json.loads(l)["step"] < 20))
    runs, skipped = collect.load([str(tmp_path)])
    assert [r.algo for r in runs] == ["dr"]
    assert len(skipped) == 1 and str(bad) in skipped[0] and why in skipped[0]
    with pytest.raises(collect.CollectError, match=why):
        collect.load([str(tmp_path)], strict=True)


def test_a_study_file_without_run_directories_is_read(tmp_path):
    study = {"envs": ["di"], "algos": ["dr"], "curves": {}, "diagnostics": {},
             "scores": {"di": {"dr": {s: [10.0, 12.0] for s in stats.SPLITS}}},
             "meta": {"seeds": 2, "budgets": {"di": [5000, 1000, 5]}}}
    (tmp_path / "study.json").write_text(json.dumps(study))
    runs, _ = collect.load([str(tmp_path)])
    assert [(r.env, r.algo, r.budget, r.scores["train"]) for r in runs] == [
        ("di", "dr", (5000, 1000, 5), [10.0, 12.0])]
    # a run directory under the study's folder wins over its study.json cell
    _run_dir(tmp_path / "dr", "di", "dr", [20.0], total=5000, every=1000)
    with open(tmp_path / "dr" / "metrics.jsonl", "w") as f:
        for split in stats.SPLITS:
            for step in range(0, 5001, 1000):
                f.write(json.dumps(dict(seed=0, step=step, split=split, aer=20.0)) + "\n")
    runs, _ = collect.load([str(tmp_path)])
    assert [r.path for r in runs] == [str(tmp_path / "dr")]


def test_a_written_study_is_read_back_with_its_budgets_and_code_versions(tmp_path):
    """What ``write_study`` writes (``vars(Study)``, ``meta.code`` a list of labels) is read
    back as the runs it pooled: a committed report can stand in for its run directories, and
    its code versions still keep it from pooling with another version's runs."""
    _run_dir(tmp_path / "a" / "dr", "di", "dr", [20.0, 22.0])
    _run_dir(tmp_path / "a" / "concat", "di", "concat", [50.0],
             code=dict(version="0.2.0", commit="feedbeef"))
    runs, _ = collect.load([str(tmp_path / "a")])
    study = collect.merge(runs, allow_mixed=True)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "study.json").write_text(json.dumps(vars(study)))
    back, _ = collect.load([str(tmp_path / "b" / "study.json")])
    key = lambda r: r.algo
    assert [(r.env, r.algo, r.scores, r.budget, r.code) for r in sorted(back, key=key)] == \
        [(r.env, r.algo, r.scores, r.budget, r.code) for r in sorted(runs, key=key)]
    with pytest.raises(collect.CollectError, match="code versions differ"):
        collect.merge(back)


def test_a_study_cell_is_replaced_by_the_run_directories_it_pooled(tmp_path, monkeypatch):
    """A committed report's ``study.json`` and the run directories it pooled, given together
    (a folder holding both, or a rerun committed where the lost runs were), count each run
    once: the cell is read from its directories. A cell that pooled a given directory beside
    one that is not given is refused (its seeds cannot be split)."""
    monkeypatch.chdir(tmp_path)
    _run_dir("runs/di/dr", "di", "dr", [20.0, 22.0])
    _run_dir("runs/di/dma_sh", "di", "dma_sh", [60.0, 61.0])
    _run_dir("more/dr", "di", "dr", [30.0], seed0=5)
    runs, _ = collect.load(["runs", "more"])
    os.makedirs("interim")
    with open("interim/study.json", "w") as f:   # pooled paths as written: relative
        json.dump(vars(collect.merge(runs)), f)
    for cwd in (".", "runs"):                     # and read from another working directory
        monkeypatch.chdir(tmp_path / cwd)
        top = str(tmp_path)
        runs, skipped = collect.load([top + "/runs", top + "/more", top + "/interim"])
        assert not skipped and sorted(r.path for r in runs) == [
            top + "/more/dr", top + "/runs/di/dma_sh", top + "/runs/di/dr"]
        assert collect.merge(runs).scores["di"]["dr"]["train"] == [20.0, 22.0, 30.0]
    monkeypatch.chdir(tmp_path)
    with pytest.raises(collect.CollectError, match=r"interim/study.json: di/dr pooled more/dr "
                                                   r"with .*runs/di/dr, which is given too"):
        collect.load(["runs", "interim/study.json"])
    # one cell replaced by its directory, the other read from the study
    runs, _ = collect.load(["interim/study.json", "runs/di/dma_sh"])
    assert sorted((r.algo, r.path) for r in runs) == [
        ("dma_sh", "runs/di/dma_sh"), ("dr", "interim/study.json")]
    assert collect.merge(runs).scores["di"]["dr"]["train"] == [20.0, 22.0, 30.0]


def test_one_run_in_two_sources_is_refused_even_when_mixing_is_allowed(tmp_path):
    """A copy of a run directory (same seeds, budget and code version), or one run directory
    pooled by two study files, is one run read twice: refused, ``allow_mixed`` or not; the
    same seeds at another budget are other runs."""
    _run_dir(tmp_path / "a" / "dr", "di", "dr", [20.0, 22.0])
    _run_dir(tmp_path / "copy" / "dr", "di", "dr", [20.0, 22.0])
    runs, _ = collect.load([str(tmp_path / "a"), str(tmp_path / "copy")])
    for allow in (False, True):
        with pytest.raises(collect.CollectError, match=r"di/dr: seed 0 in two sources .*a/dr, "
                                                       r".*copy/dr\): one run read twice"):
            collect.merge(runs, allow_mixed=allow)
    _run_dir(tmp_path / "longer" / "dr", "di", "dr", [30.0, 32.0], total=30)
    runs, _ = collect.load([str(tmp_path / "a"), str(tmp_path / "longer")])
    assert collect.merge(runs, allow_mixed=True).scores["di"]["dr"]["train"] == [
        20.0, 22.0, 30.0, 32.0]
    study = vars(collect.merge(collect.load([str(tmp_path / "a")])[0]))
    for name in ("s1", "s2"):
        os.makedirs(tmp_path / name)
        (tmp_path / name / "study.json").write_text(json.dumps(study))
    runs, _ = collect.load([str(tmp_path / "s1"), str(tmp_path / "s2")])
    with pytest.raises(collect.CollectError, match="di/dr: the run directory .*a/dr in two "
                                                   "sources"):
        collect.merge(runs, allow_mixed=True)


def test_report_cli_writes_the_merged_report_and_refuses_in_one_line(tmp_path):
    for algo, v in (("dr", 20.0), ("concat", 50.0), ("dma_sh", 60.0)):
        _run_dir(tmp_path / "runs" / algo, "di", algo, [v, v + 2])
    out = tmp_path / "report"
    res = subprocess.run([sys.executable, "-m", "experiments.report", str(tmp_path / "runs"),
                          f"--out={out}", "--bootstrap_reps=200"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    text = (out / "report.md").read_text()
    assert "## What was pooled" in text and "The headline" in text and "111.8" in text
    assert json.loads((out / "study.json").read_text())["scores"]["di"]["dr"]["train"] == [
        20.0, 22.0]
    _run_dir(tmp_path / "runs" / "dma_sh", "di", "dma_sh", [60.0], total=30)
    cases = (([str(tmp_path / "runs"), f"--out={out}"], "refusing to pool: di: budgets differ"),
             ([f"--out={out}"], "name at least one run or study directory"),
             ([str(tmp_path / "nowhere"), f"--out={out}"], "no such file"))
    # the first refusal as its own process (exit status, all of fd 2); the rest in one process
    res = subprocess.run([sys.executable, "-m", "experiments.report", *cases[0][0]], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and cases[0][1] in res.stderr, res.stderr[-2000:]
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    for (args, msg), (code, err) in zip(cases, run_cases("experiments.report",
                                                         [a for a, _ in cases])):
        assert code == 2 and msg in err and len(err.strip().splitlines()) == 1, (args, err)
