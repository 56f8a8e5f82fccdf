"""The layering contract of ``pyproject.toml`` ([tool.importlinter]; docs/development.md):
each module imports only the layers below it, and no package's modules import each other in a
cycle. import-linter reads every import, function-local ones included."""
import ast
import os

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


def _local_hyperjax_imports(path):
    """``hyperjax`` imports inside a function or method of the file at ``path`` (``ast``:
    docstring examples are not imports)."""
    tree = ast.parse(open(path).read())
    local = {id(node): node for fn in ast.walk(tree)
             if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
             for node in ast.walk(fn) if isinstance(node, (ast.Import, ast.ImportFrom))}
    out = []
    for node in local.values():   # nested functions: each import once
        mods = ([node.module or ""] if isinstance(node, ast.ImportFrom) else
                [a.name for a in node.names])
        out += [m for m in mods if m == "hyperjax" or m.startswith("hyperjax.")]
    return out


def test_the_package_imports_at_module_level():
    """No function-local ``hyperjax`` import under ``hyperjax/`` (they hid the import circle
    that the layers removed), AIB and HyPoGen alike; the one left under ``envs/`` says why it
    is local (import time of a task few processes build)."""
    found = {}
    for dirpath, _, files in os.walk(os.path.join(ROOT, "hyperjax")):
        for name in files:
            path = os.path.join(dirpath, name)
            if name.endswith(".py") and _local_hyperjax_imports(path):
                found[os.path.relpath(path, ROOT)] = _local_hyperjax_imports(path)
    assert found == {"hyperjax/envs/mjx_tasks.py": ["hyperjax.envs.gym_tasks"]}, found
