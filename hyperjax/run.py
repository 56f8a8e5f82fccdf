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

import json
import os
import time
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from hyperjax import checkpoint
from hyperjax.analysis.stats import final_scores
from hyperjax.analysis.study import run_diagnostics
from hyperjax.config import parse_sweep, sweep_points
from hyperjax.guards import NonFiniteError, check_fits, non_finite
from hyperjax.parallel import (ENV_AXIS, abstract_state, barrier, compile_program, is_main,
                               run_mesh, seed_keys, sweep_hparams, to_host)
from hyperjax.rundir import (finished_rows, format_table, metric_rows, rows_by_point,
                             run_record, write_rows)
from hyperjax.train import SPLITS, Program, make_program
from hyperjax.utils import code_identity, write_json_atomic


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


def train_run(cfg, run_dir: str, *, sets=None, seeds: int = 1, seed: int = 0,
              sweep: list[str] | None = None, resume: bool = False, keep_checkpoints: int = 2,
              random_baseline: bool = True, diagnostics: bool = True,
              diag_windows: int = 256, diag_encoder_training: bool = True,
              shard_envs: bool | None = None, skip_memory_check: bool = False,
              extra_record: dict | None = None, log: Callable | None = print,
              progress_fn: Callable | None = None) -> RunResult:
    """Trains one (task, method) pair over ``seeds`` (x ``sweep`` points) into ``run_dir``,
    checkpointing the whole train state after every evaluation interval, so that a run killed
    at any point continues exactly with ``resume=True`` (from its newest checkpoint that
    restores). The runs are one compiled program sharded over every device (``run_mesh``).

    Writes ``config.json`` (``run_record``), ``metrics.jsonl`` (one row per seed, split and
    evaluation), ``checkpoints/N/`` (N segments done), ``summary.json`` (final AER per split,
    the uniform-random policy's on the same episodes, compile and training seconds) and, for
    inferred-context methods, ``diagnostics.json`` (the authors'
    `dmash/informativeness/metrics.py`). A finished run that is resumed
    is read back, not recompiled.

    Args:
      cfg: a ``Config`` (resolved here).
      run_dir: the run directory (created; a non-empty one needs ``resume``).
      sets: the context sets (default: the task's recipe).
      seeds, seed: seeds ``seed .. seed + seeds - 1``, vmapped.
      sweep: ``--sweep`` items (``["q_lr=1e-3,3e-4"]``), each point vmapped like a seed.
      resume: continue ``run_dir`` (its record must equal this run's).
      keep_checkpoints: checkpoints kept, newest first.
      random_baseline: measure the uniform-random policy's AER on the same episodes.
      diagnostics, diag_windows, diag_encoder_training: the z diagnostics (inferred methods,
        no sweep).
      shard_envs, skip_memory_check: as the CLI's flags.
      extra_record: more fields that define the run (stored and compared on resume).
      log: called with each progress line (None: silent); process 0 only.
      progress_fn: ``progress_fn(step, metrics)`` after every evaluation (brax's
        ``progress_fn``): ``step`` the gradient step evaluated, ``metrics`` a dict with
        ``aer`` ``{split: mean over runs}``, ``train_return``, ``steps_per_second``,
        ``seconds`` and ``rows`` (this evaluation's metric rows).
    Returns:
      ``RunResult``.
    Raises:
      ValueError: bad input or a run directory in the wrong state (one line, names it).
      hyperjax.checkpoint.CheckpointError: ``resume`` found no checkpoint that restores or
        one of another config.
      NonFiniteError: a non-finite loss or parameter (the last finite checkpoint is kept).
    """
    cfg = cfg.resolved()
    main_proc = is_main()
    say = (lambda msg: log(msg)) if (log is not None and main_proc) else (lambda msg: None)
    points = sweep_points(parse_sweep(list(sweep or [])))
    swept = bool(points[0])
    record_cfg = run_record(cfg, seeds, seed, sweep, **(extra_record or {}))
    hparams = sweep_hparams(points, seeds)
    n_runs = len(points) * seeds
    want_diag = diagnostics and cfg.inferred and not swept
    ckpt_dir = os.path.join(run_dir, "checkpoints")
    metrics_path = os.path.join(run_dir, "metrics.jsonl")
    diag_path = os.path.join(run_dir, "diagnostics.json")
    summary_path = os.path.join(run_dir, "summary.json")
    if main_proc:
        os.makedirs(run_dir, exist_ok=True)
    barrier("run_dir_made")
    config_path = os.path.join(run_dir, "config.json")
    if resume and os.path.exists(config_path):
        with open(config_path) as f:
            k = checkpoint.config_diff(json.load(f), record_cfg)
        if k is not None:
            with open(config_path) as f:
                saved = json.load(f)
            raise ValueError(f"--resume: the run's config differs in {k!r}: the run has "
                             f"{saved.get(k)!r}, this run gives {record_cfg.get(k)!r}")
    if resume and os.path.exists(summary_path) and (not want_diag or
                                                    os.path.exists(diag_path)):
        rows = finished_rows(cfg, record_cfg, ckpt_dir, metrics_path, say)
        if rows is not None:
            say(f"{cfg.env}/{cfg.algo}: finished earlier; read from {run_dir}")
            diag = json.load(open(diag_path)) if want_diag else None
            summary = json.load(open(summary_path))
            return RunResult(cfg, rows, final_scores(rows_by_point(rows)[0][1]), diag, None,
                             summary)
    prog = make_program(cfg, sets, tuple(points[0]))
    mesh = run_mesh(n_runs, n_envs=cfg.num_envs or len(prog.sets.train),
                    shard_envs=shard_envs)
    what = f"{seeds} seed(s)" + (f" x {len(points)} sweep points" if swept else "")
    say(f"hyperjax: {cfg.algo} on {cfg.env}, {what}, {cfg.total_steps} steps, "
        f"eval every {cfg.eval_every}; run dir {run_dir}")
    if mesh.size < jax.device_count():
        say(f"note: {n_runs} run(s) split evenly over {mesh.size} of the "
            f"{jax.device_count()} devices (use a multiple of {jax.device_count()} runs, or "
            f"--shard_envs with --num_envs, to use all)")
    if not skip_memory_check:
        check_fits(prog, n_runs, hparams)
    init, seg, compile_s = compile_program(prog, n_runs, seed, hparams, mesh)
    say(f"compiled in {compile_s:.1f} s ({mesh.size} {jax.devices()[0].platform} device(s)"
        f"{f', envs over {mesh.shape[ENV_AXIS]}' if mesh.shape[ENV_AXIS] > 1 else ''}"
        f"{f', {jax.process_count()} processes' if jax.process_count() > 1 else ''})")

    keys = seed_keys(seed, seeds, len(points))
    start, rows = 0, []
    earlier_s = 0.0          # training seconds of earlier processes (None: not recorded)
    if resume and checkpoint.all_steps(ckpt_dir):
        abstract = abstract_state(prog, n_runs, hparams, mesh)
        state, rec, step, skipped = checkpoint.restore_good(
            ckpt_dir, abstract, lambda r: checkpoint.check_compatible(r, record_cfg))
        for s, why in skipped:
            say(f"checkpoint {s} skipped: it does not restore ({why}); using {step}")
        start, rows = int(rec["segments"]), rec["rows"]
        earlier_s = rec.get("train_seconds")  # absent from checkpoints written before it
        say(f"resumed from checkpoint after {start} segment(s) "
            f"(step {(start - 1) * cfg.eval_every})")
    else:
        if main_proc:
            write_json_atomic(config_path, record_cfg, indent=2, sort_keys=True)
            if os.path.exists(metrics_path):
                os.remove(metrics_path)
        state = init(keys) if hparams is None else init(keys, hparams)
    if main_proc:
        write_rows(metrics_path, rows)

    t_start = time.time()

    def on_segment(i, state, seg_rows, seconds):
        step = i * cfg.eval_every
        first, stop = prog.segment_steps(i)
        updates = stop - max(first, cfg.learning_starts)
        bad = non_finite(state, seg_rows, updates, seed, seeds)
        if bad:
            n = checkpoint.latest_step(ckpt_dir)
            kept = (f"the last finite checkpoint, {os.path.join(ckpt_dir, str(n))} ({n} "
                    f"segment(s), up to the evaluation at step {(n - 1) * cfg.eval_every}), "
                    f"is kept; --resume continues from it"
                    if n and os.path.isdir(os.path.join(ckpt_dir, str(n))) else
                    "no checkpoint had been written before it (nothing to resume)")
            raise NonFiniteError(f"non-finite {bad[0]} at step {step} in seed {bad[1]}; "
                                 f"stopping: {kept}")
        rows.extend(seg_rows)
        total_s = None if earlier_s is None else earlier_s + time.time() - t_start
        checkpoint.save(ckpt_dir, i + 1, state,
                        {"config": record_cfg, "segments": i + 1, "rows": rows,
                         "train_seconds": total_s},
                        keep=keep_checkpoints)
        aer = {s: float(np.mean([r["aer"] for r in seg_rows if r["split"] == s]))
               for s in SPLITS}
        ret = np.array([r["train_return"] for r in seg_rows], float)  # NaN: no episode ended
        tr = float(ret[np.isfinite(ret)].mean()) if np.isfinite(ret).any() else float("nan")
        sps = (stop - first) / seconds
        if main_proc:
            write_rows(metrics_path, rows)
        say(f"step {step:>7}/{cfg.total_steps}  AER train {aer['train']:7.2f}  "
            f"in {aer['eval_in']:7.2f}  out {aer['eval_out']:7.2f}  "
            f"train return {tr:7.2f}  {sps:6.1f} steps/s  [{time.time() - t_start:6.0f} s]")
        if progress_fn is not None:
            progress_fn(step, dict(aer=aer, train_return=tr, steps_per_second=sps,
                                   seconds=time.time() - t_start, rows=seg_rows))

    state = run_segments(prog, state, seg, start, seed, on_segment, points if swept else None)
    by_point = rows_by_point(rows)
    per_point = [dict(hparams=hp, aer=final_scores(r)) for hp, r in by_point]
    scores = per_point[0]["aer"]
    train_s = time.time() - t_start
    random_aer = None
    if random_baseline:
        ret = jax.jit(lambda k: prog.evaluate(None, k, random_actions=True))(
            jax.random.PRNGKey(seed + 2 * 10**6))
        random_aer = dict(zip(SPLITS, np.asarray(ret).mean(axis=(1, 2)).tolist()))
        say("uniform-random policy, same episodes: " + "  ".join(
            f"{k} {v:.2f}" for k, v in random_aer.items()))
    summary = {"compile_seconds": compile_s,
               "train_seconds": None if earlier_s is None else earlier_s + train_s,
               "train_seconds_this_process": train_s, "resumed_after_segments": start,
               "devices": mesh.size,
               "mesh": dict(mesh.shape), "processes": jax.process_count(),
               "device": jax.devices()[0].device_kind, "code": code_identity(), "aer": scores,
               **({"random_aer": random_aer} if random_aer else {}),
               **({"sweep": per_point} if swept else {})}
    if main_proc:
        write_json_atomic(summary_path, summary, indent=2)
    for p in per_point:
        if swept:
            say("sweep point " + ", ".join(f"{k}={v:g}" for k, v in p["hparams"].items()))
        say(format_table(p["aer"], cfg.algo, cfg.env, seeds))
    if diagnostics and cfg.inferred and swept:
        say("--sweep: no z diagnostics (they compare methods at their settings)")
    diag = None
    if want_diag:
        t0 = time.time()
        diag = run_diagnostics(prog, state, seeds, jax.random.PRNGKey(seed + 10**6),
                               diag_windows, diag_encoder_training)
        if main_proc:
            write_json_atomic(diag_path, diag)
        d = diag["splits"]["eval_out"]
        say(f"diagnostics ({time.time() - t0:.0f} s), eval-out, mean over seeds: "
            f"I(z;c) {np.mean([x['mi_context'] for x in d]):.3f} nats, variability "
            f"{np.mean([x['variability'] for x in d]):.3g}, RO "
            f"{np.mean([x['overlap'] for x in d]):.3f}")
    return RunResult(cfg, rows, scores, diag, state, summary)
