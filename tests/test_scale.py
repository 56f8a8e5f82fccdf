"""Scale: runs sharded over devices, several processes over loopback, hyperparameter sweeps.

The device tests run the CLI in subprocesses, because the number of (fake) CPU devices is fixed
when JAX starts: ``XLA_FLAGS=--xla_force_host_platform_device_count=8``.
"""
import dataclasses
import json
import os
import socket
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hyperjax as hj
from hyperjax.agents import replay as rb
from hyperjax.config import parse_sweep, sweep_points
from hyperjax.parallel import sweep_hparams

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# three segments (checkpoints between them), 21 gradient steps: long enough to move every
# network, short enough that rounding differences stay at rounding level (test_train.py)
TINY = ["--total_steps=20", "--eval_every=10", "--learning_starts=100", "--eval_episodes=1",
        "--report=false", "--diagnostics=false"]
LOSSES = ("q_loss", "actor_loss", "alpha", "model_loss")


def _start(args, out_dir, devices=None, env_extra=None):
    env = dict(os.environ)
    if devices:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env.update(env_extra or {})
    return subprocess.Popen([sys.executable, "-m", "experiments.aib", *TINY, *args,
                             f"--out_dir={out_dir}"], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _finish(proc, timeout=600):
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    return out


def _rows(run_dir):
    return [json.loads(x) for x in open(os.path.join(run_dir, "metrics.jsonl"))]


def _same_rows(a, b, loss_rtol):
    """Rows of two runs of the same seeds: same keys/order, the random episode's return
    exactly equal, evaluation returns within one goal step, losses equal up to
    ``loss_rtol``."""
    assert [(r["seed"], r["step"], r["split"]) for r in a] == \
           [(r["seed"], r["step"], r["split"]) for r in b]
    for x, y in zip(a, b):
        if x["step"] == 0:  # the random episode: bit-identical rollouts
            assert x["train_return"] == y["train_return"]
        np.testing.assert_allclose(y["returns"], x["returns"], atol=1.0)
        for k in LOSSES:
            if k in x and np.isfinite(x[k]):
                np.testing.assert_allclose(y[k], x[k], rtol=loss_rtol, atol=1e-6, err_msg=k)


def test_parse_sweep_grid_and_errors():
    sweep = parse_sweep(["lr=1e-3,3e-4", "tau=0.01"])
    points = sweep_points(sweep)
    assert len(points) == 2 and points[1] == dict(q_lr=3e-4, actor_lr=3e-4, alpha_lr=3e-4,
                                                  model_lr=3e-4, tau=0.01)
    grid = sweep_points(parse_sweep(["q_lr=1,2", "gamma=0.9,0.95,0.99"]))
    assert [(p["q_lr"], p["gamma"]) for p in grid][:4] == [(1, .9), (1, .95), (1, .99), (2, .9)]
    hp = sweep_hparams(grid, n_seeds=2)  # point-major runs, 2 seeds each
    np.testing.assert_array_equal(hp["gamma"], np.float32([.9, .9, .95, .95, .99, .99] * 2))
    assert sweep_hparams(sweep_points({}), 3) is None
    for bad, msg in [(["batch_size=1,2"], "cannot sweep 'batch_size'"),
                     (["tau"], "expected NAME=V1"), (["tau=a"], "must be numbers"),
                     (["tau=0.1", "tau=0.2"], "given twice"), (["tau="], "no values"),
                     (["lr=1", "q_lr=2"], "do not combine")]:
        with pytest.raises(ValueError, match=msg):
            parse_sweep(bad)


def test_num_envs_rows_and_stratified_sampling():
    """``num_envs = m * C``: the replay has m rows per context (context-major) and every
    sample of context c comes from one of its own m rows."""
    cfg = hj.Config(env="di", algo="dr", total_steps=200, eval_every=100, num_envs=60)
    prog = hj.make_program(cfg)
    state = jax.eval_shape(prog.init, jax.random.PRNGKey(0))
    assert state.replay.obs.shape[0] == 60
    buf = rb.init(60, 2, 0, 100, 1, 1)._replace(episodes=jnp.int32(2), t=jnp.int32(100))
    buf = buf._replace(obs=buf.obs + jnp.arange(60.0)[:, None, None, None])  # obs = row id
    batch = rb.sample(buf, jax.random.PRNGKey(1), 12, 100, 0, n_contexts=20)
    row = np.asarray(batch.obs[:, 0]).astype(int)
    c = np.asarray(batch.context_id)
    np.testing.assert_array_equal(c, np.repeat(np.arange(20), 12))
    assert ((row // 3) == c).all() and len(set(row % 3)) == 3  # own rows, all three used
    with pytest.raises(ValueError, match="num_envs=30 is not a multiple of the 20"):
        hj.make_program(dataclasses.replace(cfg, num_envs=30))


@pytest.mark.slow  # sweeps as vmaps stay checked by default in tests/test_methods.py
def test_sweep_cli_points_equal_separate_runs(tmp_path):
    """``--sweep`` trains every point in one program; a point's rows equal a separate run at
    that point's values (same seeds)."""
    sweep = _start(["--algo=dr", "--seeds=2", "--sweep=tau=0.005,0.05"], tmp_path / "sweep")
    single = _start(["--algo=dr", "--seeds=2", "--tau=0.05"], tmp_path / "single")
    out = _finish(sweep)
    _finish(single)
    assert "2 seed(s) x 2 sweep points" in out
    rows = _rows(tmp_path / "sweep")
    point = [r for r in rows if r["hparams"] == {"tau": 0.05}]
    _same_rows(_rows(tmp_path / "single"), point, loss_rtol=1e-4)
    other = [r for r in rows if r["hparams"] == {"tau": 0.005}]
    assert [r["q_loss"] for r in other if r["step"] == 20] != \
           [r["q_loss"] for r in point if r["step"] == 20]
    summary = json.load(open(tmp_path / "sweep" / "summary.json"))
    assert [p["hparams"] for p in summary["sweep"]] == [{"tau": 0.005}, {"tau": 0.05}]


@pytest.mark.slow  # two processes at once, ~75 CPU-seconds: the suite's largest single cost
@pytest.mark.parametrize("algo", ["dr", "dma_sh"])
def test_sharded_over_8_devices_equals_one_device(tmp_path, algo):
    """``--seeds=4 --num_envs=40 --shard_envs`` on 8 (fake CPU) devices: a 4 x 2 mesh (runs x
    envs) uses every device, and the metrics are those of the single-device run up to rounding
    (XLA:CPU rounds unbatched and batched matmuls differently, ~1e-7, as in test_train.py);
    rollouts before learning are bit-identical. DMA*-SH takes 2.5 min cold. By default the
    mesh shapes are checked (``test_run_mesh_shapes``) and every CLI test runs the sharded
    code path on one device."""
    args = [f"--algo={algo}", "--seeds=4", "--num_envs=40", "--random_baseline=false"]
    sharded = _start(args + ["--shard_envs"], tmp_path / "sharded", devices=8)
    single = _start(args, tmp_path / "single")
    out = _finish(sharded)
    _finish(single)
    assert "8 cpu device(s), envs over 2" in out
    _same_rows(_rows(tmp_path / "single"), _rows(tmp_path / "sharded"), loss_rtol=1e-3)
    summary = json.load(open(tmp_path / "sharded" / "summary.json"))
    assert summary["devices"] == 8 and summary["mesh"] == {"seed": 4, "env": 2}


def test_run_mesh_shapes():
    from hyperjax.parallel import run_mesh
    devs = [jax.devices()[0]] * 8  # shapes only
    shape = lambda *a, **k: dict(run_mesh(*a, devices=devs, **k).shape)
    assert shape(16) == {"seed": 8, "env": 1} and shape(6) == {"seed": 6, "env": 1}
    assert shape(2, n_envs=20) == {"seed": 2, "env": 1}  # 5 envs a device: not worth it
    assert shape(2, n_envs=20, shard_envs=True) == {"seed": 2, "env": 4}
    assert shape(1, n_envs=4080) == {"seed": 1, "env": 8}
    assert shape(2, n_envs=1280) == {"seed": 2, "env": 4}


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # two processes, each compiling the program (~1.5 min on 2 cores)
def test_two_processes_over_loopback_equal_one_process(tmp_path):
    """``jax.distributed`` with 2 processes on this machine: each trains 2 of the 4 seeds,
    process 0 writes the merged metrics, which equal the single-process run's."""
    port = _free_port()
    args = ["--algo=dr", "--seeds=4"]
    multi = [f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2"]
    procs = [_start(args + multi + [f"--process_id={i}"], tmp_path / "multi") for i in (0, 1)]
    single = _start(args, tmp_path / "single")
    outs = [_finish(p) for p in procs]
    _finish(single)
    assert "2 processes" in outs[0] and "step" not in outs[1]  # only process 0 reports
    _same_rows(_rows(tmp_path / "single"), _rows(tmp_path / "multi"), loss_rtol=1e-4)
    summary = json.load(open(tmp_path / "multi" / "summary.json"))
    assert summary["processes"] == 2 and summary["devices"] == 2
    assert sorted(os.listdir(tmp_path / "multi" / "checkpoints")) == ["2", "3"]
