"""A run's directory, for both drivers: the lock that keeps one writer per directory, the
record that defines a run (``config.json``, compared on resume), the metrics rows
(``metrics.jsonl``), and ``load_policy`` that reads a trained policy back.

Layout written by ``hyperjax.run.train_run`` (``python -m experiments.aib``)::

    RUN_DIR/config.json       run_record: the resolved Config, seeds, sweep, extra fields
    RUN_DIR/metrics.jsonl     one row per (run, split, evaluation): metric_rows
    RUN_DIR/checkpoints/N/    the whole train state after N segments (hyperjax.checkpoint)
    RUN_DIR/summary.json      final AER per split, compile / training seconds, code version
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import shutil
from typing import NamedTuple

import jax
import numpy as np

from hyperjax import checkpoint
from hyperjax.config import Config, parse_sweep, sweep_points
from hyperjax.envs import ContextSets, context_sets, varied_factors
from hyperjax.envs.contexts import SPLITS
from hyperjax.parallel import abstract_state, barrier, is_main
from hyperjax.policy import make_policy
from hyperjax.train import make_program
from hyperjax.utils import read_json, write_text_atomic


class RunPaths(NamedTuple):
    """The files of a run directory (the layout in the module doc)."""

    run_dir: str
    config: str
    metrics: str
    summary: str
    diagnostics: str
    checkpoints: str

    @classmethod
    def of(cls, run_dir: str) -> "RunPaths":
        j = lambda name: os.path.join(run_dir, name)
        return cls(run_dir, j("config.json"), j("metrics.jsonl"), j("summary.json"),
                   j("diagnostics.json"), j("checkpoints"))


TRAIN_KEYS = ("train_return", "q_loss", "actor_loss", "alpha", "entropy", "model_loss")


def metric_rows(metrics: dict, seed: int, points: list[dict] | None = None) -> list[dict]:
    """One row per (run, split, evaluation) from a segment's metrics (NumPy or ``to_host``
    output). With a sweep (``points``, run order of the module doc) rows carry ``hparams``."""
    rows = []
    m = jax.tree.map(np.asarray, metrics)
    n_runs = m["aer"].shape[0]
    n_seeds = n_runs // len(points) if points else n_runs
    for s in range(n_runs):
        train = {k: float(m[k][s]) for k in TRAIN_KEYS if k in m}
        extra = dict(hparams=points[s // n_seeds]) if points and points[0] else {}
        for j, split in enumerate(SPLITS):
            rows.append(dict(seed=seed + s % n_seeds, step=int(np.ravel(m["step"])[0]),
                             split=split, aer=float(m["aer"][s, j]),
                             returns=[round(float(x), 4) for x in m["eval_return"][s, j]],
                             **extra, **train))
    return rows


def rows_by_point(rows: list[dict]) -> list[tuple[dict, list[dict]]]:
    """``[(hparams, rows), ...]`` in first-seen order (one entry ``({}, rows)`` without a
    sweep)."""
    groups: dict[str, tuple[dict, list]] = {}
    for r in rows:
        hp = r.get("hparams", {})
        groups.setdefault(repr(sorted(hp.items())), (hp, []))[1].append(r)
    return list(groups.values()) or [({}, [])]


def format_table(scores: dict, algo: str, env: str, n_seeds: int) -> str:
    lines = [f"AER ({env}, {algo}, {n_seeds} seed(s); per seed the max of the last two "
             "evaluations)", f"{'split':<10} {'mean':>9} {'std':>9}"]
    for split, (mean, std, _) in scores.items():
        lines.append(f"{split:<10} {mean:>9.2f} {std:>9.2f}")
    return "\n".join(lines)


def lock_run_dir(run_dir: str, flag: str = "--out_dir"):
    """An exclusive lock on ``run_dir`` for this process's life: ``flock`` on a hidden file
    beside it (``.NAME.lock``, holding the pid), released by the OS when the process exits,
    crash or not (a stale file is harmless). Keep the returned file object open.

    Raises:
      ValueError: another process holds it (the message names its pid), or the parent
        directory is not writable.
    """
    run_dir = os.path.realpath(run_dir)    # a symlink to a locked directory is that directory
    parent, name = os.path.split(run_dir)
    try:
        os.makedirs(parent, exist_ok=True)
        f = open(os.path.join(parent, f".{name}.lock"), "a+")
    except OSError as e:
        raise ValueError(f"output directory {run_dir} is not writable ({e.strerror})") from None
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.seek(0)
        holder = f.read().strip() or "unknown"
        f.close()
        raise ValueError(f"run directory {run_dir} is in use by another run (pid {holder}); "
                         f"wait for it to end or choose another {flag}") from None
    f.seek(0)
    f.truncate()
    f.write(f"{os.getpid()}\n")
    f.flush()
    return f


def run_record(cfg, seeds: int = 1, seed: int = 0, sweep: list[str] | None = None,
               **extra) -> dict:
    """What defines a run, as ``config.json`` and every checkpoint store it: the resolved
    ``Config``, the seeds, ``sweep`` (``--sweep`` items) and ``extra`` fields (the CLI's
    ``context_file``). A resume must present the same record."""
    out = {**dataclasses.asdict(cfg), "seeds": seeds, "seed": seed, **extra}
    if sweep:
        out["sweep"] = list(sweep)
    return out


def prepare_run_dir(run_dir: str, resume: bool = False, overwrite: bool = False):
    """Locks ``run_dir`` for this process (``lock_run_dir``) and checks it against the mode:
    a non-empty directory needs ``resume`` (continue) or ``overwrite`` (delete it first).
    Returns ``(absolute run_dir, resuming)``.

    Raises:
      ValueError: both modes, a directory to resume that does not exist, one that exists
        without a mode, another process holding it, or a directory that is not writable.
    """
    run_dir = os.path.abspath(run_dir)
    if resume and overwrite:
        raise ValueError("--resume and --overwrite exclude each other")
    if is_main():  # one writer per run directory (multi-process runs: process 0 holds it)
        if not holds_lock(run_dir):
            _HELD_LOCKS[os.path.realpath(run_dir)] = lock_run_dir(run_dir)
    exists = os.path.isdir(run_dir) and bool(os.listdir(run_dir))
    barrier("run_dir_checked")  # every process has looked before process 0 changes it
    if exists and overwrite:
        if is_main():
            shutil.rmtree(run_dir)
        barrier("run_dir_cleared")
        exists = False
    if exists and not resume:
        raise ValueError(f"run directory {run_dir} exists: pass --resume to continue it or "
                         f"--overwrite to replace it")
    if resume and not exists:
        raise ValueError(f"--resume: run directory {run_dir} does not exist")
    if is_main():
        try:
            os.makedirs(run_dir, exist_ok=True)
            probe = os.path.join(run_dir, ".write_test")
            with open(probe, "w") as f:
                f.write("ok")
            os.remove(probe)
        except OSError as e:
            raise ValueError(f"output directory {run_dir} is not writable "
                             f"({e.strerror})") from None
    return run_dir, exists


_HELD_LOCKS: dict = {}   # real path -> lock file: run-directory locks this process holds


def holds_lock(run_dir: str) -> bool:
    """Whether this process holds the lock of ``run_dir`` or of a directory above it (the
    CLI locks a study's directory; its runs live inside)."""
    real = os.path.realpath(run_dir)
    return any(real == p or real.startswith(p + os.sep) for p in _HELD_LOCKS)


@contextlib.contextmanager
def run_dir_lock(run_dir: str, flag: str = "--out_dir"):
    """Holds ``run_dir``'s lock for a ``with`` block (released after it), unless this process
    holds it already (``holds_lock``: then nothing changes).

    Raises:
      ValueError: another process holds it (``lock_run_dir``).
    """
    if holds_lock(run_dir):
        yield
        return
    real = os.path.realpath(run_dir)
    _HELD_LOCKS[real] = lock_run_dir(run_dir, flag)
    try:
        yield
    finally:
        _HELD_LOCKS.pop(real).close()


def finished_rows(cfg, record_cfg, ckpt_dir, metrics_path, say):
    """A finished run's rows, from its final checkpoint's record (which holds every row);
    ``metrics.jsonl`` is rewritten from it when missing, damaged or incomplete. None when no
    final checkpoint is readable (the run then resumes from its newest good checkpoint)."""
    n = cfg.total_steps // cfg.eval_every + 1
    record = checkpoint.read_record(ckpt_dir, n) if n in checkpoint.all_steps(ckpt_dir) \
        else None
    if record is None or int(record.get("segments", -1)) != n:
        return None
    checkpoint.check_compatible(record, record_cfg)
    rows = record["rows"]
    try:
        with open(metrics_path) as f:
            same = [json.loads(x) for x in f] == rows
    except (OSError, ValueError):
        same = False
    if not same:
        say(f"{metrics_path} was missing, damaged or incomplete: rewritten from checkpoint {n}")
        if is_main():
            write_rows(metrics_path, rows)
    return rows


def complete_rows(metrics_path: str, n_segments: int, eval_every: int,
                  n_runs: int) -> list[dict] | None:
    """A finished run's rows read from ``metrics.jsonl`` alone (its checkpoints deleted, or
    its files copied without them): the rows when the file parses and holds every evaluation
    (steps ``0, eval_every, ..., (n_segments - 1) * eval_every``, each with ``n_runs`` x
    ``len(SPLITS)`` rows), else None."""
    try:
        with open(metrics_path) as f:
            rows = [json.loads(x) for x in f]
    except (OSError, ValueError):
        return None
    want = {i * eval_every: 0 for i in range(n_segments)}
    for r in rows:
        if not isinstance(r, dict) or r.get("step") not in want:
            return None
        want[r["step"]] += 1
    return rows if set(want.values()) == {n_runs * len(SPLITS)} else None


def write_rows(path, rows):
    """``rows`` as JSON lines, written atomically (a temporary file renamed over ``path``)."""
    write_text_atomic(path, "".join(json.dumps(r) + "\n" for r in rows))


def context_fields(cfg, seed: int, sets: ContextSets | None) -> dict:
    """The record's ``context_sets`` field (``{split: [[value per factor], ...]}``) when
    ``sets`` differ from the task's own (``envs.context_sets(cfg.env, seed)``), else nothing:
    a resume with other sets is then refused, and :func:`load_policy` rebuilds the run's
    sets from the record (``run_context_sets``)."""
    if sets is None:
        return {}
    own = context_sets(cfg.env, seed)
    if own.factors == tuple(sets.factors) and all(
            np.array_equal(own.split(s), np.asarray(sets.split(s), np.float32))
            for s in SPLITS):
        return {}
    return {"context_sets": {s: np.asarray(sets.split(s), np.float32).tolist()
                             for s in SPLITS}}


def run_context_sets(saved: dict) -> ContextSets:
    """The context sets a run trained and evaluated on, from its record (``config.json``):
    the recorded ``context_sets`` of a ``--context_file`` run, else the task's own sets
    (``envs.context_sets``, drawn with the run's ``seed`` where a task draws them)."""
    if "context_sets" in saved:
        recorded = saved["context_sets"]
        return ContextSets(tuple(f.name for f in varied_factors(saved["env"])),
                           *(np.asarray(recorded[s], np.float32) for s in SPLITS))
    return context_sets(saved["env"], int(saved.get("seed", 0)))


def load_policy(run_dir: str, step: int | None = None, seed_index: int = 0):
    """Parameters and the ``Policy`` of a CLI run (``python -m experiments.aib``).

    Args:
      run_dir: the run directory (``config.json`` and ``checkpoints/``).
      step: the checkpoint (number of segments done); default the newest that restores.
      seed_index: which of the run's vmapped runs (seed ``seed + seed_index``).
    Returns:
      ``(params, policy)``: ``AgentParams`` of that run and its ``Policy``.
    Raises:
      ValueError: no such run directory, config or checkpoint, or a run index out of range.
    """
    path = os.path.join(run_dir, "config.json")
    if not os.path.exists(path):
        raise ValueError(f"{run_dir} is not a run directory (no config.json)")
    saved = read_json(path)
    points = sweep_points(parse_sweep(saved.get("sweep", [])))
    n_runs = int(saved.get("seeds", 1)) * len(points)
    if not 0 <= seed_index < n_runs:
        raise ValueError(f"seed_index={seed_index} is outside the run's {n_runs} run(s)")
    cfg = Config.from_record(saved)
    prog = make_program(cfg, run_context_sets(saved), sweep=tuple(points[0]))
    abstract = abstract_state(prog, n_runs)
    ckpt = os.path.join(run_dir, "checkpoints")
    if step is None:  # the newest checkpoint that restores (the CLI's --resume rule)
        state = checkpoint.restore_good(ckpt, abstract)[0]
    else:
        state, _ = checkpoint.restore(ckpt, abstract, step)
    params = jax.tree.map(lambda x: x[seed_index], state.agent.params)
    return params, make_policy(prog.agent)
