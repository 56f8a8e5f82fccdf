import os
import sys


sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # as the CLIs (experiments/aib.py)

from hyperjax.utils import enable_compilation_cache  # noqa: E402

enable_compilation_cache()


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long-running (deselected by default)")


# The modules in order of their worker-seconds in the default suite (results/test_time/,
# 2026-12-07): with ``-n 2 --dist loadfile --no-loadscope-reorder`` (the Makefile's) xdist hands
# whole modules to the workers in collection order, so the longest go first and the two
# workers end together (longest processing time first). Without ``--no-loadscope-reorder``
# xdist 3.x sorts modules by their number of tests instead and ignores this order (found
# 2026-12-07: test_policy.py then compiled the tiny run's program before test_train.py had
# put it into the compilation cache). test_scale.py's sharded test (two CLI processes at
# once) is slow. The pages that read the tiny run (test_readme, test_policy) start after
# test_train.py has put the program they share into the compilation cache. A module not
# listed runs after these.
HEAVY_FIRST = ("test_train.py", "test_methods.py", "test_hypogen.py", "test_readme.py",
               "test_mjx.py", "test_faithful.py", "test_hypogen_meta.py", "test_cli.py",
               "test_manipulation.py", "test_policy.py", "test_run.py", "test_analysis.py",
               "test_nets.py", "test_hypogen_knobs.py", "test_guards.py", "test_rundir.py",
               "test_robust.py", "test_collect.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(HEAVY_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))   # stable within a module



import pytest  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="session")
def tiny_dma_sh_run(tmp_path_factory):
    """A tiny run of DMA*-SH on DI as the CLI writes it (20 gradient steps, evaluations at 0,
    10, 20): its run directory, for the tests that load a trained policy from one. Made once per test session:
    pytest-xdist's workers share it through a lock in their common temporary root."""
    import fcntl
    root = tmp_path_factory.getbasetemp()          # under xdist: popen-gwN, one per worker,
    if os.environ.get("PYTEST_XDIST_WORKER"):       # whose parent belongs to this session
        root = root.parent
    d = root / "tiny_dma_sh_run"
    with open(root / "tiny_dma_sh_run.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)           # released when the file closes
        if not (root / "tiny_dma_sh_run.done").exists():
            _tiny_dma_sh_run(d)
            (root / "tiny_dma_sh_run.done").write_text("")
    return str(d)


def _tiny_dma_sh_run(d):
    """What ``python -m experiments.aib --algo=dma_sh --env=di --total_steps=20
    --eval_every=10 --learning_starts=100 --eval_episodes=1 --report=false
    --diagnostics=false --random_baseline=false --out_dir=D`` writes, through the driver that
    command calls (``hyperjax.run.train_run``, the same record), in this process: no
    interpreter start and import (~10 s); the CLI's own flags are tested in test_cli.py."""
    import shutil

    import hyperjax as hj
    shutil.rmtree(d, ignore_errors=True)
    hj.train_run(hj.Config.tiny(algo="dma_sh", env="di"), str(d), diagnostics=False,
                 random_baseline=False, extra_record={"context_file": None}, log=None)
    return str(d)
