"""Runs that survive damaged files and bad values (issue 17): checkpoint fallback and saves
(``hyperjax.checkpoint``), hyperparameters validated once wherever they come from, env inputs
checked at trace time, the compilation cache (the driver's read-back and resume:
test_run.py; the run directory's lock: test_rundir.py; the memory check: test_guards.py)."""
import json
import os
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hyperjax as hj
from hyperjax import checkpoint, config, parallel

from cli_cases import aib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# --- damaged checkpoints ---------------------------------------------------------------------

def _two_checkpoints(d):
    state = {"w": jnp.arange(6.0).reshape(2, 3), "n": jnp.int32(7)}
    for step in (1, 2):
        checkpoint.save(d, step, jax.tree.map(lambda x: x + step, state),
                        {"segments": step, "rows": [step]})
    return jax.eval_shape(lambda: state)


def _damage(d, how):
    item = os.path.join(d, "2", "state")
    if how == "truncated data file":
        files = [os.path.join(r, f) for r, _, fs in os.walk(item) for f in fs
                 if os.path.getsize(os.path.join(r, f)) > 8 and "METADATA" not in f
                 and not f.endswith(".json")]
        assert files, os.listdir(item)
        for path in files:
            with open(path, "r+b") as f:
                f.truncate(os.path.getsize(path) // 3)
    elif how == "missing _METADATA":
        os.remove(os.path.join(item, "_METADATA"))
    elif how == "deleted state item":
        shutil.rmtree(item)


@pytest.mark.parametrize("how", ["truncated data file", "missing _METADATA",
                                 "deleted state item"])
def test_restore_falls_back_to_the_newest_checkpoint_that_restores(tmp_path, how):
    d = str(tmp_path / "ckpt")
    abstract = _two_checkpoints(d)
    _damage(d, how)
    state, record, step, skipped = checkpoint.restore_good(d, abstract)
    assert step == 1 and record["rows"] == [1] and [s for s, _ in skipped] == [2]
    np.testing.assert_array_equal(state["w"], np.arange(6.0).reshape(2, 3) + 1)
    assert "\n" not in skipped[0][1]


def test_no_checkpoint_restores_is_one_error_naming_each(tmp_path):
    d = str(tmp_path / "ckpt")
    abstract = _two_checkpoints(d)
    for step in ("1", "2"):
        shutil.rmtree(os.path.join(d, step, "state"))
    with pytest.raises(checkpoint.CheckpointError, match=r"no checkpoint in .* restores \(2: .*; 1: "):
        checkpoint.restore_good(d, abstract)


def test_an_incompatible_checkpoint_is_refused_not_skipped(tmp_path):
    d = str(tmp_path / "ckpt")
    abstract = _two_checkpoints(d)

    def check(record):
        raise checkpoint.CheckpointError("checkpoint config differs in 'tau'")

    with pytest.raises(checkpoint.CheckpointError, match="differs in 'tau'"):
        checkpoint.restore_good(d, abstract, check)


# --- saves ---------------------------------------------------------------------------------

def test_a_save_replaces_checkpoints_at_or_after_its_step(tmp_path):
    """Saving step s deletes checkpoints s and above first (an earlier process's: e.g. the
    damaged final one a resume skipped, which orbax would otherwise keep, skipping the save in
    silence) and says so if orbax writes nothing."""
    d = str(tmp_path / "ckpt")
    for step in (1, 2, 3):
        checkpoint.save(d, step, {"x": jnp.full(3, float(step))}, {"config": {}})
    checkpoint.save(d, 2, {"x": jnp.full(3, 20.0)}, {"config": {}})
    assert checkpoint.all_steps(d) == [1, 2]
    state, _ = checkpoint.restore(d, {"x": jnp.zeros(3)}, 2)
    np.testing.assert_array_equal(state["x"], [20.0, 20.0, 20.0])


# --- values validated once -------------------------------------------------------------------

@pytest.mark.parametrize("item,msg", [("q_lr=-1,1e-3", "q_lr must be positive"),
                                      ("gamma=2,0.9", r"gamma must be in \(0, 1\]"),
                                      ("lr=0", "q_lr must be positive"),
                                      ("mask_rate=1.0", r"mask_rate must be in \[0, 1\)"),
                                      ("tau=nan", "tau must be finite")])
def test_sweep_values_are_validated_like_the_flags(item, msg):
    with pytest.raises(ValueError, match=msg):
        config.parse_sweep([item])


def test_cli_refuses_a_bad_sweep_point_in_one_line():
    res = aib("--algo=dr", "--total_steps=100", "--sweep=q_lr=-1,1e-3")
    assert res.returncode == 2 and "q_lr must be positive" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_an_unwritable_cache_directory_turns_the_cache_off_and_says_so(capsys):
    """An unwritable HOME (or HYPERJAX_CACHE_DIR) crashed both CLIs; the cache is now off for
    the process, with one line saying why, and JAX's settings are left as they were."""
    from hyperjax import utils
    before = jax.config.jax_compilation_cache_dir
    assert utils.enable_compilation_cache("/proc/hyperjax-cache") is None
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "compilation cache off: cannot create /proc/hyperjax-cache" in err[0]
    assert jax.config.jax_compilation_cache_dir == before


@pytest.mark.parametrize("field,value,msg", [
    ("bootstrap_truncation", "no", r"bootstrap_truncation must be True or False, got 'no'"),
    ("gamma", "0.9", r"gamma must be a number, got '0.9'"),
    ("q_lr", None, r"q_lr must be a number, got None"),
    ("tau", True, r"tau must be a number, got True"),
    ("pearl_beta", float("nan"), r"pearl_beta must be finite and >= 0, got nan"),
    ("pearl_beta", -0.1, r"pearl_beta must be finite and >= 0, got -0.1"),
])
def test_a_library_config_of_the_wrong_kind_is_refused(field, value, msg):
    """What the flags' types enforce, Config enforces for library callers too (a string
    'no' was a true bootstrap_truncation; q_lr=None reached the optimiser)."""
    with pytest.raises(ValueError, match=msg):
        hj.Config(algo="dr", **{field: value}).resolved()
    ok = dict(gamma=np.float32(0.9), q_lr=jnp.asarray(1e-3), target_entropy=None)
    hj.Config(algo="dr", **ok).resolved()                   # NumPy / 0-d arrays, None defaults


def test_seed_keys_needs_a_seed():
    with pytest.raises(ValueError, match="at least one seed"):
        parallel.seed_keys(0, 0)


# --- env inputs checked at trace time --------------------------------------------------------

def test_env_refuses_a_wrong_context_or_action_shape_naming_it():
    env = hj.make_env("di_perm")
    key = jax.random.PRNGKey(0)
    ctx = jnp.array([1.0, 0.0])
    with pytest.raises(ValueError, match=r"di_perm.reset: context must have shape \(2,\)"):
        env.reset(key, jnp.ones(3))
    with pytest.raises(ValueError, match=r"context must have shape \(2,\).*got \(\)"):
        jax.jit(env.reset)(key, jnp.float32(1.0))
    state, _ = env.reset(key, ctx)
    with pytest.raises(ValueError, match=r"di_perm.step: action must have shape \(2,\), "
                                         r"got \(1,\)"):
        env.step(key, state, jnp.ones(1), ctx)
    # under vmap the per-example shapes are checked
    with pytest.raises(ValueError, match="action must have shape"):
        jax.vmap(env.step, (None, None, 0, None))(key, state, jnp.ones((4, 3)), ctx)
    env.step(key, state, jnp.ones(2), ctx)   # the right shapes pass


def test_a_long_random_phase_still_trains():
    """learning_starts far beyond total_steps: the authors' accounting still makes N + 1
    gradient steps after the random phase (no run exits 0 without training)."""
    cfg = hj.Config(algo="dr", total_steps=100, eval_every=100, learning_starts=1000,
                    eval_episodes=1)
    state, m = jax.jit(hj.make_train(cfg))(jax.random.PRNGKey(0))
    assert int(state.agent.opt_state.critic.count) == 101
    assert np.isfinite(m["q_loss"]).all()


def test_a_record_that_fails_to_serialise_leaves_the_old_file_whole(tmp_path):
    """summary.json / result.json / study.json go through write_json_atomic: an object JSON
    cannot hold raises before the file is touched (``open(path, "w")`` + ``json.dump`` would
    have left it truncated), and no temporary file is left beside it."""
    from hyperjax.utils import write_json_atomic
    path = str(tmp_path / "summary.json")
    write_json_atomic(path, {"aer": 1.0}, indent=2)
    with pytest.raises(TypeError):
        write_json_atomic(path, {"aer": object()}, indent=2)
    assert json.load(open(path)) == {"aer": 1.0}
    assert os.listdir(tmp_path) == ["summary.json"]


# --- the persistent compilation cache: read back where this host can, and quiet in the CLIs ---

def test_captured_stderr_fd_holds_what_cxx_code_writes_to_fd_2():
    from hyperjax.utils import captured_stderr_fd
    with captured_stderr_fd() as log:
        os.write(2, b"E0000 cpu_aot_loader.cc:220] Loading XLA:CPU AOT result.\n")
    assert "cpu_aot_loader" in log[0]


def test_the_cache_is_turned_off_where_the_host_cannot_read_its_entries(tmp_path, monkeypatch):
    import jax
    from hyperjax import utils
    monkeypatch.setattr(utils, "probe_cache", lambda: utils.CacheProbe(False, True))
    try:
        assert utils.enable_compilation_cache(str(tmp_path)) is None
        assert not jax.config.jax_enable_compilation_cache
    finally:
        monkeypatch.undo()
        utils.enable_compilation_cache(probe=False)  # the suite's cache, as conftest sets it
    assert jax.config.jax_enable_compilation_cache


def test_a_cached_run_reads_the_first_runs_entry_bitwise_and_prints_no_loader_lines(tmp_path):
    """Two processes through the CLI's setup (``quiet=True``): the second reads the first's
    entry (JAX's ``cache_hits`` event) where the probe says this host can, and its result is
    the first's to the bit; XLA's AOT-loader lines are dropped from fd 2 while the process's
    other stderr output, partial lines included, passes in order."""
    code = ("import os, sys, experiments.aib, jax, jax.numpy as jnp\n"
            "from hyperjax.utils import enable_compilation_cache\n"
            "jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)\n"
            "hits = []\n"
            "jax.monitoring.register_event_listener(lambda e, **k: hits.append(e) "
            "if e.endswith('cache_hits') else None)\n"
            "path = enable_compilation_cache(sys.argv[1], quiet=True)\n"
            "jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)\n"
            "hits.clear()\n"
            "x = jax.jit(lambda x: jnp.sin(x) @ x)(jnp.arange(16.0).reshape(4, 4))\n"
            "os.write(2, b'E0000 cpu_aot_loader.cc:1] a loader line\\nkept line\\n')\n"
            "sys.stderr.write('partial'); sys.stderr.flush()\n"
            "print(path is not None, len(hits), x.ravel().tolist())\n")
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    outs = []
    for _ in range(2):
        out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        assert "cpu_aot_loader" not in out.stderr and "pjrt_executable" not in out.stderr, \
            out.stderr
        assert out.stderr.endswith("kept line\npartial"), out.stderr
        outs.append(out.stdout.split(" ", 2))
    (on, hits0, x0), (_, hits1, x1) = outs
    assert hits0 == "0" and x0 == x1
    assert (int(hits1) > 0) == (on == "True")
