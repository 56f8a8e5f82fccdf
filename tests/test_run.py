"""``hyperjax.run`` (the library's run driver, ``train_run``): its options as one record, a
finished run read back and its rows rebuilt from the checkpoint record, a resume over a damaged
newest checkpoint that reproduces the run bit for bit. (Kill-and-resume against the CLI:
test_cli.py; the run directory and its lock: test_rundir.py; the non-finite guard:
test_guards.py.)"""
import dataclasses
import os
import shutil

import pytest

import hyperjax as hj
from hyperjax import checkpoint

from cli_cases import aib, read_rows as _rows

TINY = ["--algo=dr", "--env=di", "--total_steps=300", "--eval_every=100",
        "--learning_starts=100", "--eval_episodes=1", "--report=false",
        "--random_baseline=false"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished tiny DR run (4 segments; checkpoints 3 and 4 kept) and a pristine copy."""
    d = str(tmp_path_factory.mktemp("fin") / "run")
    res = aib(*TINY, f"--out_dir={d}")
    assert res.returncode == 0, res.stderr[-3000:]
    assert checkpoint.all_steps(os.path.join(d, "checkpoints")) == [3, 4]
    return d


@pytest.mark.parametrize("damage", ["deleted", "cut mid-line", "cut to whole lines"])
def test_a_finished_runs_metrics_are_rebuilt_from_the_checkpoint_record(finished, tmp_path,
                                                                       damage):
    d = str(tmp_path / "run")
    shutil.copytree(finished, d)
    path = os.path.join(d, "metrics.jsonl")
    text = open(path).read()
    if damage == "deleted":
        os.remove(path)
    elif damage == "cut mid-line":
        open(path, "w").write(text[: len(text) // 2 + 7])
    else:
        open(path, "w").write("".join(text.splitlines(True)[:5]))
    res = aib(*TINY, f"--out_dir={d}", "--resume")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "rewritten from checkpoint 4" in res.stdout
    assert open(path).read() == text


def test_resume_skips_a_damaged_latest_checkpoint_and_reproduces_the_run(finished, tmp_path):
    """A run killed after its 4th checkpoint whose newest checkpoint is damaged resumes from
    checkpoint 3 and ends with the same rows, bit for bit (resume is exact)."""
    d = str(tmp_path / "run")
    shutil.copytree(finished, d)
    os.remove(os.path.join(d, "summary.json"))   # as if killed before the end
    os.remove(os.path.join(d, "checkpoints", "4", "state", "_METADATA"))
    res = aib(*TINY, f"--out_dir={d}", "--resume")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "checkpoint 4 skipped: it does not restore" in res.stdout
    assert "resumed from checkpoint after 3 segment(s)" in res.stdout
    assert _rows(d) == _rows(finished)


def test_train_run_options_are_one_record_and_unknown_ones_are_named(tmp_path):
    """``train_run(cfg, dir, RunOptions(...), **fields)``: keyword fields replace the record's;
    a misspelt one is refused in one line before anything is created or compiled."""
    cfg = hj.Config(algo="dr", total_steps=20, eval_every=10, learning_starts=100)
    with pytest.raises(ValueError, match=r"unknown option\(s\) sead; RunOptions has seeds, "):
        hj.train_run(cfg, str(tmp_path / "run"), hj.RunOptions(seeds=2), sead=3)
    assert not os.path.exists(tmp_path / "run")
    opts = dataclasses.replace(hj.RunOptions(seeds=2), sweep=("q_lr=1e-3",))
    assert opts.record(cfg.resolved())["seeds"] == 2
    assert opts.record(cfg.resolved())["sweep"] == ["q_lr=1e-3"]


def test_keep_checkpoints_must_keep_one():
    with pytest.raises(ValueError, match=r"keep_checkpoints must be >= 1, got 0"):
        hj.RunOptions(keep_checkpoints=0)
