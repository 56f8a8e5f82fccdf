"""``hyperjax.rundir`` and the CLI's use of it: what defines a run (its record), the run's own
context sets read back by ``load_policy``, and a run directory that is never deleted for a run
that cannot start; one writer per run directory (its lock)."""
import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import hyperjax as hj
from hyperjax import rundir
from hyperjax.envs.contexts import SPLITS

from cli_cases import ROOT, aib, aib_inprocess, one_line_error as _one_line_error

TINY = ["--algo=dr", "--env=di", "--total_steps=300", "--eval_every=100",
        "--learning_starts=100", "--eval_episodes=1", "--report=false",
        "--random_baseline=false"]
# the CLI's FAST flags of test_cli.py, as a library Config (the same run record)
FAST_CFG = dict(algo="dr", total_steps=500, eval_every=100, learning_starts=100,
                eval_episodes=1)


def _fewer_contexts():
    own = hj.context_sets("di")
    return dataclasses.replace(own, train=own.train[:10], eval_in=own.eval_in[:10],
                               eval_out=own.eval_out[:10])


def test_the_tasks_own_sets_are_not_recorded_and_other_sets_are():
    cfg = hj.Config(**FAST_CFG)
    assert rundir.context_fields(cfg, 0, None) == {}
    assert rundir.context_fields(cfg, 0, hj.context_sets("di")) == {}
    sets = _fewer_contexts()
    got = rundir.context_fields(cfg, 0, sets)["context_sets"]
    assert {s: len(v) for s, v in got.items()} == {"train": 10, "eval_in": 10, "eval_out": 10}
    back = rundir.run_context_sets({"env": "di", "context_sets": json.loads(json.dumps(got))})
    for s in SPLITS:
        np.testing.assert_array_equal(back.split(s), sets.split(s))   # exact through JSON
    # without a record of sets: the task's own, drawn with the run's seed where it draws
    ode = rundir.run_context_sets({"env": "ode_4", "seed": 7})
    np.testing.assert_array_equal(ode.train, hj.context_sets("ode_4", 7).train)
    assert not np.array_equal(ode.train, hj.context_sets("ode_4", 0).train)


def test_a_context_file_run_is_loaded_with_its_sets_and_a_changed_file_is_refused(
        tmp_path, capsys):
    """A run on 10 contexts per split (a ``--context_file``'s or a library ``sets=``): its record
    holds the sets, so ``load_policy`` restores it (it rebuilt the task's 20 per split and
    failed on the shapes), and a resume after the file's contents changed is refused naming
    ``context_sets`` (only the path was recorded, and the resume was accepted)."""
    sets = _fewer_contexts()
    path = tmp_path / "ctx.json"
    path.write_text(json.dumps({s: sets.split(s).tolist() for s in SPLITS}))
    d = str(tmp_path / "run")
    hj.train_run(hj.Config(**FAST_CFG), d, sets=sets, log=None,
                 extra_record={"context_file": str(path)})
    saved = json.load(open(os.path.join(d, "config.json")))
    assert len(saved["context_sets"]["train"]) == 10
    params, policy = hj.load_policy(d)
    assert params.actor is not None and callable(policy.act)

    changed = {s: sets.split(s).tolist() for s in SPLITS}
    changed["eval_out"][0][0] += 0.5                       # one mass in the file moves
    path.write_text(json.dumps(changed))
    _one_line_error(aib_inprocess(capsys, "--algo=dr", "--total_steps=500", "--eval_every=100",
                                  "--learning_starts=100", "--eval_episodes=1",
                                  f"--context_file={path}", f"--out_dir={d}", "--resume"),
                    r"--resume: the run's config differs in 'context_sets'")


def test_overwrite_refuses_a_run_that_cannot_fit_before_deleting_the_old_one(tmp_path,
                                                                             capsys):
    """``--overwrite`` with settings whose train state cannot fit: one line, exit 2, and the old
    run is still there (it was deleted first, then the memory check refused the new one)."""
    d = tmp_path / "run"
    d.mkdir()
    (d / "config.json").write_text("{}")
    _one_line_error(aib_inprocess(capsys, "--algo=dr", f"--out_dir={d}", "--overwrite",
                                  "--seeds=100000", "--total_steps=100000", "--report=false"),
                    r"the train state of 100000 run\(s\) needs .* GiB")
    assert os.listdir(d) == ["config.json"] and (d / "config.json").read_text() == "{}"


# --- one writer per run directory -----------------------------------------------------------

def test_a_second_writer_on_the_same_run_directory_is_refused(tmp_path):
    d = str(tmp_path / "run")
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from hyperjax.rundir import lock_run_dir
        lock = lock_run_dir({d!r})
        print("locked", flush=True)
        time.sleep(600)
    """)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        res = aib(*TINY, f"--out_dir={d}", "--resume")
        assert res.returncode == 2
        assert f"is in use by another run (pid {holder.pid})" in res.stderr
        assert len(res.stderr.strip().splitlines()) == 1
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # the holder died without cleaning up: the lock is free again
    lock = rundir.lock_run_dir(d)
    lock.close()


def test_the_lock_is_exclusive_within_and_across_processes(tmp_path):
    """Another process cannot take the lock, through the directory or a symlink to it (the
    lock is on the resolved path)."""
    d = str(tmp_path / "run")
    link = str(tmp_path / "link")
    os.makedirs(d)
    os.symlink(d, link)
    lock = rundir.lock_run_dir(d)
    code = textwrap.dedent(f"""
        from hyperjax.rundir import lock_run_dir
        for p in ({d!r}, {link!r}):
            try:
                lock_run_dir(p)
                print("TAKEN", p)
            except ValueError as e:
                print("REFUSED", e)
    """)
    try:
        res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                             text=True, timeout=120)
        lines = res.stdout.strip().splitlines()
        assert len(lines) == 2 and all(l.startswith("REFUSED") and f"pid {os.getpid()}" in l
                                       for l in lines), res.stdout + res.stderr[-2000:]
    finally:
        lock.close()


def test_train_run_never_mixes_two_runs_in_one_directory(tmp_path):
    """A library ``train_run`` into a directory that holds a run, without ``resume``, is
    refused before anything is written or compiled (it used to overwrite config.json and
    metrics.jsonl while orbax silently skipped every checkpoint save); one another process
    writes is refused too. Inside a directory this process locked (the CLI's study) it runs."""
    d = tmp_path / "run"
    d.mkdir()
    (d / "config.json").write_text("{}")
    cfg = hj.Config(algo="dr", total_steps=20, eval_every=10, learning_starts=100)
    with pytest.raises(ValueError, match=r"run directory .*run is not empty: pass resume=True"):
        hj.train_run(cfg, str(d), log=None)
    assert (d / "config.json").read_text() == "{}" and os.listdir(d) == ["config.json"]
    assert not rundir.holds_lock(str(d))                    # released after the call
    with rundir.run_dir_lock(str(tmp_path)):                 # a study's directory, held here
        assert rundir.holds_lock(str(d)) and rundir.holds_lock(str(tmp_path / "a" / "b"))
        with rundir.run_dir_lock(str(d)):                    # re-entered, not re-locked
            pass
        assert rundir.holds_lock(str(d))
    assert not rundir.holds_lock(str(tmp_path))
