"""The prepared GPU suite at a tiny size on CPU, so that it cannot rot before a GPU runs it.
The GPU scripts' tiny runs are ``slow`` (4-5 min each on 2 cores): a session lent a GPU runs
``make test-all ARGS=tests/test_benchmarks.py`` before its first device call, and
``make test-all`` runs them too."""
import json
import os
import subprocess
import sys
import tarfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run_tiny(script: str, out, minutes: int = 8) -> None:
    res = subprocess.run([sys.executable, f"benchmarks/{script}", "--tiny",
                          f"--minutes={minutes}", f"--out={out}"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60 * minutes + 300)
    assert res.returncode == 0, res.stderr[-3000:]


@pytest.mark.slow  # a session lent a GPU runs these first: make test-all ARGS=tests/test_benchmarks.py
def test_gpu_suite_tiny_writes_its_results(tmp_path):
    out = tmp_path / "gpu"
    _run_tiny("gpu_suite.py", out)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["tiny"] and summary["stages"]["throughput"] == 1
    assert summary["stages"]["study"] == "done", (out / "suite.log").read_text()[-3000:]
    cells = json.loads((out / "throughput.json").read_text())
    assert cells[0]["algo"] == "dr" and cells[0]["seed_grad_steps_per_s"] > 0
    assert (out / "cartpole" / "report.md").exists()
    with tarfile.open(out / "gpu_suite.tar.gz") as tar:
        names = tar.getnames()
    assert "summary.json" in names and "cartpole/report.md" in names


@pytest.mark.slow  # a session lent a GPU runs these first: make test-all ARGS=tests/test_benchmarks.py
def test_gpu_hypogen_tiny_writes_its_results(tmp_path):
    """benchmarks/gpu_hypogen.py at a tiny size (lqr_di, TD3 experts, two models, 2 epochs)."""
    out = tmp_path / "hyp"
    _run_tiny("gpu_hypogen.py", out)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["tiny"] and summary["expert_steps"] == 200
    assert summary["stages"]["probe"]["grad_steps_per_s"] > 0
    assert summary["stages"]["hyperzero"] == "done" and summary["stages"]["hypogen"] == "done", \
        (out / "run.log").read_text()[-3000:]
    table = (out / "run" / "results.md").read_text()
    assert "| hyperzero |" in table and "| hypogen |" in table
    with tarfile.open(out / "gpu_hypogen.tar.gz") as tar:
        names = tar.getnames()
    assert "summary.json" in names and "run/results.md" in names


@pytest.mark.slow
def test_gpu_manipulation_tiny_writes_its_results(tmp_path):
    """benchmarks/gpu_manipulation.py at a tiny size (lift_cube_stiffness on 4 specs, one brax
    PPO expert for the one training spec, HyperZero and HyPoGen for 2 epochs, success rates).
    `slow`: every brax PPO program and every model's MJX evaluation compile for about a minute
    on the 2-core CPU (about 8 minutes in all)."""
    out = tmp_path / "manip"
    _run_tiny("gpu_manipulation.py", out, minutes=20)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["tiny"] and summary["expert_steps"] == 960
    assert summary["stages"]["probe"]["env_steps_per_s"] > 0
    assert summary["stages"]["hyperzero"] == "done" and summary["stages"]["hypogen"] == "done", \
        (out / "run.log").read_text()[-3000:]
    table = (out / "run" / "results.md").read_text()
    assert "Success rate and mean episode length" in table and "| hypogen |" in table
    res = json.loads((out / "run" / "hypogen" / "seed_123" / "result.json").read_text())
    assert 0.0 <= res["test_success_last"] <= 1.0 and len(res["per_spec_success_last"]) == 3
    with tarfile.open(out / "gpu_manipulation.tar.gz") as tar:
        names = tar.getnames()
    assert "summary.json" in names and "run/experts_log.jsonl" in names


def test_train_throughput_prints_the_dma_sh_to_concat_ratio():
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    import train_throughput as tt
    cell = dict(env="cartpole", seeds=1, num_envs=20, matmul_gflops=100.0)
    rows = [dict(cell, algo="concat", grad_steps_per_s=100.0, gflops=10.0),
            dict(cell, algo="dma_sh", grad_steps_per_s=20.0, gflops=40.0),
            dict(cell, algo="dr", seeds=4, grad_steps_per_s=50.0, gflops=1.0)]
    (line,) = tt.ratio_lines(rows)
    assert "dma_sh takes 5.00x concat's time per gradient step" in line
    assert "40% of the matmul rate" in line
