"""The AIB run driver: ``train_run`` trains one (task, method) pair over seeds x sweep points
into a run directory (checkpoints after every evaluation interval, resume, the non-finite guard,
summaries, the random baseline, a ``progress_fn``); the CLI ``python -m experiments.aib`` only
calls it with its flags.

``run_segments`` calls the compiled ``segment`` once per evaluation interval (the same
computation as ``make_train``'s single ``lax.scan``; a test checks they are equal) so that a
driver can report progress and save between intervals. The pieces it stands on:
``hyperjax.parallel`` (runs over devices), ``hyperjax.rundir`` (the directory, its lock, its
records and rows), ``hyperjax.guards`` (memory and non-finite checks).
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from hyperjax import checkpoint
from hyperjax.analysis.stats import final_scores
from hyperjax.analysis.study import write_diagnostics
from hyperjax.config import parse_sweep, sweep_points
from hyperjax.guards import DivergenceGuard, check_fits
from hyperjax.parallel import (ENV_AXIS, abstract_state, barrier, check_seeds, compile_program,
                               is_main, run_mesh, seed_keys, sweep_hparams, to_host)
from hyperjax.rundir import (RunPaths, complete_rows, context_fields, finished_rows,
                             format_table, metric_rows, rows_by_point, run_dir_lock, run_record,
                             write_rows)
from hyperjax.train import SPLITS, Program, make_program
from hyperjax.utils import code_identity, read_json, write_json_atomic


def run_segments(prog: Program, state, seg_fn: Callable, start: int, seed: int,
                 on_segment: Callable | None = None, points: list[dict] | None = None):
    """Runs segments ``start .. n_segments-1``; ``on_segment(i, state, rows, seconds)``
    (rows of every run, on every process)."""
    for i in range(start, prog.n_segments):
        t0 = time.time()
        state, metrics = seg_fn(state, jnp.int32(i))
        rows = metric_rows(to_host(metrics), seed, points)
        if on_segment is not None:
            on_segment(i, state, rows, time.time() - t0)
    return state


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """How ``train_run`` drives a run: the CLI's flags of the same names. ``seeds``, ``seed``,
    ``sweep`` and ``extra_record`` define the run (they are stored in ``config.json`` and
    compared on resume); the others change how it is driven, not what it trains.

    Attributes:
      seeds, seed, sweep: seeds ``seed .. seed + seeds - 1`` x ``--sweep`` items' points
        (``("q_lr=1e-3,3e-4",)``), all vmapped.
      resume: continue the run directory (its record must equal this run's).
      keep_checkpoints: checkpoints kept, newest first (at least 1: ``__post_init__``).
      random_baseline: measure the uniform-random policy's AER on the same episodes.
      diagnostics, diag_windows, diag_encoder_training: the z diagnostics (inferred methods,
        no sweep; the authors' `dmash/informativeness/metrics.py`).
      shard_envs, skip_memory_check: as ``parallel.run_mesh`` / ``guards.check_fits`` say;
      extra_record: more fields that define the run (the CLI's ``context_file``).
    """

    seeds: int = 1
    seed: int = 0
    sweep: tuple[str, ...] = ()
    resume: bool = False
    keep_checkpoints: int = 2
    random_baseline: bool = True
    diagnostics: bool = True
    diag_windows: int = 256
    diag_encoder_training: bool = True
    shard_envs: bool | None = None
    skip_memory_check: bool = False
    extra_record: dict | None = None

    def __post_init__(self):   # sweep may come as a list (the CLI's flag) or None
        object.__setattr__(self, "sweep", tuple(self.sweep or ()))
        check_seeds(self.seed, self.seeds)
        if isinstance(self.keep_checkpoints, bool) or not self.keep_checkpoints >= 1:
            raise ValueError(f"keep_checkpoints must be >= 1, got {self.keep_checkpoints!r}")

    def record(self, cfg, sets=None) -> dict:
        """``config.json``'s content for ``cfg`` under these options (``rundir.run_record``),
        with ``sets`` recorded where they are not the task's own (``rundir.context_fields``)."""
        return run_record(cfg, self.seeds, self.seed, list(self.sweep),
                          **context_fields(cfg, self.seed, sets), **(self.extra_record or {}))


class RunResult(NamedTuple):
    """What ``train_run`` returns: the resolved ``Config``, every metrics row (``metric_rows``),
    the final AER per split (``final_scores``; the first point's under a sweep), the z
    diagnostics (inferred methods, else None), the final run-batched ``TrainState`` (None
    when a finished run was read back) and ``summary`` (what ``summary.json`` holds)."""

    config: object
    rows: list
    scores: dict
    diagnostics: dict | None
    state: object
    summary: dict


def train_run(cfg, run_dir: str, options: RunOptions | None = None, *, sets=None,
              log: Callable | None = print, progress_fn: Callable | None = None,
              **option_fields) -> RunResult:
    """Trains one (task, method) pair over ``seeds`` (x ``sweep`` points) into ``run_dir``,
    checkpointing the whole train state after every evaluation interval, so that a run killed
    at any point continues exactly with ``resume=True`` (from its newest checkpoint that
    restores). The runs are one compiled program sharded over every device (``run_mesh``).

    Writes ``config.json`` (``run_record``), ``metrics.jsonl`` (one row per seed, split and
    evaluation), ``checkpoints/N/`` (N segments done), ``summary.json`` (final AER per split,
    the uniform-random policy's on the same episodes, compile and training seconds) and, for
    inferred-context methods, ``diagnostics.json``. A finished run that is resumed is read
    back, not recompiled.

    Args:
      cfg: a ``Config`` (resolved here).
      run_dir: the run directory (created; a non-empty one needs ``resume``).
      options: a ``RunOptions``; ``option_fields`` (its field names, e.g. ``seeds=3,
        resume=True``) replace its fields.
      sets: the context sets (default: the task's recipe).
      log: called with each progress line (None: silent); process 0 only.
      progress_fn: ``progress_fn(step, metrics)`` after every evaluation (brax's
        ``progress_fn``): ``step`` the gradient step evaluated, ``metrics`` a dict with
        ``aer`` ``{split: mean over runs}``, ``train_return``, ``steps_per_second``,
        ``seconds`` and ``rows`` (this evaluation's metric rows).
    Returns:
      ``RunResult``.
    Raises:
      ValueError: bad input, an unknown option, a run directory another process writes, or
        a non-empty one without ``resume`` (one line, names it).
      hyperjax.checkpoint.CheckpointError: ``resume`` found no checkpoint that restores or
        one of another config.
      hyperjax.guards.NonFiniteError: a non-finite loss or parameter (the last finite
        checkpoint is kept); under a sweep only once every run has diverged (a diverging
        point is listed in ``summary.json``'s ``diverged``, ``guards.DivergenceGuard``).
    """
    unknown = sorted(set(option_fields) - {f.name for f in dataclasses.fields(RunOptions)})
    if unknown:
        raise ValueError(f"train_run: unknown option(s) {', '.join(unknown)}; RunOptions has "
                         f"{', '.join(f.name for f in dataclasses.fields(RunOptions))}")
    opts = dataclasses.replace(options or RunOptions(), **option_fields)
    cfg = cfg.resolved()
    say = (lambda msg: log(msg)) if (log is not None and is_main()) else (lambda msg: None)
    # one writer per run directory (process 0 holds the lock), and never two runs in one
    with run_dir_lock(run_dir) if is_main() else contextlib.nullcontext():
        if is_main() and not opts.resume and os.path.isdir(run_dir) and os.listdir(run_dir):
            raise ValueError(f"run directory {run_dir} is not empty: pass resume=True to "
                             f"continue the run in it, or give another directory")
        return _train(cfg, run_dir, opts, sets, say, progress_fn)


def _train(cfg, run_dir: str, opts: RunOptions, sets, say, progress_fn) -> RunResult:
    points = sweep_points(parse_sweep(list(opts.sweep)))
    swept = bool(points[0])
    record = opts.record(cfg, sets)
    paths = RunPaths.of(run_dir)
    want_diag = opts.diagnostics and cfg.inferred and not swept
    if is_main():
        os.makedirs(run_dir, exist_ok=True)
    barrier("run_dir_made")
    done = _finished_run(cfg, opts, record, paths, want_diag, len(points) * opts.seeds, say)
    if done is not None:
        return done
    prog = make_program(cfg, sets, tuple(points[0]))
    hparams = sweep_hparams(points, opts.seeds)
    n_runs = len(points) * opts.seeds
    mesh = run_mesh(n_runs, n_envs=cfg.num_envs or len(prog.sets.train),
                    shard_envs=opts.shard_envs)
    what = f"{opts.seeds} seed(s)" + (f" x {len(points)} sweep points" if swept else "")
    say(f"hyperjax: {cfg.algo} on {cfg.env}, {what}, {cfg.total_steps} steps, "
        f"eval every {cfg.eval_every}; run dir {run_dir}")
    if mesh.size < jax.device_count():
        say(f"note: {n_runs} run(s) split evenly over {mesh.size} of the "
            f"{jax.device_count()} devices (use a multiple of {jax.device_count()} runs, or "
            f"--shard_envs with --num_envs, to use all)")
    if not opts.skip_memory_check:
        check_fits(prog, n_runs, hparams)
    init, seg, compile_s = compile_program(prog, n_runs, opts.seed, hparams, mesh)
    say(f"compiled in {compile_s:.1f} s ({mesh.size} {jax.devices()[0].platform} device(s)"
        f"{f', envs over {mesh.shape[ENV_AXIS]}' if mesh.shape[ENV_AXIS] > 1 else ''}"
        f"{f', {jax.process_count()} processes' if jax.process_count() > 1 else ''})")
    state, start, rows, earlier_s, diverged = _start_or_resume(
        prog, init, opts, record, paths, hparams, mesh, len(points), say)
    t_start = time.time()
    hook = _SegmentHook(cfg, prog, opts, record, paths, rows, earlier_s, t_start, say,
                        progress_fn, DivergenceGuard(opts.seed, opts.seeds, points, diverged))
    state = run_segments(prog, state, seg, start, opts.seed, hook, points if swept else None)
    per_point = [dict(hparams=hp, aer=final_scores(r)) for hp, r in rows_by_point(rows)]
    summary = _write_summary(cfg, prog, opts, paths, per_point, swept, mesh, compile_s,
                             start, earlier_s, time.time() - t_start, say, hook.guard.diverged)
    if opts.diagnostics and cfg.inferred and swept:
        say("--sweep: no z diagnostics (they compare methods at their settings)")
    diag = write_diagnostics(prog, state, opts.seeds, opts.seed, paths.diagnostics, say,
                             opts.diag_windows, opts.diag_encoder_training) if want_diag else None
    return RunResult(cfg, rows, per_point[0]["aer"], diag, state, summary)


def _finished_run(cfg, opts: RunOptions, record: dict, paths: RunPaths, want_diag: bool,
                  n_runs: int, say) -> RunResult | None:
    """On resume: refuses another config's directory; reads a finished run back (from its
    final checkpoint's record, else from a complete ``metrics.jsonl`` beside its
    ``config.json``), else None. A finished run (``summary.json``) with no checkpoint and no
    complete ``metrics.jsonl`` is refused (ValueError) rather than trained again over its
    files."""
    if opts.resume and os.path.exists(paths.config):
        saved = read_json(paths.config)
        k = checkpoint.config_diff(saved, record)
        if k is not None:
            raise ValueError(f"--resume: the run's config differs in {k!r}: the run has "
                             f"{saved.get(k)!r}, this run gives {record.get(k)!r}")
    if not (opts.resume and os.path.exists(paths.summary)
            and (not want_diag or os.path.exists(paths.diagnostics))):
        return None
    rows = finished_rows(cfg, record, paths.checkpoints, paths.metrics, say)
    source = ""
    if rows is None and os.path.exists(paths.config):
        rows = complete_rows(paths.metrics, cfg.total_steps // cfg.eval_every + 1,
                             cfg.eval_every, n_runs)
        source = " (metrics.jsonl; no final checkpoint)"
    if rows is None:
        if not checkpoint.all_steps(paths.checkpoints):
            raise ValueError(f"--resume: {paths.run_dir} holds a finished run (summary.json) "
                             f"but no checkpoint and no complete metrics.jsonl to read it back "
                             f"from: pass --overwrite to train it again")
        return None
    say(f"{cfg.env}/{cfg.algo}: finished earlier; read from {paths.run_dir}{source}")
    diag = read_json(paths.diagnostics) if want_diag else None
    summary = read_json(paths.summary)
    return RunResult(cfg, rows, final_scores(rows_by_point(rows)[0][1]), diag, None, summary)


def _start_or_resume(prog: Program, init, opts: RunOptions, record: dict, paths: RunPaths,
                     hparams, mesh, n_points: int, say):
    """``(state, first segment, rows so far, earlier processes' training seconds or None,
    diverged sweep runs)``: the newest checkpoint that restores when resuming, else a fresh
    state (+ config.json)."""
    start, rows, earlier_s, diverged = 0, [], 0.0, []
    if opts.resume and checkpoint.all_steps(paths.checkpoints):
        abstract = abstract_state(prog, n_points * opts.seeds, hparams, mesh)
        state, rec, step, skipped = checkpoint.restore_good(
            paths.checkpoints, abstract, lambda r: checkpoint.check_compatible(r, record))
        for s, why in skipped:
            say(f"checkpoint {s} skipped: it does not restore ({why}); using {step}")
        start, rows = int(rec["segments"]), rec["rows"]
        earlier_s = rec.get("train_seconds")  # absent from checkpoints written before it
        diverged = rec.get("diverged", [])
        say(f"resumed from checkpoint after {start} segment(s) "
            f"(step {(start - 1) * prog.cfg.eval_every})")
    else:
        if is_main():
            write_json_atomic(paths.config, record, indent=2, sort_keys=True)
            if os.path.exists(paths.metrics):
                os.remove(paths.metrics)
        keys = seed_keys(opts.seed, opts.seeds, n_points)
        state = init(keys) if hparams is None else init(keys, hparams)
    if is_main():
        write_rows(paths.metrics, rows)
    return state, start, rows, earlier_s, diverged


class _SegmentHook:
    """``run_segments``' ``on_segment``: the non-finite guard, the checkpoint, the metrics
    rows, the progress line and ``progress_fn``, after every evaluation interval."""

    def __init__(self, cfg, prog, opts, record, paths, rows, earlier_s, t_start, say, fn,
                 guard: DivergenceGuard):
        self.cfg, self.prog, self.opts, self.record, self.paths = cfg, prog, opts, record, paths
        self.rows, self.earlier_s, self.t_start, self.say, self.progress_fn, self.guard = \
            rows, earlier_s, t_start, say, fn, guard

    def __call__(self, i, state, seg_rows, seconds):
        cfg, paths = self.cfg, self.paths
        step = i * cfg.eval_every
        first, stop = self.prog.segment_steps(i)
        for line in self.guard.check(state, seg_rows, stop > max(first, cfg.learning_starts),
                                     step, paths.checkpoints, cfg.eval_every):
            self.say(line)
        seg_rows = self.guard.mark(seg_rows)
        self.rows.extend(seg_rows)
        total_s = None if self.earlier_s is None else self.earlier_s + time.time() - self.t_start
        checkpoint.save(paths.checkpoints, i + 1, state,
                        {"config": self.record, "segments": i + 1, "rows": self.rows,
                         "train_seconds": total_s, "diverged": self.guard.diverged},
                        keep=self.opts.keep_checkpoints)
        aer = {s: float(np.nanmean([r["aer"] for r in seg_rows if r["split"] == s]))
               for s in SPLITS}   # mean over runs; a diverged sweep run (NaN) left out
        ret = np.array([r["train_return"] for r in seg_rows], float)  # NaN: no episode ended
        tr = float(ret[np.isfinite(ret)].mean()) if np.isfinite(ret).any() else float("nan")
        sps = (stop - first) / seconds
        if is_main():
            write_rows(paths.metrics, self.rows)
        self.say(f"step {step:>7}/{cfg.total_steps}  AER train {aer['train']:7.2f}  "
                 f"in {aer['eval_in']:7.2f}  out {aer['eval_out']:7.2f}  "
                 f"train return {tr:7.2f}  {sps:6.1f} steps/s  "
                 f"[{time.time() - self.t_start:6.0f} s]")
        if self.progress_fn is not None:
            self.progress_fn(step, dict(aer=aer, train_return=tr, steps_per_second=sps,
                                        seconds=time.time() - self.t_start, rows=seg_rows))


def _write_summary(cfg, prog, opts, paths, per_point, swept, mesh, compile_s, start,
                   earlier_s, train_s, say, diverged) -> dict:
    """The random baseline (same episodes), ``summary.json`` and the final AER table."""
    random_aer = None
    if opts.random_baseline:
        ret = jax.jit(lambda k: prog.evaluate(None, k, random_actions=True))(
            jax.random.PRNGKey(opts.seed + 2 * 10**6))
        random_aer = dict(zip(SPLITS, np.asarray(ret).mean(axis=(1, 2)).tolist()))
        say("uniform-random policy, same episodes: " + "  ".join(
            f"{k} {v:.2f}" for k, v in random_aer.items()))
    summary = {"compile_seconds": compile_s,
               "train_seconds": None if earlier_s is None else earlier_s + train_s,
               "train_seconds_this_process": train_s, "resumed_after_segments": start,
               "devices": mesh.size,
               "mesh": dict(mesh.shape), "processes": jax.process_count(),
               "device": jax.devices()[0].device_kind, "code": code_identity(),
               "aer": per_point[0]["aer"],
               **({"random_aer": random_aer} if random_aer else {}),
               **({"sweep": per_point} if swept else {}),
               **({"diverged": diverged} if diverged else {})}
    if is_main():
        write_json_atomic(paths.summary, summary, indent=2)
    for p in per_point:
        if swept:
            say("sweep point " + ", ".join(f"{k}={v:g}" for k, v in p["hparams"].items()))
        say(format_table(p["aer"], cfg.algo, cfg.env, opts.seeds))
    return summary
