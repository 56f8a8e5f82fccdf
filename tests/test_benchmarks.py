"""The prepared GPU suite at a tiny size on CPU, so that it cannot rot before a GPU runs it."""
import json
import os
import subprocess
import sys
import tarfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run_tiny(script: str, out) -> None:
    res = subprocess.run([sys.executable, f"benchmarks/{script}", "--tiny", "--minutes=8",
                          f"--out={out}"], cwd=ROOT, capture_output=True, text=True,
                         timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]


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
