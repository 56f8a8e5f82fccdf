"""The released evaluation of a saved expert: 100 deterministic episodes ended at success,
200-step cap (``hyperjax.hypogen.ppo_experts.evaluate_success``), for the parameters
``ppo_expert.py`` saved at its latest brax evaluation (``OUT_DIR/params.npz``; a run stopped
at its time budget keeps them).

    .venv/bin/python results/cpu_manipulation/ppo_expert_eval.py OUT_DIR [FILE] [KEY=VALUE ...]

FILE: the parameters in OUT_DIR to evaluate (default ``params.npz``). KEY=VALUE as for
``ppo_expert.py`` (the network must match). Writes ``OUT_DIR/summary_FILE.json``: the config,
the step the parameters are from, the success rate, episode lengths and returns.
"""
import dataclasses
import json
import os
import sys
import time

import jax
import numpy as np

from hyperjax.envs import manipulation as M
from hyperjax.hypogen import ppo_experts as P

out_dir = sys.argv[1]
args = sys.argv[2:]
name = args.pop(0) if args and "=" not in args[0] else "params.npz"
over = {}
for kv in args:
    k, v = kv.split("=")
    cur = getattr(P.PPOConfig(), k)
    over[k] = tuple(int(x) for x in v.split(",")) if isinstance(cur, tuple) else type(cur)(v)
task, spec = "lift_cube_stiffness", 1000.0
env = M.make_manipulation_task(task, specs=[spec])
cfg = P.PPOConfig.cpu_expert(**over)
path = os.path.join(out_dir, name)
like = P.init_params(env, cfg, jax.random.key(0))
params = P.load_params_npz(path, like)
step = int(np.load(path)["step"])
curve = [json.loads(line) for line in open(os.path.join(out_dir, "curve.jsonl"))]
t0 = time.time()
ok, length, ret = jax.jit(lambda k: P.evaluate_success(env, cfg, params, [spec], k, 100))(
    jax.random.key(1))
ok, length, ret = np.asarray(ok), np.asarray(length), np.asarray(ret)
summary = {"task": task, "spec": spec, "config": {k: v for k, v in dataclasses.asdict(cfg).items()
                                                  if k != "num_timesteps"},
           "params_step": step, "train_wall_s_at_params": curve[-1]["wall_s"],
           "eval_wall_s": round(time.time() - t0, 1), "eval_episodes": 100,
           "eval_cap": M.EPISODE_LENGTH, "success_rate": float(ok.mean()),
           "mean_length": float(length.mean()), "mean_return": float(ret.mean()),
           "lengths": length.tolist()}
summary["file"] = name
with open(os.path.join(out_dir, f"summary_{name[:-4]}.json"), "w") as f:
    json.dump(summary, f, indent=1)
print(f"params of step {step}: success {ok.mean():.2f} over 100 episodes "
      f"(mean length {length.mean():.1f}, mean return {ret.mean():.1f})", flush=True)
