"""The layering contract of ``pyproject.toml`` ([tool.importlinter]; docs/development.md):
each module imports only the layers below it, and no package's modules import each other in a
cycle. import-linter reads every import, function-local ones included."""
import os
import re

from importlinter.cli import EXIT_STATUS_SUCCESS, lint_imports

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_import_contracts_are_kept():
    cwd = os.getcwd()
    os.chdir(ROOT)           # the contracts' root packages are imported from the repository
    try:
        status = lint_imports(config_filename=os.path.join(ROOT, "pyproject.toml"),
                              no_cache=True, no_logo=True)
    finally:
        os.chdir(cwd)
    assert status == EXIT_STATUS_SUCCESS, "lint-imports: a contract is broken (see above)"


def test_the_driver_layers_import_at_module_level():
    """The AIB side has no function-local ``hyperjax`` import (they hid the import circle
    that the layers removed); the one left under ``envs/`` says why it is local."""
    local = re.compile(r"^[ \t]+(from hyperjax[\w.]* import|import hyperjax)", re.M)
    found = {}
    for dirpath, _, files in os.walk(os.path.join(ROOT, "hyperjax")):
        for name in files:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, ROOT)
            if not name.endswith(".py") or rel.startswith("hyperjax/hypogen"):
                continue
            n = len(local.findall(open(path).read()))
            if n:
                found[rel] = n
    assert found == {"hyperjax/envs/mjx_tasks.py": 1}, found
