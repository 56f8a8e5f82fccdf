"""Many bad-input cases of one CLI in one process: ``run_cases(module, cases)`` runs
``python -c DRIVER`` once; the driver imports ``module`` (an absl CLI with ``FLAGS`` and
``main``), and for each argument list resets absl's flags, parses them with the CLI's
``absl_flags_parser`` and calls ``main``, capturing stderr and the exit status. Returns
``[(exit status, stderr text)]`` in case order, as ``python -m MODULE ARGS`` gives them
(Python-level stderr only: a test keeps one real process for all of fd 2).

``aib_inprocess`` runs one ``experiments.aib`` argument list in the test's own process, and
``one_line_error`` checks the one-line exit-2 refusal every CLI mistake must give."""
import json
import os
import re
import subprocess
import sys

import pytest

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


def aib_inprocess(capsys, *args):
    """The CLI's flag parsing and ``main`` in this process (for inputs that fail before
    anything compiles: no interpreter start per case); same fields as ``aib``'s result."""
    from types import SimpleNamespace

    from experiments import aib as cli
    from hyperjax.utils import absl_flags_parser
    capsys.readouterr()
    try:
        with pytest.raises(SystemExit) as exit_info:
            cli.main(absl_flags_parser(cli.FLAGS)(["aib", *args]))
    finally:
        cli.FLAGS.unparse_flags()
    out = capsys.readouterr()
    return SimpleNamespace(returncode=exit_info.value.code, stdout=out.out, stderr=out.err)


def one_line_error(res, pattern):
    """``res`` (``aib`` / ``aib_inprocess``'s) failed with exit 2 and one stderr line
    ``error: …`` matching ``pattern``, before anything compiled."""
    assert res.returncode == 2, (res.returncode, res.stderr[-2000:])
    lines = [x for x in res.stderr.strip().splitlines() if x.strip()]
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("error: "), lines
    assert re.search(pattern, lines[0]), lines[0]
    assert "compiled" not in res.stdout


def aib(*args, timeout=600):
    """``python -m experiments.aib ARGS`` in a fresh process (``CompletedProcess``)."""
    return subprocess.run([sys.executable, "-m", "experiments.aib", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


_LIMITED = """
import resource, runpy, signal, sys
import jax
from hyperjax import utils
enable = utils.enable_compilation_cache
def read_only_cache(*args, **kwargs):   # read the suite's cache, write no (truncated) entry
    path = enable(*args, **kwargs)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1e9)
    return path
utils.enable_compilation_cache = read_only_cache
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)    # a write past the limit fails (EFBIG)
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), resource.RLIM_INFINITY))
sys.argv = sys.argv[2:]
runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
"""


def cli_with_file_limit(limit: int, module: str, *args, timeout=600):
    """``python -m MODULE ARGS`` where no file may grow past ``limit`` bytes (``RLIMIT_FSIZE``;
    a write beyond fails with EFBIG as a write to a full disk fails with ENOSPC: the same
    paths in orbax, tensorstore and Python). Output goes to pipes, which the limit spares. The
    process reads the suite's compilation cache and writes nothing to it (a cut entry would
    make other tests' processes warn and recompile)."""
    return subprocess.run([sys.executable, "-c", _LIMITED, str(limit), module, *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def read_rows(run_dir) -> list[dict]:
    """A run directory's ``metrics.jsonl`` rows."""
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [json.loads(x) for x in f]
