"""Driving a run from the host: seeds vmapped, one compiled segment per evaluation interval,
metrics rows, the final AER table, and the orbax checkpoint of the train state.

``run_segments`` calls ``jit(vmap(segment))`` once per evaluation interval (the same
computation as ``make_train``'s single ``lax.scan``; a test checks they are equal) so that a
driver can report progress and save between intervals.
"""
from __future__ import annotations

import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from hyperjax.train import SPLITS, Program

TRAIN_KEYS = ("train_return", "q_loss", "actor_loss", "alpha", "entropy", "model_loss")


def seed_keys(seed: int, n: int) -> jax.Array:
    """``uint32[n, 2]`` keys of seeds ``seed, seed+1, ...`` (seed i's run = ``PRNGKey(seed+i)``)."""
    return jnp.stack([jax.random.PRNGKey(seed + i) for i in range(n)])


def over_seeds(fn: Callable, n_seeds: int, in_axes=0) -> Callable:
    """``jax.vmap(fn, in_axes)`` for several seeds; for one seed, ``fn`` on the squeezed state
    with the seed axis added back (same values; XLA:CPU runs the unbatched matmuls ~20 %
    faster than batch-1 ones)."""
    if n_seeds > 1:
        return jax.vmap(fn, in_axes=in_axes)
    axes = in_axes if isinstance(in_axes, tuple) else (in_axes,)

    def one(*args):
        args = [jax.tree.map(lambda x: x[0], a) if ax == 0 else a for a, ax in zip(args, axes)]
        return jax.tree.map(lambda x: x[None], fn(*args))

    return one


def compile_program(prog: Program, n_seeds: int, seed: int = 0):
    """Lowers and compiles ``init`` and ``segment`` over ``n_seeds`` seeds (``over_seeds``).

    Returns ``(init_fn, segment_fn, compile_seconds)``; ``segment_fn(state, seg_idx)``.
    """
    t0 = time.time()
    keys = seed_keys(seed, n_seeds)
    init = jax.jit(over_seeds(prog.init, n_seeds)).lower(keys).compile()
    abstract = jax.eval_shape(jax.vmap(prog.init), keys)
    seg = jax.jit(over_seeds(prog.segment, n_seeds, (0, None)), donate_argnums=0)
    seg = seg.lower(abstract, jnp.int32(0)).compile()
    return init, seg, time.time() - t0


def metric_rows(metrics: dict, seed: int) -> list[dict]:
    """One row per (seed, split, evaluation) from a segment's metrics of ``n_seeds`` seeds."""
    rows = []
    m = jax.tree.map(np.asarray, metrics)
    for s in range(m["aer"].shape[0]):
        train = {k: float(m[k][s]) for k in TRAIN_KEYS if k in m}
        for j, split in enumerate(SPLITS):
            rows.append(dict(seed=seed + s, step=int(np.ravel(m["step"])[0]), split=split,
                             aer=float(m["aer"][s, j]),
                             returns=[round(float(x), 4) for x in m["eval_return"][s, j]],
                             **train))
    return rows


def final_scores(rows: list[dict]) -> dict:
    """Per split: per-seed score = max of the last two evaluations (notes §5), then mean/std."""
    out = {}
    for split in SPLITS:
        per_seed = {}
        for r in sorted((r for r in rows if r["split"] == split), key=lambda r: r["step"]):
            per_seed.setdefault(r["seed"], []).append(r["aer"])
        scores = np.array([max(v[-2:]) for v in per_seed.values()])
        out[split] = (float(scores.mean()), float(scores.std()), scores.tolist())
    return out


def format_table(scores: dict, algo: str, env: str, n_seeds: int) -> str:
    lines = [f"AER ({env}, {algo}, {n_seeds} seed(s); per seed the max of the last two "
             "evaluations)", f"{'split':<10} {'mean':>9} {'std':>9}"]
    for split, (mean, std, _) in scores.items():
        lines.append(f"{split:<10} {mean:>9.2f} {std:>9.2f}")
    return "\n".join(lines)


def run_segments(prog: Program, state, seg_fn: Callable, start: int, seed: int,
                 on_segment: Callable | None = None):
    """Runs segments ``start .. n_segments-1``; ``on_segment(i, state, rows, seconds)``."""
    for i in range(start, prog.n_segments):
        t0 = time.time()
        state, metrics = seg_fn(state, jnp.int32(i))
        metrics = jax.block_until_ready(metrics)
        rows = metric_rows(metrics, seed)
        if on_segment is not None:
            on_segment(i, state, rows, time.time() - t0)
    return state
