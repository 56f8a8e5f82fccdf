"""A study: several methods x tasks x seeds -> diagnostics, report and figures.

``experiments.aib`` trains each (task, method) as its own compiled, seed-vmapped program,
then calls ``run_diagnostics`` on the final train state and ``write_study`` once at the end.
"""
from __future__ import annotations

import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from hyperjax import methods
from hyperjax.analysis import plots, report, representation, stats
from hyperjax.analysis.probe import make_probe
from hyperjax.envs.contexts import SPLITS
from hyperjax.parallel import is_main, over_seeds, to_host
from hyperjax.utils import write_json_atomic, write_text_atomic

# The handcrafted DI set of the paper's Figure 4 (the authors' `dmash/contexts/context.py`
# `--context_handcrafted`): mass
# {0.8, 1.0, 1.3} x action_factor {-1, +1}, grouped by mode. Keyed by the task's factors.
FIG4_CONTEXTS = {("mass", "action_factor"): [[0.8, -1.0], [1.0, -1.0], [1.3, -1.0],
                                             [0.8, 1.0], [1.0, 1.0], [1.3, 1.0]]}
MODE_FACTORS = ("action_factor", "permutation")


def mode_factor(factors) -> str | None:
    """The binary factor that sets the mode S (arXiv 2602.06550 v2, Appendix A), or None."""
    return next((f for f in factors if f in MODE_FACTORS), None)


def run_diagnostics(prog, state, n_seeds: int, key, n_windows: int = 256,
                    encoder_training: bool = True, episodes: int | None = None) -> dict:
    """Representation diagnostics of every seed of a trained inferred-context run.

    One compiled call (``make_probe`` over seeds) encodes windows of the three splits' contexts
    and, for tasks with a handcrafted set, the Figure 4 contexts; the z statistics are then
    computed per seed on the host (``representation.diagnose``).

    Args:
      prog: the run's ``Program``.
      state: its ``TrainState`` with a leading seed axis.
      n_seeds: seeds in ``state``.
      key: PRNG key (shared by the seeds: the same rollout noise for each).
      n_windows: windows per context (256).
      encoder_training: the encoder mode for z (True = the authors' metrics code).
      episodes: episodes per context (default: enough for ``n_windows`` distinct windows,
        at least the run's ``eval_episodes``).
    Returns:
      ``{"splits": {split: [per-seed dict]}, "fig4": [per-seed cos [6, 6]] | None,
      "fig4_contexts": [[...]] | None, "encoder_training": bool, "n_windows": int}``.
    """
    T = prog.env.episode_length
    if episodes is None:
        episodes = max(prog.cfg.eval_episodes, -(-n_windows // T))
    factors = tuple(prog.sets.factors)
    fig4 = FIG4_CONTEXTS.get(factors)
    blocks = [prog.sets.split(s) for s in SPLITS] + ([np.asarray(fig4, np.float32)]
                                                     if fig4 else [])
    contexts = jnp.asarray(np.concatenate(blocks))
    probe = make_probe(prog, episodes, n_windows, encoder_training)
    fn = jax.jit(over_seeds(probe, n_seeds, (0, None, None)))
    out = to_host(fn(state, key, contexts))  # all runs, also under jax.distributed
    mode = mode_factor(factors)
    res = {"splits": {s: [] for s in SPLITS}, "fig4": [] if fig4 else None,
           "fig4_contexts": fig4, "encoder_training": encoder_training,
           "n_windows": n_windows}
    for i in range(n_seeds):
        start = 0
        for s, block in zip(SPLITS, blocks):
            z = out["z"][i, start:start + len(block)]
            start += len(block)
            d = representation.diagnose(z, block, factors, mode, seed=i)
            d.update(shadow_actor=float(out["shadow_actor"][i]),
                     shadow_critic=float(out["shadow_critic"][i]))
            res["splits"][s].append(d)
        if fig4:
            res["fig4"].append(representation.cosine_matrix(out["z"][i, start:]).tolist())
    return res


def write_diagnostics(prog, state, n_seeds: int, seed: int, path: str, say,
                      n_windows: int = 256, encoder_training: bool = True) -> dict:
    """A finished run's z diagnostics (:func:`run_diagnostics`, key ``PRNGKey(seed + 10**6)``)
    written to ``path`` (``diagnostics.json``, process 0) and said in one line (eval-out, mean
    over seeds); returns them."""
    t0 = time.time()
    diag = run_diagnostics(prog, state, n_seeds, jax.random.PRNGKey(seed + 10**6), n_windows,
                           encoder_training)
    if is_main():
        write_json_atomic(path, diag)
    d = diag["splits"]["eval_out"]
    say(f"diagnostics ({time.time() - t0:.0f} s), eval-out, mean over seeds: "
        f"I(z;c) {np.mean([x['mi_context'] for x in d]):.3f} nats, variability "
        f"{np.mean([x['variability'] for x in d]):.3g}, RO "
        f"{np.mean([x['overlap'] for x in d]):.3f}")
    return diag


def write_study(study: report.Study, out_dir: str, reps: int = 5000) -> str:
    """Writes ``study.json``, ``plots/*.png`` and ``report.md`` into ``out_dir``; returns the
    report's path."""
    os.makedirs(out_dir, exist_ok=True)
    write_json_atomic(os.path.join(out_dir, "study.json"), vars(study))
    algos = methods.order(study.algos)
    table = stats.iqm_table(study.scores, algos, reps)
    made = plots.write_all(study, table, out_dir, reps=min(reps, 2000))
    path = os.path.join(out_dir, "report.md")
    write_text_atomic(path, report.render(study, reps, made, table) + "\n")
    return path
