"""The study report: markdown tables in the paper's layout (the authors'
`dmash/informativeness/metrics.py`) from a ``Study``.

A ``Study`` is plain data (JSON-able), so the writer is testable without training:

* ``scores[env][algo][split]``: per-seed AER (``list[float]``, max of the last two evaluations);
* ``curves[env][algo]``: ``{"step": [n_evals], split: [[n_evals] per seed]}``;
* ``diagnostics[env][algo]``: ``{"splits": {split: [per-seed dict of
  representation.diagnose + shadow_actor / shadow_critic]}, "fig4": [per-seed cosine
  [6, 6]] or None, "fig4_contexts": [[mass, af], ...]}``.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from hyperjax.analysis import paper, stats
from hyperjax import methods

SPLIT_LABELS = {"train": "train", "eval_in": "eval-in", "eval_out": "eval-out",
                "aggregated": "aggregated"}
CLASS_LABELS = {"all": "all", "overlap": "overlap", "non_overlap": "non-overlap"}
DIAG_COLUMNS = (("mi_context", "I(z;c)"), ("mi_mode", "I(z;mode)"),
                ("mi_continuous", "I(z;cont)"), ("variability", "variability"),
                ("overlap", "RO"), ("overlap_offdiag", "RO off-diag"),
                ("within_context", "within-ctx"), ("within_mode", "within-mode"),
                ("between_mode", "between-mode"), ("shadow_actor", "‖∇z Lπ‖"),
                ("shadow_critic", "‖∇z LQ‖"))


@dataclasses.dataclass
class Study:
    envs: list
    algos: list
    scores: dict
    curves: dict
    diagnostics: dict
    meta: dict


def label(algo: str) -> str:
    return methods.label(algo)


def _table(header, rows) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return out


def _fmt(x, digits=2):
    return "–" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.{digits}f}"


def aggregated_aer(per_split: dict) -> np.ndarray:
    """Per-seed AER averaged over the three splits (the paper's Table 2 "aggregated")."""
    return np.mean([per_split[s] for s in stats.SPLITS], axis=0)


def fig4_summary(cos: np.ndarray, modes) -> tuple[tuple, tuple]:
    """``((min, max) within-mode, (min, max) cross-mode)`` off-diagonal cosines."""
    modes = np.asarray(modes)
    same = modes[:, None] == modes[None, :]
    off = ~np.eye(len(modes), dtype=bool)
    w, x = cos[same & off], cos[~same]
    return (float(w.min()), float(w.max())), (float(x.min()), float(x.max()))


def pooled_section(meta: dict) -> list[str]:
    """Markdown lines: what a merged study pooled (``collect.merge``'s ``meta``): one row per
    source, and what differed when pooling was allowed anyway."""
    lines = ["## What was pooled", "",
             "Per (task, method) the seeds of every source below are pooled; code versions: "
             + "; ".join(meta.get("code", [])) + ".", ""]
    rows = [[p["env"], label(p["algo"]), p["seeds"], "/".join(str(x) for x in p["budget"]),
             p["code"], f"`{p['path']}`"] for p in meta["pooled"]]
    lines += _table(["task", "method", "seeds", "steps / eval every / episodes", "code",
                     "source"], rows) + [""]
    if meta.get("mixed"):
        lines += ["**Pooled although they differ** (`--allow_mixed`):", ""]
        lines += [f"- {x}" for x in meta["mixed"]] + [""]
    return lines


def render(study: Study, reps: int = 5000, plots: dict | None = None,
           table: dict | None = None) -> str:
    """The report as markdown.

    Args:
      study: the ``Study``.
      reps: bootstrap resamples for every interval.
      plots: ``{title: PNG path relative to the report}`` to embed.
      table: a precomputed ``stats.iqm_table`` (computed here when None).
    """
    algos = methods.order(study.algos)
    m = study.meta
    budgets = m.get("budgets") or {e: [m.get("total_steps"), m.get("eval_every"),
                                       m.get("eval_episodes")] for e in study.envs}
    budget = "; ".join(f"{e}: {b[0]} steps, evaluation every {b[1]} steps, {b[2]} episodes "
                       "per context" for e, b in budgets.items())
    lines = ["# AIB study", "",
             f"Tasks: {', '.join(study.envs)}. Methods: {', '.join(label(a) for a in algos)}. "
             f"Seeds: {m.get('seeds')}. Budget per run ({budget}); every evaluation covers "
             "all 20 contexts of each split with deterministic actions; per seed the max of "
             f"the last two evaluations (the authors' rule). Device: {m.get('device', '?')}.",
             ""]
    if m.get("pooled"):
        lines += pooled_section(m)

    lines += ["## AER per task", "",
              "Mean ± std over seeds, and the 95 % bootstrap CI of the mean "
              f"({reps} resamples).", ""]
    for env in study.envs:
        rows = []
        for a in algos:
            if a not in study.scores.get(env, {}):
                continue
            per = study.scores[env][a]
            cells = []
            for s in (*stats.SPLITS, "aggregated"):
                v = np.asarray(aggregated_aer(per) if s == "aggregated" else per[s])
                mu, lo, hi = stats.mean_ci(v, reps)
                cells.append(f"{mu:.2f} ± {v.std():.2f} [{lo:.2f}, {hi:.2f}]")
            rows.append([label(a), *cells])
        lines += [f"**{env}**", ""]
        lines += _table(["method", *SPLIT_LABELS.values()], rows) + [""]

    table = table if table is not None else stats.iqm_table(study.scores, algos, reps)
    lines += ["## IQM of normalised scores", "",
              "Each cell: all / overlap / non-overlap tasks (– where no task of the class ran); "
              "normalised by the task's return bounds; rliable `aggregate_iqm` over seeds × "
              "tasks (× splits for aggregated).", ""]
    rows = [[SPLIT_LABELS[r], *["/".join(_fmt(table[r][c][a] and table[r][c][a][0], 3)
                                         for c in stats.CLASSES) for a in algos]]
            for r in stats.REGIMES]
    lines += _table(["split", *map(label, algos)], rows) + [""]
    lines += ["95 % stratified bootstrap CIs of the IQM over all tasks "
              f"({reps} resamples):", ""]
    rows = [[SPLIT_LABELS[r], *[("–" if table[r]["all"][a] is None else
                                 f"[{table[r]['all'][a][1]:.3f}, {table[r]['all'][a][2]:.3f}]")
                                for a in algos]] for r in stats.REGIMES]
    lines += _table(["split", *map(label, algos)], rows) + [""]

    baselines = [b for b in ("dr", "concat", "da") if b in algos]
    gains = None
    if "dma_sh" in algos and baselines:
        gains = stats.gain_table(study.scores, "dma_sh", baselines, reps)
        lines += ["## Relative gain of DMA*-SH (%)", "",
                  "The paper's statistic: (IQM(DMA*-SH) − IQM(b)) / IQM(b) × 100 of the "
                  "normalised per-seed scores pooled over seeds × tasks (× splits for "
                  "aggregated), on the tasks both methods ran; each cell: all / overlap / "
                  "non-overlap (the paper's Table 9 layout).", ""]
        rows = [[SPLIT_LABELS[r], *["/".join(_fmt(gains[r][b][c] and gains[r][b][c]["gain"][0],
                                                  1) for c in stats.CLASSES)
                                    for b in baselines]] for r in stats.REGIMES]
        lines += _table(["regime", *[f"vs {label(b)}" for b in baselines]], rows) + [""]
        lines += ["95 % CIs of the gain (independent stratified bootstrap of both methods' "
                  f"runs, {reps} resamples) and rliable's probability of improvement "
                  "P(DMA*-SH > b), all tasks:", ""]
        rows = []
        for r in stats.REGIMES:
            for b in baselines:
                cell = gains[r][b]["all"]
                if cell is None:
                    continue
                g, p = cell["gain"], cell["poi"]
                rows.append([SPLIT_LABELS[r], f"vs {label(b)}",
                             f"{_fmt(g[0], 1)} [{_fmt(g[1], 1)}, {_fmt(g[2], 1)}]",
                             f"{p[0]:.2f} [{p[1]:.2f}, {p[2]:.2f}]"])
        lines += _table(["regime", "baseline", "gain % [95 % CI]", "P(improvement) [95 % CI]"],
                        rows) + [""]

    lines += paper.side_by_side(study.scores, algos, table, gains, reps, label)

    if any(study.diagnostics.get(e) for e in study.envs):
        lines += ["## Representation diagnostics", "",
                  "Per split: z of 256 windows per context drawn from deterministic evaluation "
                  "episodes; mean ± std over seeds. I(·) by KSG (k = 3, nats). RO includes the "
                  "diagonal as the authors' code; RO off-diag excludes it. Variance terms are "
                  "(1/d_z)·tr of the law-of-total-covariance terms; they sum to the "
                  "variability. Shadow gradients E‖∇_z l‖ on a replay batch, stop-gradient "
                  "lifted (measured, never applied).", ""]
        for env in study.envs:
            diag = study.diagnostics.get(env) or {}
            for split in stats.SPLITS:
                rows = []
                for a in algos:
                    if a not in diag:
                        continue
                    per_seed = diag[a]["splits"][split]
                    cells = []
                    for key, _ in DIAG_COLUMNS:
                        v = [d[key] for d in per_seed if d.get(key) is not None]
                        cells.append("–" if not v else
                                     f"{np.mean(v):.3g} ± {np.std(v):.2g}")
                    rows.append([label(a), *cells])
                if rows:
                    lines += [f"**{env}, {SPLIT_LABELS[split]}**", ""]
                    lines += _table(["method", *[c for _, c in DIAG_COLUMNS]], rows) + [""]
            fig4 = {a: d for a, d in diag.items() if d.get("fig4")}
            if fig4:
                lines += [f"**{env}: cosine of per-context mean z on the handcrafted set** "
                          "(mass {0.8, 1.0, 1.3} × action_factor ±1; the paper's Figure 4). "
                          "Ranges over off-diagonal pairs of the seed-averaged matrix.", ""]
                rows = []
                for a, d in fig4.items():
                    cos = np.mean(np.asarray(d["fig4"]), axis=0)
                    modes = [c[-1] for c in d["fig4_contexts"]]
                    (w0, w1), (x0, x1) = fig4_summary(cos, modes)
                    rows.append([label(a), f"{w0:.2f} to {w1:.2f}", f"{x0:.2f} to {x1:.2f}"])
                lines += _table(["method", "within-mode", "cross-mode"], rows) + [""]

    if plots:
        lines += ["## Figures", ""]
        for title, path in plots.items():
            lines += [f"![{title}]({path})", ""]
    return "\n".join(lines)
