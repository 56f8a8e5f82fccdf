"""The prepared HyPoGen GPU run: the largest slice of Table 1 that fits one device lease.

    python benchmarks/gpu_hypogen.py                      # one H100 / H200, <= --minutes (11)
    python benchmarks/gpu_hypogen.py --tiny --out=/tmp/x  # the same stages at a tiny size (CPU)

Stages, each sized to what is left before the deadline:

1. probe: TD3 for every spec of ``--task``'s grid in one vmapped program (``hyperjax.hypogen.
   experts``), ``--probe_steps`` steps timed after the compile: vector steps/s, env steps/s and
   gradient steps/s summed over specs (one update per env step), ``probe.json``.
2. experts: the largest TD3 budget that fits ``--expert_share`` of the time left (rounded down to
   10,000 steps, at most the paper's 1M), exploration schedule scaled to 10 % of it like the
   released 100k of 1M; then the demonstrations and the uniform-random floor.
3. models: ``--algos`` (HyperZero first, the cheaper) at ``--epochs`` through the pipeline
   CLI ``experiments.hypogen`` (which reuses the experts and the dataset), cut by the
   deadline if need be (each model's log is kept; a rerun with the same ``--out`` resumes
   what is missing).

Everything goes under ``--out`` (default ``results/gpu/<device>-<date>/hypogen/``): ``run.log``,
``probe.json``, ``summary.json``, the run directory's ``results.md`` / ``results.json`` and logs,
and ``gpu_hypogen.tar.gz`` of the small files for the device tool's returned files.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gpu_common import device_name, run_models, start, write_tarball  # noqa: E402

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")


def probe(task: str, steps: int, num_specs: int) -> dict:
    """TD3 throughput for every spec of the (reduced) grid, compile excluded
    (``hypogen_throughput.time_experts``)."""
    sys.path.insert(0, ROOT)
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    import hypogen_throughput as ht
    r = ht.time_experts(task, steps, num_specs)
    return dict(task=task, specs=r["specs"], steps=steps, compile_s=round(r["compile_s"], 2),
                vector_steps_per_s=r["vector_steps_s"], env_steps_per_s=r["env_steps_s"],
                grad_steps_per_s=r["env_steps_s"])


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None)
    ap.add_argument("--minutes", type=float, default=11.0)
    ap.add_argument("--task", default="cheetah_speed")
    ap.add_argument("--num_specs", type=int, default=0, help="0 = the paper's whole grid")
    ap.add_argument("--algos", default="hyperzero,hypogen")
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--eval_every", type=int, default=20)
    ap.add_argument("--probe_steps", type=int, default=2000)
    ap.add_argument("--expert_share", type=float, default=0.55,
                    help="share of the time left after the probe given to the experts")
    ap.add_argument("--tiny", action="store_true", help="tiny sizes, for the CPU test")
    args = ap.parse_args(argv)
    out, log, say, end, day = start(args.out, "hypogen", args.minutes)

    if args.tiny:
        args.task, args.num_specs, args.epochs, args.eval_every = "lqr_di", 4, 2, 1
        args.probe_steps = 20
    summary = dict(date=day, device=device_name(), task=args.task, tiny=args.tiny, stages={})
    say(f"gpu_hypogen: {summary['device']}, {args.task}, deadline {args.minutes} min, out {out}")

    # the probe runs in a subprocess cut at a third of the deadline: on an H200 (2026-12-04) the
    # whole cheetah_speed grid's probe had not finished after 6 minutes, and in-process it would
    # have run on past any deadline in silence
    here = os.path.dirname(os.path.abspath(__file__))
    code = (f"import json, sys; sys.path.insert(0, {here!r}); import gpu_hypogen as g; "
            f"print(json.dumps(g.probe({args.task!r}, {args.probe_steps}, {args.num_specs})))")
    limit = max(30.0, (end - time.time()) / 3)
    try:
        res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                             text=True, timeout=limit)
        p = json.loads(res.stdout.strip().splitlines()[-1]) if res.returncode == 0 else None
        why = f"exit {res.returncode}: {res.stderr.strip().splitlines()[-1:]}"
    except subprocess.TimeoutExpired:
        p, why = None, f"cut after {limit:.0f} s (a third of the deadline)"
    if p is None:
        say(f"probe: {why}; stopping")
        summary["stages"]["probe"] = why
        with open(os.path.join(out, "summary.json"), "w") as f:
            json.dump(summary, f, indent=1)
        log.close()
        write_tarball(out, os.path.join(out, "run"), "gpu_hypogen.tar.gz")
        return summary
    with open(os.path.join(out, "probe.json"), "w") as f:
        json.dump(p, f, indent=1)
    say(f"probe: {p['specs']} specs, compile {p['compile_s']} s, {p['vector_steps_per_s']:,.1f} "
        f"vector steps/s = {p['env_steps_per_s']:,.0f} env steps/s and as many gradient "
        f"steps/s (TD3, all specs in one program)")
    summary["stages"]["probe"] = p

    left = end - time.time()
    budget_s = max(0.0, args.expert_share * left - 2 * p["compile_s"])
    steps = int(min(1_000_000, p["vector_steps_per_s"] * budget_s) // 10_000 * 10_000)
    if args.tiny:
        steps = 200
    if steps < 10_000 and not args.tiny:
        say(f"experts: only {steps} steps would fit; stopping")
        summary["stages"]["experts"] = "skipped (too little time)"
        steps = 0
    run_dir = os.path.join(out, "run")
    if steps:
        std_steps = max(1, min(100_000, steps // 10))
        cmd = [sys.executable, "-m", "experiments.hypogen", f"--task={args.task}",
               f"--num_specs={args.num_specs}", f"--expert_steps={steps}",
               f"--expert_buffer={steps}", f"--expert_std_steps={std_steps}",
               f"--epochs={args.epochs}", f"--eval_every={args.eval_every}",
               f"--run_dir={run_dir}"]
        if args.task.startswith("lqr_di"):
            cmd.append("--expert=td3")
        if args.tiny:
            cmd += ["--episodes_per_spec=1", "--eval_episodes=1", "--test_fraction=0.5",
                    "--num_blocks=2"]
        summary["command"] = " ".join(cmd[1:])
        run_models(cmd, args.algos.split(","), end, say, log, summary)
        summary["expert_steps"] = steps
    summary["seconds"] = round(args.minutes * 60 - (end - time.time()), 1)
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    log.close()
    write_tarball(out, run_dir, "gpu_hypogen.tar.gz")
    return summary


if __name__ == "__main__":
    sys.path.insert(0, ROOT)
    main()
