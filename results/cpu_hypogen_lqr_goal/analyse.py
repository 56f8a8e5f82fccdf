"""Issue 18 §2: held-out return on lqr_di_goal split by whether a test spec lies inside the
box the training specs span (every factor within [min, max] of the training specs:
interpolation) or outside it (extrapolation), for every run directory given.

    python results/cpu_hypogen_lqr_goal/analyse.py runs/cpu_hypogen_lqr_goal/*/
"""
import json
import os
import sys

import numpy as np


def split_means(result):
    train = np.asarray(result["train_specs"])
    test = np.asarray(result["test_specs"])
    ret = np.asarray(result["per_spec_last"])
    inside = np.all((test >= train.min(0) - 1e-9) & (test <= train.max(0) + 1e-9), axis=1)
    return inside, ret


def main(dirs):
    rows = ["| run | model | train specs | held-out, all | inside the train box | outside it | "
            "n inside / outside |", "|---|---|---|---|---|---|---|"]
    for d in dirs:
        f = os.path.join(d, "results.json")
        if not os.path.exists(f):
            continue
        data = json.load(open(f))
        runs = data["runs"]
        first = next(iter(runs.values()))[0]
        runs = {**runs, "expert": [{**first, "per_spec_last": list(
            np.asarray(data["expert_per_spec"])[first["test_ids"]])}]}
        for algo, rs in runs.items():
            r = rs[0]
            inside, ret = split_means(r)
            rows.append(f"| {os.path.basename(os.path.normpath(d))} | {algo} | "
                        f"{len(r['train_specs'])} | {ret.mean():.2f} | "
                        f"{ret[inside].mean():.2f} | "
                        f"{ret[~inside].mean() if (~inside).any() else float('nan'):.2f} | "
                        f"{int(inside.sum())} / {int((~inside).sum())} |")
    print("\n".join(rows))


if __name__ == "__main__":
    main(sys.argv[1:])
