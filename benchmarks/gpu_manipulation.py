"""The prepared manipulation GPU run (HyPoGen Table 2, one spec family): brax PPO experts for
every spec of ``--task``'s grid, then the four behaviour-cloning models, within one lease.

    python benchmarks/gpu_manipulation.py                      # one H100 / H200, <= --minutes
    python benchmarks/gpu_manipulation.py --tiny --out=/tmp/x  # the same stages, tiny (CPU)

Stages, each sized to what is left before the deadline:

1. probe: brax PPO on the default spec for ``--probe_steps`` steps with three evaluations;
   the steps between the last two give env steps/s without the compile (the interval also
   holds one evaluation, so the rate is a slight underestimate), the rest the compile time of
   one expert's program (``probe.json``). brax's trainer compiles one program per spec
   (``hyperjax.hypogen.ppo_experts``), so every spec pays that compile.
2. experts: the largest PPO budget per spec (rounded down to 10,000 steps, at most the
   released 4M) such that the experts fit ``--expert_share`` of the time left, through the
   pipeline CLI ``experiments.hypogen`` (experts, demonstrations, random floor). By default
   every spec gets an expert (``--expert_specs=all``), so Table 2's expert row covers the
   held-out specs too; ``--expert_specs=train`` trains only the training specs (3 programs for
   an 11-spec family instead of 11, each with a larger budget; no expert row on held-out
   specs).
3. models: ``--algos`` at ``--epochs`` through the same CLI (it reuses experts and dataset),
   cut by the deadline if need be; a rerun with the same ``--out`` resumes what is missing.

Everything goes under ``--out`` (default ``results/gpu/<device>-<date>/manipulation/``):
``run.log``, ``probe.json``, ``summary.json``, the run's ``results.md`` / ``results.json``,
``experts_log.jsonl`` and model logs, and ``gpu_manipulation.tar.gz`` of those small files.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gpu_common import device_name, run_models, start, write_tarball  # noqa: E402

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")


def probe(task: str, steps: int, num_envs: int, hidden: tuple) -> dict:
    """brax PPO on the family's default spec: compile seconds and env steps/s."""
    sys.path.insert(0, ROOT)
    from hyperjax.envs import manipulation as M
    from hyperjax.hypogen import ppo_experts as P
    family = M.split_name(task)[1]
    spec = M.FAMILIES[family][0].default
    env = M.make_manipulation_task(task, specs=[spec])
    cfg = P.PPOConfig.sized(steps, num_envs, hidden, num_evals=3)
    t0 = time.time()
    _, log = P.train_expert(env, [spec], cfg)
    wall = time.time() - t0
    (s1, w1), (s2, w2) = [(r["step"], r["wall_s"]) for r in log[-2:]]
    rate = (s2 - s1) / max(w2 - w1, 1e-9)
    return dict(task=task, spec=spec, steps=int(log[-1]["step"]), wall_s=round(wall, 2),
                env_steps_per_s=round(rate, 1),
                compile_s=round(max(0.0, wall - log[-1]["step"] / rate), 2),
                num_envs=num_envs, last_eval=log[-1])


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None)
    ap.add_argument("--minutes", type=float, default=11.0)
    ap.add_argument("--task", default="lift_cube_stiffness")
    ap.add_argument("--num_specs", type=int, default=0, help="0 = the released grid")
    ap.add_argument("--algos", default="hyperzero,hypogen,cond,uvfa")
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--eval_every", type=int, default=20)
    ap.add_argument("--num_envs", type=int, default=1024)
    ap.add_argument("--hidden", default="256,256,256,256")
    ap.add_argument("--probe_steps", type=int, default=300_000)
    ap.add_argument("--expert_specs", default="all", choices=["train", "all"])
    ap.add_argument("--expert_share", type=float, default=0.6,
                    help="share of the time left after the probe given to the experts")
    ap.add_argument("--tiny", action="store_true", help="tiny sizes, for the CPU test")
    args = ap.parse_args(argv)
    out, log, say, end, day = start(args.out, "manipulation", args.minutes)

    if args.tiny:
        args.num_specs, args.epochs, args.eval_every = 4, 2, 1
        args.num_envs, args.hidden, args.probe_steps = 8, "16,16", 960
        args.algos = "hyperzero,hypogen"
    hidden = tuple(int(w) for w in args.hidden.split(","))
    summary = dict(date=day, device=device_name(), task=args.task, tiny=args.tiny, stages={})
    say(f"gpu_manipulation: {summary['device']}, {args.task}, deadline {args.minutes} min, "
        f"out {out}")

    p = probe(args.task, args.probe_steps, args.num_envs, hidden)
    with open(os.path.join(out, "probe.json"), "w") as f:
        json.dump(p, f, indent=1)
    say(f"probe: brax PPO, {p['num_envs']} envs: {p['env_steps_per_s']:,.0f} env steps/s, "
        f"compile {p['compile_s']} s per expert program")
    summary["stages"]["probe"] = p

    sys.path.insert(0, ROOT)
    from hyperjax.hypogen import specs as S
    grid = S.subset_grid(S.make_grid(args.task), args.num_specs)
    n_specs = (len(S.split_specs(grid, S.PAPER_SEEDS[0], "maniskill").train)
               if args.expert_specs == "train" else len(grid))
    left = end - time.time()
    per_spec = args.expert_share * left / n_specs - p["compile_s"]
    steps = int(min(4_000_000, p["env_steps_per_s"] * max(per_spec, 0.0)) // 10_000 * 10_000)
    if args.tiny:
        steps = 960
    summary["expert_steps"] = steps
    run_dir = os.path.join(out, "run")
    if steps < 10_000 and not args.tiny:
        say(f"experts: only {steps} steps per spec would fit for {n_specs} specs; stopping")
        summary["stages"]["experts"] = "skipped (too little time)"
    else:
        cmd = [sys.executable, "-m", "experiments.hypogen", f"--task={args.task}",
               f"--num_specs={args.num_specs}", f"--expert_steps={steps}",
               f"--ppo_num_envs={args.num_envs}", f"--ppo_hidden={args.hidden}",
               f"--expert_specs={args.expert_specs}",
               f"--epochs={args.epochs}", f"--eval_every={args.eval_every}",
               f"--run_dir={run_dir}"]
        if args.tiny:
            cmd += ["--episodes_per_spec=1", "--eval_episodes=1", "--num_blocks=2"]
        summary["command"] = " ".join(cmd[1:])
        say(f"experts: {n_specs} specs x {steps} PPO steps")
        run_models(cmd, args.algos.split(","), end, say, log, summary)
    summary["seconds"] = round(args.minutes * 60 - (end - time.time()), 1)
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    log.close()
    write_tarball(out, run_dir, "gpu_manipulation.tar.gz")
    return summary


if __name__ == "__main__":
    sys.path.insert(0, ROOT)
    main()
