"""The HyPoGen pipeline as a library call: experts -> demonstrations -> behaviour cloning ->
zero-shot evaluation, each stage skipped when its output in the run directory was made with the
same settings (``run_pipeline``). ``python -m experiments.hypogen`` maps its flags onto a
:class:`PipelineConfig` and calls it; library code can do the same and get resume by stage,
the refusals of stale or damaged files, the non-finite guard and the report without the CLI::

    from hyperjax.hypogen.pipeline import PipelineConfig, run_pipeline
    cfg = PipelineConfig.for_task("lqr_di", algos=("hypogen", "cond"), epochs=200)
    out = run_pipeline(cfg, "runs/hypogen-lqr_di", progress_fn=lambda epoch, m: ...)

Run directory::

    RUN_DIR/experts.npz | experts/       the experts: closed-form LQR gains and P (lqr_di*),
                                         the TD3 experts' orbax checkpoint, or one brax-PPO
                                         checkpoint per spec (experts/spec_III, manipulation)
    RUN_DIR/dataset.npz                  demonstrations (format: hyperjax.hypogen.data)
    RUN_DIR/ALGO/seed_S/checkpoint/      orbax: last and selected parameters + record
    RUN_DIR/ALGO/seed_S/log.jsonl        one row per evaluation: epoch, losses, the return on
                                         the selection episodes
    RUN_DIR/ALGO/seed_S/result.json      held-out returns (last epoch; selected epoch), the
                                         train-spec returns, the split
    RUN_DIR/results.json, results.md     the table over algos and seeds, with the expert, the
                                         uniform-random floor and one row per spec

Modules: ``config`` (``PipelineConfig``, the stage records, ``PipelineError``), ``stages``
(experts, demonstrations, one model per algo and seed), ``report`` (the tables), this driver.

Model selection is unbiased: the "selected" parameters are chosen on episodes from other start
states than the reported ones (the paper chose on the reported test episodes); the last epoch,
on which nothing was chosen, is the headline. Seeds are the released runs' (123, 233, 666, 999,
789); the seed also picks the split (``split="faithful"``: 20 % train / 80 % test with the
released code's rounding).
"""
from __future__ import annotations

import os
import shutil
from typing import Callable

from hyperjax.guards import NonFiniteError
from hyperjax.hypogen import algos, data as D, report, stages
from hyperjax.hypogen.config import MANIPULATION_DEFAULTS, PipelineConfig, PipelineError
from hyperjax.rundir import lock_run_dir
from hyperjax.utils import write_json_atomic, write_text_atomic

__all__ = ["MANIPULATION_DEFAULTS", "NonFiniteError", "PipelineConfig", "PipelineError",
           "all_algos", "run_pipeline"]


def all_algos() -> tuple[str, ...]:
    """Every registered model (``hyperjax.hypogen.algos``): HyPoGen, HyperZero, Cond, UVFA,
    Meta, PEARL, then any registered since."""
    return algos.names()


def run_pipeline(cfg: PipelineConfig, run_dir: str, *, overwrite: bool = False,
                 log: Callable | None = print,
                 progress_fn: Callable | None = None) -> dict:
    """Runs (or resumes) the pipeline of ``cfg`` in ``run_dir``: the stages whose output is
    missing, then the report. A rerun with the same settings reads every stage back; a stage
    output made with other settings is refused, never silently reused.

    Args:
      cfg: the run (resolved here).
      run_dir: the run directory (created; layout in the module docstring).
      overwrite: delete ``run_dir``'s contents first (every stage is redone).
      log: called with each progress line (default ``print``; None: silent).
      progress_fn: ``progress_fn(epoch, metrics)`` after every evaluation of every model
        (brax's ``progress_fn``); ``metrics`` holds ``algo``, ``seed``, the losses and
        ``select_return``.
    Returns:
      what ``results.json`` holds: ``table`` (per algo: mean and std over seeds of the held-out
      return at the last and the selected epoch and of the train-spec return), the expert's and
      the random policy's returns, ``runs`` (per algo the seeds' ``result.json``).
    Raises:
      PipelineError: a bad setting, or a damaged / stale stage output (one line).
      NonFiniteError: a model's loss became non-finite (its log.jsonl keeps the rows).
    """
    log = log or (lambda *a, **k: None)
    cfg = cfg.resolved()
    if os.path.exists(run_dir) and not os.path.isdir(run_dir):
        raise PipelineError(f"--run_dir {run_dir} is a file, not a directory")
    try:   # one writer per run directory, as the AIB driver's (released at return)
        lock = lock_run_dir(run_dir, flag="--run_dir")
    except ValueError as e:
        raise PipelineError(str(e)) from None
    with lock:
        return _run_pipeline(cfg, run_dir, overwrite, log, progress_fn)


def _run_pipeline(cfg, run_dir, overwrite, log, progress_fn) -> dict:
    if overwrite and os.path.isdir(run_dir):
        shutil.rmtree(run_dir)
    try:
        os.makedirs(run_dir, exist_ok=True)
    except OSError as e:
        raise PipelineError(f"--run_dir {run_dir}: cannot create it ({e.strerror})") from None
    log(f"hyperjax.hypogen: {','.join(cfg.algos)} on {cfg.task}, {cfg.seeds} seed(s), "
        f"{cfg.epochs} epochs; run dir {run_dir}")
    grid, env = stages.stage_experts_and_data(cfg, run_dir, log)
    ds = D.load_dataset(run_dir)
    floor = stages.stage_random_floor(cfg, run_dir, grid, env, log)
    results = {a: [stages.train_one(cfg, a, s, grid, env, ds, run_dir, log, progress_fn)
                   for s in cfg.seed_list] for a in cfg.algos}
    text_lines, summary = report.report(cfg, grid, ds, results, floor)
    os.makedirs(os.path.join(run_dir, "plots"), exist_ok=True)
    fig = report.plot_per_spec(os.path.join(run_dir, "plots", "per_spec_returns.png"), grid,
                               summary, results)
    text_lines += ["", f"Per-spec returns: {os.path.relpath(fig, run_dir)}."]
    text = "\n".join(text_lines) + "\n"
    out = {**summary, "runs": results}
    write_json_atomic(os.path.join(run_dir, "results.json"), out, indent=1)
    write_text_atomic(os.path.join(run_dir, "results.md"), text)
    log(text)
    return out
