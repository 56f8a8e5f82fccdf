"""Many bad-input cases of one CLI in one process: ``run_cases(module, cases)`` runs
``python -c DRIVER`` once; the driver imports ``module`` (an absl CLI with ``FLAGS`` and
``main``), and for each argument list resets absl's flags, parses them with the CLI's
``absl_flags_parser`` and calls ``main``, capturing stderr and the exit status. Returns
``[(exit status, stderr text)]`` in case order, as ``python -m MODULE ARGS`` gives them
(Python-level stderr only: a test keeps one real process for all of fd 2)."""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_DRIVER = """
import contextlib, importlib, io, json, sys
from hyperjax.utils import absl_flags_parser
cli = importlib.import_module(sys.argv[1])
out = []
for args in json.loads(sys.argv[2]):
    cli.FLAGS.unparse_flags()
    err, code = io.StringIO(), 0
    with contextlib.redirect_stderr(err):
        try:
            cli.main(absl_flags_parser(cli.FLAGS)([sys.argv[1], *args]))
        except SystemExit as e:
            code = e.code
    out.append([code, err.getvalue()])
print(json.dumps(out))
"""


def run_cases(module: str, cases: list[list[str]], timeout: int = 900) -> list[tuple[int, str]]:
    res = subprocess.run([sys.executable, "-c", _DRIVER, module, json.dumps(cases)], cwd=ROOT,
                         capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, res.stderr[-3000:]
    return [tuple(x) for x in json.loads(res.stdout.splitlines()[-1])]
