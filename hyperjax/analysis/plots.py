"""The study's figures (matplotlib, PNG): learning curves with CI bands, IQM bars with
intervals, the Figure 4 cosine heatmaps and the variance-decomposition bars.

Every function takes the plain data of ``hyperjax.analysis.report.Study`` and writes one PNG;
it returns the path, or None when the study holds nothing to draw.
"""
from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from hyperjax.analysis import stats  # noqa: E402
from hyperjax.analysis.report import SPLIT_LABELS, Study, label  # noqa: E402
from hyperjax import methods  # noqa: E402

COLORS = {"dr": "#7f7f7f", "concat": "#1f77b4", "da": "#9467bd", "dma": "#ff7f0e",
          "dma_pearl": "#8c564b", "dma_star": "#2ca02c", "dma_sh": "#d62728"}


def _order(algos):
    return methods.order(algos)


def learning_curves(study: Study, env: str, path: str, reps: int = 2000) -> str | None:
    """Normalised AER against steps, one panel per split, mean and 95 % bootstrap band."""
    curves = study.curves.get(env)
    if not curves:
        return None
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), sharey=True)
    for ax, split in zip(axes, stats.SPLITS):
        for a in _order(curves):
            c = curves[a]
            y = stats.normalise(np.asarray(c[split]), env)
            mu, lo, hi = stats.curve_band(y, reps)
            ax.plot(c["step"], mu, color=COLORS.get(a), label=label(a))
            ax.fill_between(c["step"], lo, hi, color=COLORS.get(a), alpha=0.2, lw=0)
        ax.set_title(f"{env}: {SPLIT_LABELS[split]}")
        ax.set_xlabel("gradient steps (after the random phase)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("normalised AER")
    axes[-1].legend(fontsize=8, loc="best")
    return _save(fig, path)


def iqm_bars(table: dict, algos, path: str) -> str | None:
    """IQM of normalised scores per regime (all tasks) with 95 % CIs as error bars."""
    algos = [a for a in _order(algos) if any(table[r]["all"][a] for r in stats.REGIMES)]
    if not algos:
        return None
    fig, ax = plt.subplots(figsize=(11, 3.6))
    width = 0.8 / len(algos)
    for i, a in enumerate(algos):
        vals = [table[r]["all"][a] or (np.nan, np.nan, np.nan) for r in stats.REGIMES]
        x = np.arange(len(stats.REGIMES)) + (i - (len(algos) - 1) / 2) * width
        mid = np.array([v[0] for v in vals])
        err = np.array([[v[0] - v[1] for v in vals], [v[2] - v[0] for v in vals]])
        ax.bar(x, mid, width, yerr=err, capsize=2, color=COLORS.get(a), label=label(a))
    ax.set_xticks(np.arange(len(stats.REGIMES)), [SPLIT_LABELS[r] for r in stats.REGIMES])
    ax.set_ylabel("IQM (normalised)")
    ax.legend(fontsize=8, ncol=len(algos))
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def cosine_heatmaps(study: Study, env: str, path: str,
                    algos=("dma", "dma_star", "dma_sh")) -> str | None:
    """Cosine of per-context mean z on the handcrafted 6-context set (the paper's Figure 4),
    seed-averaged, one panel per method."""
    diag = study.diagnostics.get(env) or {}
    algos = [a for a in algos if diag.get(a, {}).get("fig4")]
    if not algos:
        return None
    fig, axes = plt.subplots(1, len(algos), figsize=(4.2 * len(algos), 3.8), squeeze=False)
    for ax, a in zip(axes[0], algos):
        cos = np.mean(np.asarray(diag[a]["fig4"]), axis=0)
        ticks = [f"m{c[0]:g},{'+' if c[-1] > 0 else '−'}" for c in diag[a]["fig4_contexts"]]
        im = ax.imshow(cos, vmin=-1, vmax=1, cmap="RdBu_r")
        for (i, j), v in np.ndenumerate(cos):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7)
        ax.set_xticks(range(len(ticks)), ticks, rotation=45, fontsize=7)
        ax.set_yticks(range(len(ticks)), ticks, fontsize=7)
        ax.set_title(label(a))
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8)
    return _save(fig, path, tight=False)


def variance_bars(study: Study, env: str, path: str) -> str | None:
    """The three variance terms (within-context, within-mode, between-mode) as shares of
    (1/d_z)·tr Cov Z, stacked to 1 per method, with the total written above each bar (the
    methods' z scales differ by orders of magnitude: DMA-Pearl's sampled z, DMA's
    unnormalised z, SimNorm's simplices); one panel per split."""
    diag = study.diagnostics.get(env) or {}
    algos = _order(diag)
    if not algos:
        return None
    terms = (("within_context", "within-context"), ("within_mode", "within-mode"),
             ("between_mode", "between-mode"))
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), sharey=True)
    for ax, split in zip(axes, stats.SPLITS):
        mean = lambda a, k: np.mean([d[k] for d in diag[a]["splits"][split]])
        total = np.array([mean(a, "total") for a in algos])
        bottom = np.zeros(len(algos))
        for (key, name), color in zip(terms, ("#c7c7c7", "#ffbb78", "#1f77b4")):
            v = np.array([mean(a, key) for a in algos]) / np.maximum(total, 1e-30)
            ax.bar(range(len(algos)), v, bottom=bottom, color=color, label=name)
            bottom += v
        for i, t in enumerate(total):
            ax.text(i, 1.02, f"{t:.2g}", ha="center", fontsize=8)
        ax.set_ylim(0, 1.12)
        ax.set_xticks(range(len(algos)), [label(a) for a in algos], fontsize=8)
        ax.set_title(f"{env}: {SPLIT_LABELS[split]}")
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("share of (1/d_z) tr Cov Z")
    axes[-1].legend(fontsize=7, loc="lower right")
    return _save(fig, path)


def _save(fig, path, tight=True):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    if tight:
        fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_all(study: Study, table: dict, out_dir: str, reps: int = 2000) -> dict:
    """Writes every figure under ``out_dir/plots``; returns ``{title: path relative to
    out_dir}`` for the report."""
    made = {}

    def add(title, fn, *args):
        p = fn(*args)
        if p:
            made[title] = os.path.relpath(p, out_dir)

    plots = os.path.join(out_dir, "plots")
    for env in study.envs:
        add(f"Learning curves ({env})", learning_curves, study, env,
            os.path.join(plots, f"curves_{env}.png"), reps)
    add("IQM of normalised scores", iqm_bars, table, study.algos,
        os.path.join(plots, "iqm.png"))
    for env in study.envs:
        add(f"Cosine of mean z, handcrafted set ({env})", cosine_heatmaps, study, env,
            os.path.join(plots, f"cosine_{env}.png"))
        add(f"Variance decomposition of z ({env})", variance_bars, study, env,
            os.path.join(plots, f"variance_{env}.png"))
    return made
