"""Runs and studies read back from disk and merged into one ``Study`` (``experiments.report``;
the study command writes its own report through the same path).

Sources, found by walking every directory given:

* a **run directory** (``hyperjax.run.train_run``'s: ``config.json``, ``metrics.jsonl`` and,
  once finished, ``summary.json``; ``diagnostics.json`` when written) gives the per-seed AER
  of one (task, method) from its metrics rows: per seed the max of the last two evaluations
  (``stats.final_scores``), and its learning curves;
* a **study file** (``study.json``, ``write_study``'s) gives every (task, method) it holds
  that no run directory read in the same call replaces (studies committed without their run
  directories). A run directory replaces a study's cell when it lies under the study's folder
  or is one of the sources the cell pooled (``meta.pooled``): the same runs are never counted
  twice, whichever paths are given.

Per (task, method) the runs' seeds are pooled, so seed counts may differ between cells.
Pooling needs one budget per task (every method of a task trained and evaluated alike) and one
code version everywhere (runs that predate the record count as one unknown version per
directory given); ``merge`` refuses otherwise, naming the runs, unless ``allow_mixed`` (the
report then lists what it pooled). A damaged or unfinished run directory
is named and skipped (``load(..., strict=True)`` refuses instead).
"""
from __future__ import annotations

import dataclasses
import json
import os

from hyperjax import envs
from hyperjax.analysis import stats
from hyperjax.analysis.report import Study

SPLITS = envs.contexts.SPLITS
UNKNOWN = "unknown (written before 2026-12-06)"


class CollectError(ValueError):
    """A directory or a set of runs that cannot be reported (one line naming them)."""


@dataclasses.dataclass
class Run:
    """One (task, method) source: a run directory or one cell of a study file.

    Attributes:
      env, algo: the task and method.
      path: the run directory, or the study file.
      scores: ``{split: [per-seed AER]}``.
      seeds: the seed numbers (``[None] * n`` for a study cell, which does not record them).
      budget: ``(total_steps, eval_every, eval_episodes)``.
      code: the code version that trained it (``summary.json``'s ``code``, or ``UNKNOWN``).
      curves: ``curves_from_rows`` of its rows, or None.
      diagnostics: its ``diagnostics.json``, or None.
      sources: for a study cell, the run directories it pooled (``meta.pooled``'s paths, as
        written); empty for a run directory.
    """

    env: str
    algo: str
    path: str
    scores: dict
    seeds: list
    budget: tuple
    code: str
    curves: dict | None = None
    diagnostics: dict | None = None
    sources: tuple = ()


def curves_from_rows(rows: list[dict]) -> dict:
    """``{"step": [n_evals], split: [[n_evals] per seed]}`` from a run's metrics rows."""
    steps = sorted({r["step"] for r in rows})
    seeds = sorted({r["seed"] for r in rows})
    out = {"step": steps}
    for split in SPLITS:
        aer = {(r["seed"], r["step"]): r["aer"] for r in rows if r["split"] == split}
        out[split] = [[aer.get((s, t), float("nan")) for t in steps] for s in seeds]
    return out


def code_label(code) -> str:
    """``summary.json``'s ``code`` record as one string (``UNKNOWN`` when absent)."""
    if not code:
        return UNKNOWN
    return f"hyperjax {code.get('version')} @ {code.get('commit') or 'no git commit'}"


def _json(path: str):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise CollectError(f"{path}: unreadable ({e.__class__.__name__}: {e})") from None


def read_run(run_dir: str) -> Run:
    """The ``Run`` of a run directory.

    Raises:
      CollectError: a missing or damaged ``config.json`` / ``metrics.jsonl`` / ``summary.json``
        (an unfinished run has no ``summary.json``), a sweep (one point per report), or rows
        that end before the configured last evaluation; the message names the file.
    """
    cfg = _json(os.path.join(run_dir, "config.json"))
    summary_path = os.path.join(run_dir, "summary.json")
    if not os.path.exists(summary_path):
        raise CollectError(f"{run_dir}: no summary.json (the run has not finished)")
    summary = _json(summary_path)
    if cfg.get("sweep"):
        raise CollectError(f"{run_dir}: a --sweep run (report one point's own run instead)")
    metrics = os.path.join(run_dir, "metrics.jsonl")
    try:
        with open(metrics) as f:
            rows = [json.loads(line) for line in f if line.strip()]
    except (OSError, ValueError) as e:
        raise CollectError(f"{metrics}: unreadable ({e.__class__.__name__})") from None
    last = max((r.get("step", -1) for r in rows), default=-1)
    if last != cfg["total_steps"]:
        raise CollectError(f"{metrics}: rows end at step {last}, the run's last evaluation is "
                           f"at {cfg['total_steps']}")
    final = stats.final_scores(rows)
    diag_path = os.path.join(run_dir, "diagnostics.json")
    return Run(env=cfg["env"], algo=cfg["algo"], path=run_dir,
               scores={s: final[s][2] for s in SPLITS},
               seeds=sorted({r["seed"] for r in rows}),
               budget=(cfg["total_steps"], cfg["eval_every"], cfg["eval_episodes"]),
               code=code_label(summary.get("code")), curves=curves_from_rows(rows),
               diagnostics=_json(diag_path) if os.path.exists(diag_path) else None)


def _study_code(meta: dict, env: str, algo: str) -> str:
    """A study cell's code version: from ``meta.pooled`` (what ``merge`` wrote: one row per
    source, each with its ``code`` label), else ``meta.code`` (a list of labels, one label, or
    a ``summary.json`` code record)."""
    labels = sorted({p["code"] for p in meta.get("pooled") or []
                     if p.get("env") == env and p.get("algo") == algo and p.get("code")})
    code = meta.get("code")
    if not labels and isinstance(code, (list, tuple)):
        labels = sorted(set(code))
    elif not labels and isinstance(code, str):
        labels = [code]
    elif not labels:
        return code_label(code)
    return labels[0] if len(labels) == 1 else "several versions: " + "; ".join(labels)


def read_study(path: str) -> list[Run]:
    """The cells of a ``study.json`` (``write_study``'s, or any with ``scores`` and
    ``meta.budgets``) as ``Run``s, with budgets and code versions from its ``meta``.

    Raises:
      CollectError: unreadable, or missing ``scores`` / a task's budget.
    """
    study = _json(path)
    try:
        meta, scores = study.get("meta", {}), study["scores"]
        out = []
        for env, by_algo in scores.items():
            budget = (meta.get("budgets") or {}).get(env) or [
                meta.get("total_steps"), meta.get("eval_every"), meta.get("eval_episodes")]
            if None in budget:
                raise KeyError(f"meta.budgets[{env!r}]")
            for algo, per_split in by_algo.items():
                out.append(Run(env, algo, path, {s: list(per_split[s]) for s in SPLITS},
                               [None] * len(per_split["train"]), tuple(budget[:3]),
                               _study_code(meta, env, algo),
                               (study.get("curves") or {}).get(env, {}).get(algo),
                               (study.get("diagnostics") or {}).get(env, {}).get(algo),
                               tuple(p["path"] for p in meta.get("pooled") or []
                                     if p.get("env") == env and p.get("algo") == algo
                                     and p.get("path"))))
        return out
    except (KeyError, TypeError, AttributeError) as e:
        raise CollectError(f"{path}: not a study file (missing {e})") from None


def _same_dir(run_path: str, source: str) -> bool:
    """Whether ``source`` (a path a study recorded, relative to where that study was written,
    or absolute) names the run directory ``run_path``."""
    run = os.path.abspath(run_path)
    if os.path.isabs(source):
        return run == os.path.normpath(source)
    return run == os.path.abspath(source) or run.endswith(os.sep + os.path.normpath(source))


def _under(path: str, folder: str) -> bool:
    path, folder = os.path.abspath(path), os.path.abspath(folder)
    return os.path.commonpath([path, folder]) == folder


def load(paths, strict: bool = False) -> tuple[list[Run], list[str]]:
    """Every run and study cell under ``paths`` (directories, walked; or ``study.json``
    files). Returns ``(runs, skipped)``: ``skipped`` holds one line per damaged or unfinished
    source (its path and why). A study cell is left out where a run directory read here
    replaces it (under the study's folder, or one of the cell's ``sources``).

    Raises:
      CollectError: a path that does not exist; a study cell that pooled a run directory
        given here beside others that are not (its seeds cannot be told apart); with
        ``strict``, the first damaged source.
    """
    runs, skipped, cells = [], [], []
    for top in paths:
        if not os.path.exists(top):
            raise CollectError(f"{top}: no such file or directory")
        if os.path.isfile(top):
            walk = [(os.path.dirname(top) or ".", [], [os.path.basename(top)])]
        else:
            walk = sorted(os.walk(top))
        dirs_here, cells_here, studies = [], [], []
        for d, subdirs, files in walk:
            subdirs[:] = sorted(s for s in subdirs if s != "checkpoints")
            try:
                if "config.json" in files and ("metrics.jsonl" in files
                                               or "summary.json" in files):
                    dirs_here.append(read_run(d))
                if "study.json" in files:
                    studies.append(os.path.join(d, "study.json"))
            except CollectError as e:
                if strict:
                    raise
                skipped.append(str(e))
        for path in studies:
            try:
                cells_here.extend(read_study(path))
            except CollectError as e:
                if strict:
                    raise
                skipped.append(str(e))
        for r in dirs_here + cells_here:  # unknown versions pool within one directory given
            if r.code == UNKNOWN:
                r.code = f"{UNKNOWN}, under {top}"
        runs.extend(dirs_here)
        cells.extend(cells_here)
    dirs = list(runs)
    for c in cells:
        same = [r for r in dirs if (r.env, r.algo) == (c.env, c.algo)]
        inside = [r for r in same if _under(r.path, os.path.dirname(c.path))]
        named = [r for r in same if any(_same_dir(r.path, s) for s in c.sources)]
        if inside:
            continue  # the study's own run directories
        if named:
            missing = [s for s in c.sources if not any(_same_dir(r.path, s) for r in named)]
            if missing:
                raise CollectError(
                    f"{c.path}: {c.env}/{c.algo} pooled {', '.join(missing)} with "
                    f"{', '.join(r.path for r in named)}, which is given too: its seeds cannot "
                    "be told apart (give the study or its run directories, not both)")
            continue  # the same runs, read from their directories
        runs.append(c)
    return runs, skipped


def _refuse_twice(runs: list[Run]) -> None:
    """Refuse one (task, method)'s sources that hold the same run twice: a seed at one budget
    and code version in two run directories (copies), or one run directory pooled by two study
    files. ``--allow_mixed`` does not lift this: runs of other budgets or versions are other
    runs, a copy is not."""
    owner: dict = {}
    for r in runs:
        keys = [("seed", s, r.budget, r.code) for s in r.seeds if s is not None]
        keys += [("source", os.path.normpath(p)) for p in r.sources]
        for k in keys:
            if k in owner and owner[k] != r.path:
                what = f"seed {k[1]}" if k[0] == "seed" else f"the run directory {k[1]}"
                raise CollectError(f"{r.env}/{r.algo}: {what} in two sources ({owner[k]}, "
                                   f"{r.path}): one run read twice")
            owner[k] = r.path


def merge(runs: list[Run], allow_mixed: bool = False, device: str | None = None) -> Study:
    """One ``Study`` of ``runs``: per (task, method) the runs' per-seed scores concatenated.

    ``meta`` holds ``budgets`` (per task), ``code`` (the versions), ``pooled`` (one row per
    source: task, method, seeds, budget, code, path) and ``mixed`` (what differs, when
    ``allow_mixed`` let it through).

    Raises:
      CollectError: no runs; one run in two sources (``_refuse_twice``: a seed at one budget
        and code version in two run directories, one run directory pooled by two study
        files), even with ``allow_mixed``; or, unless ``allow_mixed``, one task's runs at
        different budgets or runs of different code versions (naming the runs).
    """
    if not runs:
        raise CollectError("no finished runs or study files found")
    mixed = []
    by_env: dict[str, list[Run]] = {}
    for r in runs:
        by_env.setdefault(r.env, []).append(r)
    for env, rs in by_env.items():
        budgets = sorted({r.budget for r in rs})
        if len(budgets) > 1:
            mixed.append(f"{env}: budgets differ (" + "; ".join(
                f"{r.algo} {list(r.budget)} in {r.path}" for r in rs) + ")")
    codes = sorted({r.code for r in runs})
    if len(codes) > 1:
        mixed.append("code versions differ (" + "; ".join(
            f"{c}: " + ", ".join(sorted({f'{r.env}/{r.algo}' for r in runs if r.code == c}))
            for c in codes) + ")")
    if mixed and not allow_mixed:
        raise CollectError("refusing to pool: " + " | ".join(mixed)
                           + " (pass --allow_mixed to pool them anyway)")
    scores, curves, diags, pooled = {}, {}, {}, []
    for r in runs:
        cell = scores.setdefault(r.env, {}).get(r.algo)
        if cell is None:
            scores[r.env][r.algo] = {s: list(r.scores[s]) for s in SPLITS}
        else:
            for s in SPLITS:
                cell[s] = cell[s] + list(r.scores[s])
        pooled.append(dict(env=r.env, algo=r.algo, seeds=len(r.scores["train"]),
                           budget=list(r.budget), code=r.code, path=r.path))
        if r.curves is not None and r.algo not in curves.get(r.env, {}):
            curves.setdefault(r.env, {})[r.algo] = r.curves
        if r.diagnostics is not None and r.algo not in diags.get(r.env, {}):
            diags.setdefault(r.env, {})[r.algo] = r.diagnostics
    for env, rs in by_env.items():
        for algo in sorted({r.algo for r in rs}):
            _refuse_twice([r for r in rs if r.algo == algo])
    env_list = [e for e in envs.env_names() if e in scores] + sorted(
        e for e in scores if e not in envs.env_names())
    algo_list = sorted({r.algo for r in runs})
    counts = sorted({len(v["train"]) for per in scores.values() for v in per.values()})
    meta = dict(seeds=counts[0] if len(counts) == 1 else f"{counts[0]}–{counts[-1]} per cell",
                budgets={e: list(by_env[e][0].budget) for e in env_list},
                code=codes, pooled=pooled, mixed=mixed, device=device or "see each run")
    return Study(env_list, algo_list, scores, curves, diags, meta)
