"""Diagnostics of the inferred context z (host-side numpy; the authors'
`dmash/informativeness/metrics.py`; arXiv 2602.06550 v2, Appendix A).

All take per-context samples ``z: float[C, n, d_z]`` (n windows of each of C contexts) or the
pooled ``float[N, d]``. Covariances are population covariances (``ddof=0``), so the three
variance terms add up to the total exactly (law of total covariance, v2 Thm A.15).
"""
from __future__ import annotations

import numpy as np
from scipy.spatial.distance import cdist
from scipy.special import digamma


def ksg_mutual_information(x, y, k: int = 3, scale: bool = True, jitter: float = 1e-10,
                           seed: int = 0, chunk: int = 1024) -> float:
    """Kraskov-Stoegbauer-Grassberger estimator #1 of I(X; Y) in nats (Kraskov et al. 2004).

    ``I = psi(k) + psi(N) - mean_i[psi(n_x(i) + 1) + psi(n_y(i) + 1)]``, where eps(i) is the
    distance to the k-th neighbour of sample i in the joint space with the norm
    ``max(||dx||_2, ||dy||_2)`` (Euclidean within each variable, the authors'
    `dmash/informativeness/metrics.py`) and n_x(i), n_y(i)
    count the other samples strictly closer than eps(i) in each marginal.

    As the authors' metrics code: both variables are scaled to unit variance per dimension
    without centring, and Gaussian jitter of ``jitter`` breaks ties (discrete factors).

    Args:
      x: ``float[N, d_x]`` (or ``[N]``) samples, e.g. z.
      y: ``float[N, d_y]`` (or ``[N]``) paired samples, e.g. the true context c.
      k: neighbours (3).
      scale, jitter, seed: preprocessing as above.
      chunk: rows per distance block (memory ``chunk * N`` floats).
    Returns:
      The estimate (nats; can be slightly negative for independent variables).
    Raises:
      ValueError: mismatched sample counts or ``N <= k``.
    """
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    y = np.asarray(y, np.float64).reshape(len(y), -1)
    n = x.shape[0]
    if y.shape[0] != n:
        raise ValueError(f"x and y need the same number of samples, got {n} and {y.shape[0]}")
    if n <= k:
        raise ValueError(f"KSG needs more than k={k} samples, got {n}")
    rng = np.random.default_rng(seed)
    if scale:
        x = x / np.maximum(x.std(axis=0), 1e-12)
        y = y / np.maximum(y.std(axis=0), 1e-12)
    x = x + jitter * rng.standard_normal(x.shape)
    y = y + jitter * rng.standard_normal(y.shape)
    nx, ny = np.empty(n), np.empty(n)
    for s in range(0, n, chunk):
        dx = cdist(x[s:s + chunk], x)
        dy = cdist(y[s:s + chunk], y)
        dz = np.maximum(dx, dy)
        eps = np.partition(dz, k, axis=1)[:, k]  # index 0 is the sample itself
        nx[s:s + chunk] = (dx < eps[:, None]).sum(1) - 1
        ny[s:s + chunk] = (dy < eps[:, None]).sum(1) - 1
    return float(digamma(k) + digamma(n) - np.mean(digamma(nx + 1) + digamma(ny + 1)))


def variability(z) -> float:
    """(1/d_z) tr Cov(Z) of the pooled samples ``float[..., d_z]`` (the authors'
    `dmash/informativeness/metrics.py`)."""
    z = np.asarray(z, np.float64)
    return float(z.reshape(-1, z.shape[-1]).var(axis=0).mean())


def cosine_matrix(z) -> np.ndarray:
    """Cosine similarity of the per-context mean z: ``float[C, C]`` from ``z: float[C, n, d]``."""
    m = np.asarray(z, np.float64).mean(axis=1)
    m = m / np.maximum(np.linalg.norm(m, axis=-1, keepdims=True), 1e-12)
    return m @ m.T


def representation_overlap(z, diagonal: bool = True) -> float:
    """RO (v2 Def. A.21): mean pairwise cosine of per-context mean z.

    ``diagonal=True`` averages the whole matrix, ones on the diagonal included, as the
    authors' ``cosine_similarity(means).mean()``; ``False`` averages the off-diagonal pairs.
    """
    cos = cosine_matrix(z)
    if diagonal:
        return float(cos.mean())
    c = cos.shape[0]
    return float((cos.sum() - np.trace(cos)) / (c * (c - 1)))


def variance_decomposition(z, modes) -> dict:
    """The three-term law of total covariance of v2 Thm A.15, each term as (1/d_z) tr(.).

    ``tr Cov Z = E[tr Cov(Z | S, U)] + E_S[tr Cov(E[Z | S, U] | S)] + tr Cov(E[Z | S])``:
    within-context noise, within-mode spread of the context means, between-mode separation.
    Every context contributes its n samples with equal weight.

    Args:
      z: ``float[C, n, d_z]``.
      modes: ``[C]`` the binary mode S of each context (e.g. its action_factor); one value for
        every context gives ``between_mode = 0``.
    Returns:
      ``{"within_context", "within_mode", "between_mode", "total"}`` (floats; the first three
      sum to ``total`` = ``variability`` of the pooled z).
    Raises:
      ValueError: ``modes`` does not have one entry per context.
    """
    z = np.asarray(z, np.float64)
    modes = np.asarray(modes).reshape(-1)
    if modes.shape[0] != z.shape[0]:
        raise ValueError(f"modes needs one entry per context ({z.shape[0]}), got {modes.shape[0]}")
    d = z.shape[-1]
    ctx_mean = z.mean(axis=1)                                      # [C, d]
    within_ctx = z.var(axis=1).sum(-1).mean() / d
    within_mode, between = 0.0, 0.0
    grand = ctx_mean.mean(axis=0)
    for m in np.unique(modes):
        sel = ctx_mean[modes == m]
        w = sel.shape[0] / z.shape[0]
        within_mode += w * sel.var(axis=0).sum() / d
        between += w * np.sum((sel.mean(axis=0) - grand) ** 2) / d
    return {"within_context": float(within_ctx), "within_mode": float(within_mode),
            "between_mode": float(between), "total": variability(z)}


def diagnose(z, contexts, factor_names, mode_factor: str | None, k: int = 3,
             seed: int = 0) -> dict:
    """All of the authors' `dmash/informativeness/metrics.py`'s z diagnostics for one seed and one
    context set.

    Args:
      z: ``float[C, n, d_z]``, n windows per context.
      contexts: ``float[C, F]`` the true contexts.
      factor_names: the F factor names.
      mode_factor: the binary factor (``"action_factor"`` / ``"permutation"``) or None.
      k: KSG neighbours.
      seed: KSG jitter seed.
    Returns:
      dict with ``mi_context`` I(z; c), ``mi_mode`` I(z; c_mode) and ``mi_continuous``
      I(z; the other factors) (None where the task lacks one), ``variability``,
      ``overlap`` (diagonal included), ``overlap_offdiag``, the variance terms and
      ``cosine`` (``[C, C]`` as a nested list).
    """
    z = np.asarray(z, np.float64)
    c = np.asarray(contexts, np.float64)
    n = z.shape[1]
    zz = z.reshape(-1, z.shape[-1])
    cc = np.repeat(c, n, axis=0)
    names = list(factor_names)
    out = {"mi_context": ksg_mutual_information(zz, cc, k, seed=seed)}
    mode_col = names.index(mode_factor) if mode_factor in names else None
    cont = [j for j in range(len(names)) if j != mode_col]
    out["mi_mode"] = (ksg_mutual_information(zz, cc[:, mode_col], k, seed=seed)
                      if mode_col is not None else None)
    out["mi_continuous"] = (ksg_mutual_information(zz, cc[:, cont], k, seed=seed)
                            if cont and mode_col is not None else None)
    modes = c[:, mode_col] if mode_col is not None else np.zeros(len(c))
    out.update(variability=variability(z), overlap=representation_overlap(z, True),
               overlap_offdiag=representation_overlap(z, False),
               **variance_decomposition(z, modes), cosine=cosine_matrix(z).tolist())
    return out
