"""brax PPO on one manipulation spec at CPU scale: does the reward rise?

    .venv/bin/python results/cpu_manipulation/ppo_smoke.py [TASK] [SPEC] [STEPS]
    (defaults: lift_cube_stiffness 1000 500000)

``PPOConfig.cpu_smoke``: 64 envs, unroll 10, batch 64 x 4 minibatches, 4 updates per batch,
64x64 networks, γ 0.85, 100-step training episodes, deterministic evaluation on 64 envs at 11
points. Writes ``ppo_smoke.jsonl`` (one row per evaluation) beside this file.
"""
import json
import os
import sys
import time

from hyperjax.envs import manipulation as M
from hyperjax.hypogen import ppo_experts as P

task = sys.argv[1] if len(sys.argv) > 1 else "lift_cube_stiffness"
spec = float(sys.argv[2]) if len(sys.argv) > 2 else 1000.0
steps = int(sys.argv[3]) if len(sys.argv) > 3 else 500_000
env = M.make_manipulation_task(task, specs=[spec])
cfg = P.PPOConfig(**{**P.PPOConfig.cpu_smoke(steps).__dict__, "num_evals": 11})
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ppo_smoke.jsonl")
print(f"{task} spec {spec}: brax PPO {steps} steps, {cfg}", flush=True)
t0 = time.time()
with open(out, "w") as f:
    def progress(step, row):
        print(json.dumps(row), flush=True)
        f.write(json.dumps({"task": task, "spec": spec, **row}) + "\n")
        f.flush()
    P.train_expert(env, [spec], cfg, progress=progress)
print(f"total {time.time() - t0:.0f} s")
