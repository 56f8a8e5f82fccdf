"""The table of results/cpu_mjx_learning/README.md from a study directory.

    python results/cpu_mjx_learning/table.py STUDY_DIR [ALGO]

Per task: the uniform-random policy's training-episode return (the random phase, segment 0)
and its AER per split on the same evaluation episodes (``summary.json`` ``random_aer``), the
method's last training-episode return and AER per split (max of the last two evaluations),
and the share of the headroom above random it closes on the train split,
``(AER - random) / (max_return - random)``. "Learns" = at least 20 % of that headroom.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from hyperjax.envs import TASKS  # noqa: E402

SPLITS = ("train", "eval_in", "eval_out")


def main(study: str, algo: str = "concat") -> None:
    print("| task | steps | random: train return | train return (last) | random AER train / in / "
          "out | AER train / in / out | headroom closed (train) | learns |")
    print("|---|---|---|---|---|---|---|---|")
    for env in sorted(os.listdir(study)):
        d = os.path.join(study, env, algo)
        if not os.path.exists(os.path.join(d, "summary.json")):
            continue
        s = json.load(open(os.path.join(d, "summary.json")))
        cfg = json.load(open(os.path.join(d, "config.json")))
        rows = [json.loads(x) for x in open(os.path.join(d, "metrics.jsonl"))]
        tr = [r["train_return"] for r in rows if r["split"] == "train"]
        rnd, aer = s["random_aer"], {k: v[0] for k, v in s["aer"].items()}
        hi = TASKS[env].return_bounds[1]
        closed = (aer["train"] - rnd["train"]) / (hi - rnd["train"])
        print(f"| {env} | {cfg['total_steps']:,} | {tr[0]:.1f} | {tr[-1]:.1f} | "
              + " / ".join(f"{rnd[k]:.1f}" for k in SPLITS) + " | "
              + " / ".join(f"{aer[k]:.1f}" for k in SPLITS)
              + f" | {100 * closed:.0f} % | {'yes' if closed >= 0.2 else 'NO'} |")


if __name__ == "__main__":
    main(*sys.argv[1:])
