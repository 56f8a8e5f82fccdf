"""Aggregate statistics of a study (the authors' `dmash/informativeness/metrics.py`): normalised
scores, IQM with stratified bootstrap CIs (rliable), per-task AER intervals, and the paper's
relative gains (ratios of IQMs) with bootstrap CIs and probabilities of improvement, by
regime and overlap class.

Scores are per-seed AER (max of the last two evaluations, ``final_scores``).
A "study" here is ``scores[env][algo][split] = float[n_seeds]``; seed counts may differ
between tasks and methods.
"""
from __future__ import annotations

import warnings

import numpy as np

from hyperjax import envs

SPLITS = envs.contexts.SPLITS


def _rliable():
    """``(rliable.library, rliable.metrics)``, imported on first use: rliable loads arch,
    pandas and seaborn (about 1.2 s), which a training process that only reads
    ``final_scores`` never needs."""
    from rliable import library, metrics  # noqa: PLC0415  (import time, see above)
    return library, metrics
REGIMES = (*SPLITS, "aggregated")
CLASSES = ("all", "overlap", "non_overlap")


def final_scores(rows: list[dict]) -> dict:
    """Per split: per-seed score = max of the last two evaluations (the authors'
    `dmash/informativeness/metrics.py`, ``max(ys[-2:])``), then ``(mean, std, [per seed])``.

    Rows of a sweep (with ``hparams``) must be split by point first (``rundir.rows_by_point``).
    """
    out = {}
    for split in SPLITS:
        per_seed = {}
        for r in sorted((r for r in rows if r["split"] == split), key=lambda r: r["step"]):
            per_seed.setdefault(r["seed"], []).append(r["aer"])
        scores = np.array([max(v[-2:]) for v in per_seed.values()])
        out[split] = (float(scores.mean()), float(scores.std()), scores.tolist())
    return out


def normalise(aer, env: str):
    """Min-max scaled AER ``(x - lo) / (hi - lo)`` with the task's ``return_bounds``.

    Args:
      aer: AER (float or array, return units).
      env: task name (``envs.TASKS[env].return_bounds``).
    Raises:
      ValueError: unknown task, or one registered without ``return_bounds``.
    """
    bounds = envs.task_info(env).return_bounds
    if bounds is None:
        raise ValueError(f"task {env!r} has no return_bounds: register it with "
                         f"return_bounds=(lo, hi) to normalise its scores")
    lo, hi = bounds
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
    # rliable's StratifiedBootstrap draws its resamples from NumPy's global RNG
    # (`np.random.choice` in `update_indices`), not from the `random_state` it is given: the
    # global RNG is seeded here and restored after, so an interval depends on `seed` only
    saved = np.random.get_state()
    np.random.seed(seed)
    try:
        with warnings.catch_warnings():  # rliable hands arch a RandomState (a FutureWarning)
            warnings.simplefilter("ignore", FutureWarning)
            point, ci = _rliable()[0].get_interval_estimates({"x": scores}, func, reps=reps,
                                                   random_state=np.random.RandomState(seed))
    finally:
        np.random.set_state(saved)
    return point["x"], ci["x"][0], ci["x"][1]


def iqm(scores, reps: int = 5000, seed: int = 0) -> tuple[float, float, float]:
    """IQM of ``float[n_runs, n_tasks]`` normalised scores with its 95 % stratified bootstrap
    CI (rliable ``aggregate_iqm``; the authors' `dmash/informativeness/metrics.py`). Returns
    ``(iqm, lo, hi)``."""
    p, lo, hi = interval(scores, lambda x: np.array([_rliable()[1].aggregate_iqm(x)]), reps, seed)
    return float(p[0]), float(lo[0]), float(hi[0])


def mean_ci(values, reps: int = 5000, seed: int = 0) -> tuple[float, float, float]:
    """Mean of ``float[n_seeds]`` with its 95 % bootstrap CI: ``(mean, lo, hi)``."""
    v = np.asarray(values, np.float64).reshape(-1, 1)
    p, lo, hi = interval(v, lambda x: np.array([x.mean()]), reps, seed)
    return float(p[0]), float(lo[0]), float(hi[0])


def score_columns(scores: dict, algo: str, regime: str, cls: str = "all",
                  envs=None) -> list[np.ndarray] | None:
    """Normalised per-seed scores of ``algo`` for a regime, one column per (task, split):
    ``[float[n_seeds(task)]]`` in task order. Seed counts may differ between tasks.

    ``regime`` is a split or ``"aggregated"`` (the three splits as separate columns); ``cls``
    keeps the tasks of one overlap class; ``envs`` (default: every task of ``scores``)
    restricts the tasks. Returns None when no task qualifies.
    """
    cols = []
    for env in sorted(scores if envs is None else envs):
        if cls != "all" and task_class(env) != cls or algo not in scores.get(env, {}):
            continue
        splits = SPLITS if regime == "aggregated" else (regime,)
        cols += [normalise(scores[env][algo][s], env) for s in splits]
    return cols or None


def iqm_of(cols) -> float:
    """IQM of the pooled scores of ``cols`` (``[float[n_i]]``): rliable's ``aggregate_iqm``
    (a 25 % trimmed mean over every run x task score), which needs no equal run counts."""
    return float(_rliable()[1].aggregate_iqm(np.concatenate([np.ravel(c) for c in cols])))


def _resample(cols, reps: int, rng) -> np.ndarray:
    """``float[reps, sum n_i]``: each column's runs drawn with replacement within the column
    (rliable's stratified bootstrap, ``task_bootstrap=False``), columns side by side."""
    out = []
    for c in cols:
        c = np.asarray(c, np.float64)
        out.append(c[rng.randint(0, len(c), size=(reps, len(c)))])
    return np.concatenate(out, axis=1)


def bootstrap_iqms(cols, reps: int = 5000, seed: int = 0) -> np.ndarray:
    """``float[reps]`` IQMs of stratified bootstrap resamples of ``cols`` (runs resampled
    within each task column, as rliable's ``StratifiedBootstrap``; unequal run counts
    allowed)."""
    from scipy.stats import trim_mean
    return trim_mean(_resample(cols, reps, np.random.RandomState(seed)), 0.25, axis=1)


def iqm_ci(cols, reps: int = 5000, seed: int = 0) -> tuple[float, float, float]:
    """``(iqm, lo, hi)``: the IQM of ``cols`` with its 95 % stratified bootstrap CI. Equal run
    counts go through rliable (``iqm`` on ``float[n_runs, n_cols]``); unequal ones through
    ``bootstrap_iqms`` (the same resampling scheme, percentile interval)."""
    if len({len(c) for c in cols}) == 1:
        return iqm(np.stack(cols, axis=1), reps, seed)
    b = bootstrap_iqms(cols, reps, seed)
    return iqm_of(cols), float(np.percentile(b, 2.5)), float(np.percentile(b, 97.5))


def iqm_table(scores: dict, algos, reps: int = 5000, seed: int = 0) -> dict:
    """``table[regime][cls][algo] = (iqm, lo, hi)`` or None (the paper's IQM table, arXiv
    2602.06550 v2, Tables 2 and 9). Seed counts may differ between tasks (``iqm_ci``).

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
                cols = score_columns(scores, algo, regime, cls)
                out[regime][cls][algo] = None if cols is None else iqm_ci(cols, reps, seed)
    return out


def relative_gain(x: float, b: float) -> float:
    """(x - b) / b x 100 (%), the paper's Table 9 (the authors' `dmash/informativeness/metrics.py`);
    NaN when b = 0."""
    return float("nan") if b == 0 else 100.0 * (x - b) / b


def iqm_gain(x_cols, b_cols, reps: int = 5000, seed: int = 0) -> tuple[float, float, float]:
    """The paper's relative gain (arXiv 2602.06550 v2, Table 9): ``(IQM(x) - IQM(b)) / IQM(b)
    x 100`` (%) with a 95 % percentile CI from independent stratified bootstrap resamples of
    both methods' runs (``bootstrap_iqms``). Returns ``(gain, lo, hi)``; NaNs when IQM(b) is
    0. ``x_cols`` and ``b_cols`` must hold the same tasks in the same order."""
    point = relative_gain(iqm_of(x_cols), iqm_of(b_cols))
    bx = bootstrap_iqms(x_cols, reps, seed)
    bb = bootstrap_iqms(b_cols, reps, seed + 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        g = 100.0 * (bx - bb) / bb
    g = g[np.isfinite(g)]
    if not g.size or np.isnan(point):
        return float("nan"), float("nan"), float("nan")
    return point, float(np.percentile(g, 2.5)), float(np.percentile(g, 97.5))


def probability_of_improvement(x_cols, b_cols, reps: int = 2000,
                               seed: int = 0) -> tuple[float, float, float]:
    """P(X > Y) averaged over task columns, ties counting one half (rliable's
    ``probability_of_improvement``: the Mann-Whitney U statistic over n_x * n_y per column),
    with a 95 % stratified bootstrap CI. Run counts may differ. Returns ``(p, lo, hi)``."""
    rng = np.random.RandomState(seed)

    def poi(xs, ys):  # xs, ys: [..., n], [..., m] -> [...]
        gt = (xs[..., :, None] > ys[..., None, :]).mean((-1, -2))
        eq = (xs[..., :, None] == ys[..., None, :]).mean((-1, -2))
        return gt + 0.5 * eq

    point = float(np.mean([poi(np.asarray(x, float), np.asarray(y, float))
                           for x, y in zip(x_cols, b_cols)]))
    reps_p = np.mean([poi(_resample([x], reps, rng), _resample([y], reps, rng))
                      for x, y in zip(x_cols, b_cols)], axis=0)
    return point, float(np.percentile(reps_p, 2.5)), float(np.percentile(reps_p, 97.5))


def common_envs(scores: dict, *algos) -> list[str]:
    """The tasks of ``scores`` on which every one of ``algos`` ran (sorted)."""
    return sorted(e for e in scores if all(a in scores[e] for a in algos))


def gain_table(scores: dict, method: str = "dma_sh", baselines=("dr", "concat", "da"),
               reps: int = 5000, seed: int = 0) -> dict:
    """``table[regime][baseline][cls]`` = ``{"gain": (gain %, lo, hi), "poi": (p, lo, hi),
    "envs": [...]}`` of ``method`` over ``baseline`` on the tasks both ran, or None.

    The gain is the paper's: the relative change of IQMs of min-max-normalised per-seed AER
    pooled over seeds x tasks (x splits for "aggregated") of the regime and class (arXiv
    2602.06550 v2, Table 9; fed v2's IQM table it gives all 27 cells of Table 9), with a
    bootstrap CI (``iqm_gain``); ``poi`` is rliable's probability of improvement.
    """
    out = {}
    for regime in REGIMES:
        out[regime] = {}
        for b in baselines:
            out[regime][b] = {}
            both = common_envs(scores, method, b)
            for cls in CLASSES:
                x = score_columns(scores, method, regime, cls, both)
                y = score_columns(scores, b, regime, cls, both)
                if x is None or y is None:
                    out[regime][b][cls] = None
                    continue
                envs_ = [e for e in both if cls == "all" or task_class(e) == cls]
                out[regime][b][cls] = {"gain": iqm_gain(x, y, reps, seed),
                                       "poi": probability_of_improvement(x, y, min(reps, 2000),
                                                                         seed),
                                       "envs": envs_}
    return out


def curve_band(aer_by_step, reps: int = 2000, seed: int = 0):
    """Mean learning curve with a 95 % bootstrap band over seeds.

    Args:
      aer_by_step: ``float[n_seeds, n_evals]``.
    Returns:
      ``(mean, lo, hi)``, each ``float[n_evals]``.
    """
    return interval(aer_by_step, lambda x: x.mean(axis=0), reps, seed)
