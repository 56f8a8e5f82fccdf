"""The HyPoGen paper's headline cells, to print beside our runs (``report.paper_lines``).

Source: HyPoGen (ICLR 2025), Table 1 (DMC: mean return on the held-out specs; TD3 experts of 1M
steps, 2,000 epochs, 5 seeds) and Table 2 (ManiSkill2: success rate in % and mean episode
length in steps on the held-out specs, 100 rollouts per spec, 200-step cap), transcribed from
the paper (``../shared/papers/hypogen.md``; Table 1 also in ``hypogen_notes.md`` §5.1).
Keys: our task names (``hyperjax.hypogen.specs.task_names``) and our algo names; ``expert`` is
the paper's "Expert Rollout" row.
"""
from __future__ import annotations

__all__ = ["ALGOS", "TABLE1", "TABLE2", "cell"]

ALGOS = ("cond", "uvfa", "meta", "pearl", "hyperzero", "hypogen", "expert")

_T1_COLUMNS = ("cheetah_speed", "cheetah_length", "cheetah_speed_length",
               "finger_speed", "finger_length", "finger_speed_length",
               "walker_speed", "walker_length", "walker_speed_length")
_T1_ROWS = {   # Table 1, one row per method over the nine columns above
    "cond": (433.24, 574.70, 356.68, 379.66, 409.30, 289.58, 151.95, 336.71, 186.15),
    "uvfa": (396.86, 588.56, 340.78, 383.65, 422.62, 287.43, 115.60, 294.87, 177.81),
    "meta": (337.35, 579.41, 199.63, 125.89, 217.58, 114.78, 44.54, 46.22, 44.44),
    "pearl": (177.16, 705.07, 214.65, 121.49, 160.42, 152.88, 52.06, 54.13, 53.03),
    "hyperzero": (695.73, 895.46, 602.39, 596.80, 536.56, 353.68, 328.48, 642.22, 393.93),
    "hypogen": (819.23, 926.90, 623.76, 835.21, 657.12, 365.85, 436.26, 706.16, 409.88),
    "expert": (869.59, 963.07, 927.12, 975.71, 959.42, 913.40, 722.68, 897.11, 814.43),
}
#: ``TABLE1[task][algo]``: mean return on the held-out specs.
TABLE1 = {c: {a: row[j] for a, row in _T1_ROWS.items()} for j, c in enumerate(_T1_COLUMNS)}

_T2_COLUMNS = tuple(f"{t}_{f}" for t in ("lift_cube", "pick_cube")
                    for f in ("cube", "stiffness", "damping", "length"))
_T2_ROWS = {   # Table 2, (success %, steps) over the eight columns above
    "cond": ((89.93, 32.09), (0.00, 200.00), (56.28, 94.27), (69.36, 71.40),
             (69.81, 75.06), (2.20, 196.56), (39.26, 131.41), (43.77, 123.02)),
    "uvfa": ((90.27, 32.40), (0.00, 200.00), (78.67, 53.53), (72.18, 66.11),
             (71.75, 71.91), (0.00, 200.00), (29.53, 146.68), (36.85, 134.42)),
    "meta": ((84.67, 41.14), (0.00, 200.00), (0.06, 199.90), (76.45, 56.95),
             (12.62, 177.89), (0.22, 199.77), (0.21, 199.64), (8.15, 185.68)),
    "pearl": ((84.47, 41.60), (59.87, 86.70), (35.67, 132.23), (78.73, 52.86),
              (21.06, 163.28), (24.44, 156.22), (12.58, 177.54), (16.08, 171.93)),
    "hyperzero": ((86.60, 38.24), (0.00, 200.00), (31.33, 140.90), (63.64, 81.59),
                  (25.87, 155.27), (0.00, 200.00), (0.00, 200.00), (13.92, 174.91)),
    "hypogen": ((85.87, 39.37), (97.20, 16.72), (93.28, 24.78), (85.73, 39.44),
                (72.87, 68.97), (78.33, 58.76), (41.26, 125.99), (52.54, 106.75)),
    "expert": ((94.13, 22.86), (96.73, 17.88), (97.28, 16.30), (93.64, 24.74),
               (69.87, 73.26), (75.92, 62.65), (73.72, 66.19), (54.77, 101.14)),
}
#: ``TABLE2[task][algo]``: ``(success rate in %, mean episode length in steps)``.
TABLE2 = {c: {a: row[j] for a, row in _T2_ROWS.items()} for j, c in enumerate(_T2_COLUMNS)}


def cell(task: str, algo: str):
    """The paper's figure for ``algo`` on ``task``: a float (Table 1), a ``(success %,
    steps)`` pair (Table 2), or None where the paper has none (other tasks, other algos)."""
    for table in (TABLE1, TABLE2):
        if task in table:
            return table[task].get(algo)
    return None
