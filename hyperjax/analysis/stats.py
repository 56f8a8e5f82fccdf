"""Aggregate statistics of a study (the authors' `dmash/informativeness/metrics.py`): normalised
scores, IQM with stratified
bootstrap CIs (rliable), per-task AER intervals and relative gains by regime and overlap class.

Scores are per-seed AER (max of the last two evaluations, ``hyperjax.run.final_scores``).
A "study" here is ``scores[env][algo][split] = float[n_seeds]``.
"""
from __future__ import annotations

import warnings

import numpy as np
from rliable import library as rly
from rliable import metrics as rly_metrics

from hyperjax import envs

SPLITS = envs.contexts.SPLITS
REGIMES = (*SPLITS, "aggregated")
CLASSES = ("all", "overlap", "non_overlap")


def normalise(aer, env: str):
    """Min-max scaled AER ``(x - lo) / (hi - lo)`` with the task's ``return_bounds``.

    Args:
      aer: AER (float or array, return units).
      env: task name (``envs.TASKS[env].return_bounds``).
    Raises:
      ValueError: unknown task.
    """
    lo, hi = envs.task_info(env).return_bounds
    return (np.asarray(aer, np.float64) - lo) / (hi - lo)


def task_class(env: str) -> str:
    """``"overlap"`` or ``"non_overlap"`` (the authors' `dmash/contexts/context.py` class column)."""
    return "overlap" if envs.task_info(env).overlap else "non_overlap"


def interval(scores, func, reps: int = 5000, seed: int = 0):
    """Point estimate and 95 % percentile CI of ``func`` by rliable's stratified bootstrap.

    Args:
      scores: ``float[n_runs, n_tasks]`` (runs are resampled within each task).
      func: ``float[n_runs, n_tasks] -> float[m]``.
      reps: bootstrap resamples (5000, the authors' `dmash/informativeness/metrics.py`).
      seed: RNG seed (reproducible intervals).
    Returns:
      ``(point float[m], lo float[m], hi float[m])``.
    """
    scores = np.asarray(scores, np.float64)
    with warnings.catch_warnings():  # rliable hands arch a RandomState (a FutureWarning)
        warnings.simplefilter("ignore", FutureWarning)
        point, ci = rly.get_interval_estimates({"x": scores}, func, reps=reps,
                                               random_state=np.random.RandomState(seed))
    return point["x"], ci["x"][0], ci["x"][1]


def iqm(scores, reps: int = 5000, seed: int = 0) -> tuple[float, float, float]:
    """IQM of ``float[n_runs, n_tasks]`` normalised scores with its 95 % stratified bootstrap
    CI (rliable ``aggregate_iqm``; the authors' `dmash/informativeness/metrics.py`). Returns
    ``(iqm, lo, hi)``."""
    p, lo, hi = interval(scores, lambda x: np.array([rly_metrics.aggregate_iqm(x)]), reps, seed)
    return float(p[0]), float(lo[0]), float(hi[0])


def mean_ci(values, reps: int = 5000, seed: int = 0) -> tuple[float, float, float]:
    """Mean of ``float[n_seeds]`` with its 95 % bootstrap CI: ``(mean, lo, hi)``."""
    v = np.asarray(values, np.float64).reshape(-1, 1)
    p, lo, hi = interval(v, lambda x: np.array([x.mean()]), reps, seed)
    return float(p[0]), float(lo[0]), float(hi[0])


def score_matrix(scores: dict, algo: str, regime: str, cls: str = "all"):
    """Normalised per-seed scores ``float[n_seeds, n_tasks']`` of ``algo`` for a regime.

    ``regime`` is a split or ``"aggregated"`` (the three splits as separate columns); ``cls``
    keeps the tasks of one overlap class. Returns None when no task qualifies. Every task needs
    the same number of seeds.
    """
    cols = []
    for env in sorted(scores):
        if cls != "all" and task_class(env) != cls or algo not in scores[env]:
            continue
        splits = SPLITS if regime == "aggregated" else (regime,)
        cols += [normalise(scores[env][algo][s], env) for s in splits]
    return np.stack(cols, axis=1) if cols else None


def iqm_table(scores: dict, algos, reps: int = 5000, seed: int = 0) -> dict:
    """``table[regime][cls][algo] = (iqm, lo, hi)`` or None (the paper's IQM table, arXiv
    2602.06550 v2, Tables 2 and 9).

    A class holding the same tasks as "all" (e.g. a study of non-overlapping tasks only) reuses
    its interval instead of bootstrapping the same matrix again.
    """
    out = {}
    for regime in REGIMES:
        out[regime] = {}
        for cls in CLASSES:
            out[regime][cls] = {}
            same = cls != "all" and all(task_class(e) == cls for e in scores)
            for algo in algos:
                if same:
                    out[regime][cls][algo] = out[regime]["all"][algo]
                    continue
                m = score_matrix(scores, algo, regime, cls)
                out[regime][cls][algo] = None if m is None else iqm(m, reps, seed)
    return out


def relative_gain(x: float, b: float) -> float:
    """(x - b) / b x 100 (%), the paper's Table 9 (the authors' `dmash/informativeness/metrics.py`);
    NaN when b = 0."""
    return float("nan") if b == 0 else 100.0 * (x - b) / b


def gain_table(scores: dict, method: str = "dma_sh",
               baselines=("dr", "concat", "da")) -> dict:
    """``table[regime][baseline][cls]`` = relative gain (%) of ``method`` over ``baseline`` of
    the mean normalised score (over seeds and the regime's tasks and splits), or None.

    The paper aggregates min-max-scaled AER by regime x overlap class (v2 Table 9); it does not
    say which average, and the mean is used here.
    """
    out = {}
    for regime in REGIMES:
        out[regime] = {}
        for b in baselines:
            out[regime][b] = {}
            for cls in CLASSES:
                x = score_matrix(scores, method, regime, cls)
                y = score_matrix(scores, b, regime, cls)
                out[regime][b][cls] = (None if x is None or y is None
                                       else relative_gain(x.mean(), y.mean()))
    return out


def curve_band(aer_by_step, reps: int = 2000, seed: int = 0):
    """Mean learning curve with a 95 % bootstrap band over seeds.

    Args:
      aer_by_step: ``float[n_seeds, n_evals]``.
    Returns:
      ``(mean, lo, hi)``, each ``float[n_evals]``.
    """
    return interval(aer_by_step, lambda x: x.mean(axis=0), reps, seed)
