"""Installing hyperjax: ``pyproject.toml`` gives ranges (a user's own environment), and
``constraints.txt`` the exact tested set ``make`` installs; every pin must lie inside its
range, and every dependency must be pinned."""
import os
import shutil
import subprocess
import tomllib

import pytest

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _pins() -> dict[str, Version]:
    pins = {}
    with open(os.path.join(ROOT, "constraints.txt")) as f:
        for line in f:
            line = line.split("#")[0].strip()
            if line:
                name, _, version = line.partition("==")
                assert version, f"constraints.txt: {line!r} is not an exact pin"
                pins[canonicalize_name(name)] = Version(version)
    return pins


def test_every_dependency_is_a_range_that_holds_its_tested_pin():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)["project"]
    pins = _pins()
    reqs = [Requirement(r) for r in project["dependencies"]
            + project["optional-dependencies"]["test"]]
    for req in reqs:
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is not pinned in constraints.txt"
        assert req.specifier.contains(pins[name], prereleases=True), \
            f"constraints.txt pins {req.name}=={pins[name]}, outside pyproject's {req}"
        assert not any(s.operator == "==" for s in req.specifier), \
            f"pyproject.toml pins {req} exactly: give a range (the pin is constraints.txt's)"
    # the pairs that ship in lockstep are pinned to one version
    assert pins["mujoco"] == pins["mujoco-mjx"] and pins["jax"] == pins["jaxlib"]
    assert "hyperjax" not in pins        # the package itself is installed editable, not pinned


def test_git_ignores_no_evidence_under_results():
    """What the results scripts copy into ``results/`` (run files in folders such as
    ``runs/TASK/ALGO/``) is never ignored by ``.gitignore``: an unanchored ``runs/`` rule once
    hid the AIB grid's run files, lost with the machine. The CLI's default run folder at the
    root (``runs/``) stays ignored."""
    if shutil.which("git") is None or not os.path.exists(os.path.join(ROOT, ".git")):
        pytest.skip("not a git checkout")
    evidence = ["results/cpu_aib_grid/runs/di/dr/summary.json",
                "results/cpu_aib_grid/runs/cheetah/dma_sh/metrics.jsonl",
                "results/cpu_hypogen_walker_speed/hypogen/log.jsonl",
                "results/gpu/nvidia-h100/runs/ode/dr/config.json",
                "results/any/checkpoints/5/record.json"]
    out = subprocess.run(["git", "check-ignore", "--no-index", "-v", *evidence], cwd=ROOT,
                         capture_output=True, text=True)
    assert out.returncode == 1, f"ignored evidence paths:\n{out.stdout}"
    root_run = subprocess.run(["git", "check-ignore", "--no-index", "-q",
                               "runs/study-20261207-000000/report.md"], cwd=ROOT)
    assert root_run.returncode == 0
