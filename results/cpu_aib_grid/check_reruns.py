"""Do the reruns reproduce the lost runs? (results/cpu_aib_grid/README.md, seventh session.)

The first six sessions' run files of DI, DI-Perm, ODE and Cartpole's DR and Concat were lost;
what records them is ``grid.log`` up to the seventh session's first line (every evaluation:
step, AER train / eval-in / eval-out and the train return, means over the 3 seeds to 2
decimals; the AER table) and ``interim_report_3_tasks/study.json`` (each seed's AER per split,
DI, DI-Perm and ODE). The reruns (same pinned commit 9acbd81, same seeds) write
``runs/TASK/ALGO/summary.json`` and their own lines in ``grid.log``. This script compares, for
every lost pair that has been rerun:

- every evaluation line of the old log against the rerun's (the text, exactly);
- each seed's AER per split in ``study.json`` against ``summary.json`` (float32 values, exact).

    python results/cpu_aib_grid/check_reruns.py        # prints one verdict per pair; exit 1 on
                                                        # any difference

A difference is not by itself a fault: DMA*-SH's float32 training is not bitwise the same on
another CPU model (the lost runs ran on the first sessions' AMD EPYC VMs; ``make run``'s
DMA*-SH differed on the seventh session's Intel Xeon, DR did not: results/make_run/), so the
verdict names the machine question before the code one.
"""
import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
FIRST_NEW = "== 2026-12-07T19:24:45Z"   # the seventh session's first line (the new run.sh)
LOST = [(t, a) for t in ("di", "di_perm", "ode") for a in ("dr", "concat", "dma_sh")] + \
    [("cartpole", "dr"), ("cartpole", "concat")]
HEADER = re.compile(r"^hyperjax: (\w+) on (\w+),")
STEP = re.compile(r"^step +(\d+)/\d+ +(AER train .*train return +\S+)")


def evaluations(lines):
    """{(task, algo): {step: 'AER train ... train return X'}} from log lines."""
    out, pair = {}, None
    for line in lines:
        m = HEADER.match(line)
        if m:
            pair = (m.group(2), m.group(1))
            continue
        m = STEP.match(line)
        if m and pair:
            out.setdefault(pair, {})[int(m.group(1))] = " ".join(m.group(2).split())
    return out


def main() -> int:
    with open(os.path.join(HERE, "grid.log")) as f:
        text = f.read()
    cut = text.index(FIRST_NEW)
    old, new = evaluations(text[:cut].splitlines()), evaluations(text[cut:].splitlines())
    with open(os.path.join(HERE, "interim_report_3_tasks", "study.json")) as f:
        study = json.load(f)["scores"]
    bad = 0
    for task, algo in LOST:
        summary_path = os.path.join(HERE, "runs", task, algo, "summary.json")
        if not os.path.exists(summary_path):
            print(f"{task}/{algo}: not rerun yet")
            continue
        notes = []
        was, now = old.get((task, algo), {}), new.get((task, algo), {})
        steps = sorted(set(was) | set(now))
        diff = [s for s in steps if was.get(s) != now.get(s)]
        notes.append(f"{len(steps) - len(diff)}/{len(steps)} evaluation lines equal"
                     + (f" (differ at steps {diff})" if diff else ""))
        if task in study and algo in study[task]:
            with open(summary_path) as f:
                aer = json.load(f)["aer"]
            seeds = {s: (study[task][algo][s], aer[s][2]) for s in ("train", "eval_in", "eval_out")}
            off = {s: v for s, v in seeds.items() if v[0] != v[1]}
            gap = max((abs(a - b) for was_s, now_s in off.values()
                       for a, b in zip(was_s, now_s)), default=0.0)
            notes.append("per-seed AER equal to study.json" if not off else
                         f"per-seed AER differs by up to {gap:.4g}: {off}")
            diff = diff or off
        bad += bool(diff)
        print(f"{task}/{algo}: {'REPRODUCED' if not diff else 'DIFFERENT'}; " + "; ".join(notes))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
