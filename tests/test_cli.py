"""`python -m experiments.aib`: bad input, run directories, checkpoints, resume, NaN guard."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from cli_cases import aib, aib_inprocess, one_line_error as _one_line_error, read_rows as _rows

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAST = ["--algo=dr", "--total_steps=500", "--eval_every=100", "--learning_starts=100",
        "--eval_episodes=1", "--bootstrap_reps=100"]


@pytest.mark.parametrize("args, pattern", [
    (["--algo=sac"], r"unknown algo 'sac'; valid: dr, concat, da, dma, dma_pearl, dma_star, "
                     r"dma_sh"),
    (["--env=hopper"], r"unknown env 'hopper'; valid: di, di_friction, di_perm, ode, cartpole, "
                      r"ball_in_cup, walker, cheetah, reacher_easy"),
    (["--task=cheetah"], r"Unknown command line flag 'task'"),
    (["--algo=dr,sac"], r"unknown algo 'sac'; valid: dr, .*, dma_sh_actor_critic_grad, or all"),
    (["--total_steps=0"], r"total_steps must be a positive integer, got 0"),
    (["--total_steps=-100"], r"total_steps must be a positive integer"),
    (["--total_steps=abc"], r"total_steps.*(int|integer)"),
    (["--total_steps=1.5"], r"total_steps.*(int|integer)"),
    (["--seeds=0"], r"seeds must be a positive integer"),
    (["--batch_size=250"], r"batch_size=250 is not divisible by the 20 training contexts"),
    (["--total_steps=1000", "--eval_every=2000"], r"eval_every=2000 is larger than "
                                                  r"total_steps=1000"),
    (["--learning_starts=50"], r"learning_starts=50 must be at least the episode length 100"),
    (["--total_steps=2000"], r"eval_every=5000 is larger than total_steps=2000 \(eval_every=5000 "
                             r"is the paper's, which --total_steps keeps: give --eval_every too\)"),
    (["--out_dir=/etc/hostname/run"], r"output directory .* is not writable"),
    (["--sweep=batch_size=1,2"], r"cannot sweep 'batch_size'; sweepable: lr"),
    (["--algo=dr", "--sweep=mask_rate=0.1,0.2"], r"--sweep mask_rate: 'dr' has no context"),
    (["--num_processes=2"], r"--coordinator_address, --num_processes and --process_id go "
                            r"together"),
    (["--num_envs=30"], r"num_envs=30 is not a multiple of the 20 training contexts"),
    (["--overwrite", "false"], r"unexpected argument\(s\) 'false': flags take --name=value; "
                               r"a boolean is --name or --noname"),
    # values past what the compiled program or a PRNGKey holds: one line, not a traceback or
    # a silent wrap (seed 2**32 was seed 0)
    (["--total_steps=3000000000", "--eval_every=1000000000"],
     r"total_steps=3000000000 is above 2\*\*31 - 1: the compiled loop counts in int32"),
    (["--seed=4294967296"], r"seed=4294967296 with seeds=1: the seeds must lie in \[0, 2\*\*32\)"),
    (["--seed=18446744073709551616"], r"seed"),
    (["--seed=-1"], r"the seeds must lie in \[0, 2\*\*32\)"),
    (["--context_size=1000000000"], r"context_size=1000000000 is longer than the episode "
                                    r"length 100 of 'di'"),
    (["--suite=paper", "--budget_scale=inf"], r"budget_scale must be positive and finite"),
])
def test_bad_input_is_one_line_and_exit_2(args, pattern, capsys):
    _one_line_error(aib_inprocess(capsys, *args), pattern)


def test_bad_input_exit_status_of_the_process():
    _one_line_error(aib("--algo=sac"), r"unknown algo 'sac'")


def test_helpshort_lists_the_budget_and_hyperparameter_flags():
    """The Config flags are defined in hyperjax.config; the CLI adopts them as its own."""
    res = aib("--helpshort")
    for name in ("--total_steps", "--eval_every", "--q_lr", "--tau", "--seeds", "--algo"):
        assert f"  {name}:" in res.stdout + res.stderr, name


@pytest.mark.parametrize("content, pattern", [
    ({"train": [[1.0, 1.0, 3.0]]}, r"train context set must have shape \[N, 2\]"),
    ({"eval_out": [[float("nan"), 1.0]]}, r"'mass' is not finite in row 0"),
    ({"eval_in": [[1.0, 1.0], [9.0, -1.0]]}, r"'mass' = 9 in row 1 is outside its bounds"),
    ({"eval_in": [[1.0, 0.3]]}, r"'action_factor' = 0.3 in row 0 is not one of"),
    ({"test": [[1.0, 1.0]]}, r"keys among"),
    ({"train": [[1.0, 1.0]] * 7}, r"batch_size=240 is not divisible by the 7 training"),
    ({"eval_in": [[1.0, 1.0], [1.5, -1.0]]}, r"the context sets must have one size .* got "
                                             r"\{'train': 20, 'eval_in': 2, 'eval_out': 20\}"),
])
def test_malformed_context_file(tmp_path, content, pattern, capsys):
    path = tmp_path / "ctx.json"
    path.write_text(json.dumps(content))
    _one_line_error(aib_inprocess(capsys, f"--context_file={path}"), pattern)


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("ref") / "run")
    res = aib(*FAST, f"--out_dir={d}")
    assert res.returncode == 0, res.stderr[-3000:]
    return d, res


def test_run_directory_layout_and_table(reference_run):
    d, res = reference_run
    assert {"config.json", "metrics.jsonl", "summary.json", "checkpoints", "report.md",
            "plots"} <= set(os.listdir(d))
    assert not os.path.exists(os.path.join(d, "diagnostics.json"))  # DR has no z
    cfg = json.load(open(os.path.join(d, "config.json")))
    assert cfg["algo"] == "dr" and cfg["total_steps"] == 500 and cfg["seeds"] == 1
    rows = _rows(d)
    assert len(rows) == 6 * 3 and {r["split"] for r in rows} == {"train", "eval_in", "eval_out"}
    assert all(len(r["returns"]) == 20 for r in rows)
    assert sorted(os.listdir(os.path.join(d, "checkpoints"))) == ["5", "6"]  # keep 2
    assert "compiled in" in res.stdout and "step     500/500" in res.stdout
    lines = res.stdout.splitlines()
    assert "eval_out" in lines[-2] and lines[-1].startswith("report: ")


def test_method_and_task_lists():
    from experiments import aib as cli
    assert cli.parse_names("all", ["dr", "concat"], "algo", allow_all=True) == ["dr", "concat"]
    assert cli.parse_names("concat, dr,concat", ["dr", "concat"], "algo") == ["concat", "dr"]
    with pytest.raises(ValueError, match="--algo is empty"):
        cli.parse_names(",", ["dr"], "algo")
    with pytest.raises(ValueError, match="unknown env 'pong'; valid: di, ode$"):
        cli.parse_names("di,pong", ["di", "ode"], "env")
    cli.FLAGS(["aib", "--diag_windows=0"])
    try:
        with pytest.raises(ValueError, match="diag_windows must be a positive integer"):
            cli.build_config()
    finally:
        cli.FLAGS.unparse_flags()


def test_a_damaged_run_record_is_named_in_one_line(tmp_path, capsys):
    """A resume over a config.json that is not JSON, and load_policy of it, name the file
    (they gave the decoder's bare 'Expecting value: line 1 column 1')."""
    import hyperjax as hj
    d = tmp_path / "run"
    d.mkdir()
    (d / "config.json").write_text('{"algo": "dr", ')
    _one_line_error(aib_inprocess(capsys, "--algo=dr", f"--out_dir={d}", "--resume"),
                    r"run/config.json is damaged \(not JSON: .*\); restore it or remove the run")
    with pytest.raises(ValueError, match=r"run/config.json is damaged \(not JSON"):
        hj.load_policy(str(d))


def test_existing_run_directory_is_not_overwritten(reference_run):
    d, _ = reference_run
    _one_line_error(aib(*FAST, f"--out_dir={d}"), r"exists: pass --resume to continue it or "
                                                  r"--overwrite to replace it")
    _one_line_error(aib(*FAST, "--q_lr=0.01", f"--out_dir={d}", "--resume"),
                    r"config differs in 'q_lr'")


def _kill_after_checkpoint_3(cmd, run_dir):
    """Starts ``cmd`` (a run into ``run_dir``) and SIGKILLs it once its third checkpoint
    exists; the run must not have finished."""
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    ckpt = os.path.join(run_dir, "checkpoints", "3")
    deadline = time.time() + 300
    while not os.path.isdir(ckpt) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read()[-2000:]
    assert not os.path.exists(os.path.join(run_dir, "summary.json"))


@pytest.mark.slow  # the library kill-and-resume below checks the same driver by default
def test_sigkill_then_resume_equals_uninterrupted(reference_run, tmp_path):
    ref, _ = reference_run
    d = str(tmp_path / "run")
    _kill_after_checkpoint_3([sys.executable, "-m", "experiments.aib", *FAST,
                              "--report=false", f"--out_dir={d}"], d)
    res = aib(*FAST, f"--out_dir={d}", "--resume", "--report=false")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "resumed from checkpoint" in res.stdout
    assert _rows(d) == _rows(ref)  # bitwise: same floats printed in the same rows
    assert json.load(open(os.path.join(d, "summary.json")))["aer"] == \
        json.load(open(os.path.join(ref, "summary.json")))["aer"]
    # the final train states are identical, replay buffer and RNG keys included
    check = textwrap.dedent(f"""
        import jax, numpy as np, hyperjax as hj
        from hyperjax import checkpoint
        from hyperjax.parallel import seed_keys
        prog = hj.make_program(hj.Config(algo="dr", total_steps=500, eval_every=100,
                                         learning_starts=100, eval_episodes=1))
        abstract = jax.eval_shape(jax.vmap(prog.init), seed_keys(0, 1))
        a, _ = checkpoint.restore("{ref}/checkpoints", abstract)
        b, _ = checkpoint.restore("{d}/checkpoints", abstract)
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
        print("EQUAL", len(jax.tree.leaves(a)))
    """)
    out = subprocess.run([sys.executable, "-c", check], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert "EQUAL" in out.stdout, out.stderr[-3000:]


def test_library_run_killed_then_resumed_equals_the_cli_run(reference_run, tmp_path):
    """``hyperjax.run.train_run`` from plain library code, no CLI: SIGKILL after the third
    checkpoint, then ``resume=True`` in this process; every row and the summary's AER equal
    the uninterrupted CLI run's (same config), ``progress_fn`` saw the resumed evaluations, and
    the summary's ``train_seconds`` counts both processes' segments."""
    ref, _ = reference_run
    d = str(tmp_path / "run")
    lib = textwrap.dedent(f"""
        import hyperjax as hj
        from hyperjax import run
        cfg = hj.Config(algo="dr", total_steps=500, eval_every=100, learning_starts=100,
                        eval_episodes=1)
        run.train_run(cfg, "{d}", extra_record={{"context_file": None}}, log=None)
    """)
    _kill_after_checkpoint_3([sys.executable, "-c", lib], d)

    import hyperjax as hj
    from hyperjax import run
    seen = []
    out = run.train_run(hj.Config(algo="dr", total_steps=500, eval_every=100,
                                  learning_starts=100, eval_episodes=1), d, resume=True,
                        extra_record={"context_file": None}, log=None,
                        progress_fn=lambda step, m: seen.append((step, m["aer"])))
    assert [s for s, _ in seen] == [s for s in range(0, 501, 100)][-len(seen):]
    assert 0 < len(seen) < 6  # only the evaluations after the resumed checkpoint
    assert out.rows == _rows(ref) == _rows(d)
    summary, ref_summary = (json.load(open(os.path.join(x, "summary.json"))) for x in (d, ref))
    assert summary["aer"] == ref_summary["aer"]
    # the training time counts the killed process's segments too, not only this process's
    assert summary["resumed_after_segments"] == 6 - len(seen)
    assert summary["train_seconds"] > summary["train_seconds_this_process"] > 0
    assert ref_summary["resumed_after_segments"] == 0
    assert ref_summary["train_seconds"] == ref_summary["train_seconds_this_process"]


def test_kill_during_save_keeps_previous_checkpoint(tmp_path):
    d = str(tmp_path / "ckpt")
    script = textwrap.dedent(f"""
        import os, signal, jax.numpy as jnp
        from orbax.checkpoint._src.path import atomicity
        from hyperjax import checkpoint
        checkpoint.save("{d}", 1, {{"x": jnp.arange(3.0)}}, {{"config": {{}}}})
        async def killed(self, *a, **k):
            os.kill(os.getpid(), signal.SIGKILL)   # dies after writing, before the commit
        atomicity.AtomicRenameTemporaryPath.finalize = killed
        checkpoint.save("{d}", 2, {{"x": jnp.arange(3.0) + 10}}, {{"config": {{}}}})
    """)
    res = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == -signal.SIGKILL, res.stderr[-2000:]
    assert any(n.startswith("2") and n != "2" for n in os.listdir(d))  # the unfinished save
    check = textwrap.dedent(f"""
        import jax.numpy as jnp, numpy as np
        from hyperjax import checkpoint
        assert checkpoint.latest_step("{d}") == 1, checkpoint.all_steps("{d}")
        state, rec = checkpoint.restore("{d}", {{"x": jnp.zeros(3)}})
        np.testing.assert_array_equal(state["x"], [0, 1, 2])
        print("OK")
    """)
    res = subprocess.run([sys.executable, "-c", check], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert "OK" in res.stdout, res.stderr[-2000:]


def test_checkpoint_from_another_config_or_version_names_the_field():
    from hyperjax import __version__, checkpoint
    cfg = {"algo": "dma_sh", "q_lr": 1e-3}
    checkpoint.check_compatible({"version": __version__, "config": dict(cfg)}, cfg)
    with pytest.raises(checkpoint.CheckpointError, match="written by hyperjax 0.0.1"):
        checkpoint.check_compatible({"version": "0.0.1", "config": dict(cfg)}, cfg)
    with pytest.raises(checkpoint.CheckpointError,
                       match="differs in 'q_lr': checkpoint has 0.01, this run has 0.001"):
        checkpoint.check_compatible({"version": __version__,
                                     "config": {**cfg, "q_lr": 0.01}}, cfg)


@pytest.mark.parametrize("env, steps, k", [("cheetah", 200_000, 128), ("cartpole", 100_000, 128),
                                           ("walker_gym", 500_000, 128), ("di", 9_000, 24)])
def test_default_budgets_per_task(env, steps, k):
    """Without --total_steps: the paper's budget and K for MJX tasks (the authors'
    `dmash/contexts/context.py`), the CPU
    budget for the jnp tasks."""
    from experiments import aib as cli
    cli.FLAGS(["aib", f"--env={env}"])
    try:
        cfg = cli.build_config()
    finally:
        cli.FLAGS.unparse_flags()
    assert (cfg.total_steps, cfg.context_size) == (steps, k)


@pytest.mark.slow  # a whole MJX program compiled in a subprocess (~2-4 min on 2 cores)
@pytest.mark.parametrize("env", ["cartpole", "cheetah"])
def test_mjx_smoke_run(env, tmp_path):
    """DMA*-SH on an MJX task through the CLI: one random 1000-step episode per context, 10
    gradient steps, evaluations of 60 contexts at steps 0 and 9. Cartpole takes 1.5 min here;
    Cheetah 3.5 min (XLA
    compiles its 200-step stabilising reset at every call site), so it runs in ``test-all``."""
    out = tmp_path / "run"
    res = aib("--algo=dma_sh", f"--env={env}", "--total_steps=9", "--eval_every=9",
              "--learning_starts=1000", "--eval_episodes=1", "--context_size=16",
              "--diagnostics=false", "--report=false", f"--out_dir={out}", timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert {r["split"] for r in rows} == {"train", "eval_in", "eval_out"}
    assert all(0.0 <= r["aer"] <= 1000.0 for r in rows) and len(rows[0]["returns"]) == 20
    assert (out / "summary.json").exists() and (out / "checkpoints").is_dir()


def test_checkpoint_round_trips_zero_size_leaves(tmp_path):
    """Orbax refuses zero-size arrays (an MJX Data has some): they round-trip as stand-ins."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from hyperjax import checkpoint
    state = {"act": jnp.zeros((2, 3, 0)), "qpos": jnp.arange(6.0).reshape(2, 3)}
    checkpoint.save(str(tmp_path / "c"), 1, state, {"config": {}})
    back, _ = checkpoint.restore(str(tmp_path / "c"), jax.eval_shape(lambda: state))
    assert back["act"].shape == (2, 3, 0)
    np.testing.assert_array_equal(back["qpos"], state["qpos"])


def test_paper_suite_budgets_and_selection():
    from experiments import aib as cli
    from hyperjax.config import Config
    from hyperjax.envs import PAPER_BUDGET, task_info
    # evaluation episodes per context: the authors' num_eval_episodes = 5 (contexts/config.py)
    assert Config().eval_episodes == PAPER_BUDGET["eval_episodes"] == 5
    assert task_info("cartpole").default_budget()["eval_episodes"] == 5
    assert cli.suite_budget("cheetah", 1.0) == dict(total_steps=200_000, eval_every=5000,
                                                    eval_episodes=5, learning_starts=5000)
    assert cli.suite_budget("di", 0.1) == dict(total_steps=10_000, eval_every=500,
                                               eval_episodes=5, learning_starts=500)
    assert cli.suite_budget("hopper_gym", 0.01)["total_steps"] == 5000
    assert cli.suite_budget("cartpole", 0.01)["learning_starts"] == 1000  # one episode
    cli.FLAGS(["aib", "--suite=paper"])
    try:
        envs, algos = cli.selected()
        assert len(envs) == 13 and "reacher_perm" in envs and len(algos) == 7
    finally:
        cli.FLAGS.unparse_flags()


def test_budget_scale_needs_a_suite(capsys):
    _one_line_error(aib_inprocess(capsys, "--budget_scale=0.5"), r"--budget_scale scales a "
                                                                 r"--suite's budgets")
    _one_line_error(aib_inprocess(capsys, "--suite=paper", "--budget_scale=0"),
                    r"budget_scale must be positive")


@pytest.mark.slow  # a two-task study in a subprocess (~2-3 min on 2 cores)
def test_paper_suite_tiny_run_puts_the_papers_figures_beside_ours(tmp_path):
    """The suite at 1/1000 of the paper's budgets on two jnp tasks: the report has the
    side-by-side section with a verdict per cell."""
    out = tmp_path / "suite"
    res = aib("--suite=paper", "--env=di,ode", "--algo=dr,concat", "--seeds=2",
              "--budget_scale=0.001", "--eval_episodes=1", "--bootstrap_reps=100",
              "--random_baseline=false", f"--out_dir={out}", timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    cfg = json.loads((out / "di" / "dr" / "config.json").read_text())
    assert (cfg["total_steps"], cfg["eval_every"], cfg["learning_starts"], cfg["seeds"]) == \
        (100, 5, 100, 2)
    text = (out / "report.md").read_text()
    assert "## Against the paper (v2)" in text and "2 of the paper's 13 suite tasks" in text
    lines = text.splitlines()
    row = [x for x in lines if x.startswith("| train | Concat | all |")][0]
    assert "| 0.79 |" in row and row.split("|")[-2].strip() in ("inside", "above", "below")
    assert any(x.startswith("| di | DR |") and "no paper figure" in x for x in lines)
