"""Installing hyperjax: ``pyproject.toml`` gives ranges (a user's own environment), and
``constraints.txt`` the exact tested set ``make`` installs; every pin must lie inside its
range, and every dependency must be pinned."""
import os
import tomllib

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
