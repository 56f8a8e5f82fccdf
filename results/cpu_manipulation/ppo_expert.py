"""A manipulation expert that grasps, on this CPU: brax PPO on lift_cube_stiffness (k = 1000)
with the released training rules (episodes end only at the 100-step cap, γ 0.85, no entropy
bonus), ``PPOConfig.cpu_expert``'s update shape, then the released evaluation: 100
deterministic episodes, ended at success, 200-step cap.

    .venv/bin/python results/cpu_manipulation/ppo_expert.py OUT_DIR [STEPS] [KEY=VALUE ...]

KEY=VALUE overrides a ``PPOConfig`` field (ints, floats or comma lists). Writes into OUT_DIR:
``curve.jsonl`` (one row per brax evaluation: step, mean return, success of brax's 128
deterministic 100-step episodes, wall seconds), ``params.npz`` (the parameters at the latest
evaluation, rewritten at each one, so a killed run keeps its last good expert),
``params_best.npz`` (those of the evaluation with the highest mean return so far, as SB3's
``EvalCallback(best_model_save_path=…)`` in the released ``ppo.py`` keeps its best model),
``summary.json`` (config, budget, the 100-episode success rate and episode lengths of the
final parameters; ``ppo_expert_eval.py`` evaluates a saved file the same way).

``INIT=path.npz`` in the environment starts from saved parameters (brax ``restore_params``).
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
steps = int(sys.argv[2]) if len(sys.argv) > 2 else 3_000_000
over = {}
for kv in sys.argv[3:]:
    k, v = kv.split("=")
    cur = getattr(P.PPOConfig(), k)
    over[k] = tuple(int(x) for x in v.split(",")) if isinstance(cur, tuple) else type(cur)(v)
task, spec = "lift_cube_stiffness", 1000.0
os.makedirs(out_dir, exist_ok=True)
env = M.make_manipulation_task(task, specs=[spec])
cfg = P.PPOConfig.cpu_expert(steps, **over)
print(f"{task} spec {spec:g}: {cfg}", flush=True)
t0 = time.time()


best = {"reward": -np.inf}
pending = {}


def save_params(step, params):
    P.save_params_npz(os.path.join(out_dir, "params.npz"), step, params)
    pending["params"] = params      # scored by the evaluation that follows (progress)


with open(os.path.join(out_dir, "curve.jsonl"), "w") as f:
    def progress(step, row):
        print(json.dumps(row), flush=True)
        f.write(json.dumps(row) + "\n")
        f.flush()
        if "params" in pending and row["reward"] > best["reward"]:
            best["reward"] = row["reward"]
            P.save_params_npz(os.path.join(out_dir, "params_best.npz"), step,
                              pending["params"])
    init = os.environ.get("INIT")
    start = (P.load_params_npz(init, P.init_params(env, cfg, jax.random.key(0)))
             if init else None)
    params, log = P.train_expert(env, [spec], cfg, seed=0, progress=progress,
                                 on_params=save_params, restore_params=start)
t_train = time.time() - t0
t1 = time.time()
ok, length, ret = jax.jit(lambda k: P.evaluate_success(env, cfg, params, [spec], k, 100))(
    jax.random.key(1))
ok, length, ret = np.asarray(ok), np.asarray(length), np.asarray(ret)
summary = {"task": task, "spec": spec, "config": dataclasses.asdict(cfg),
           "train_wall_s": round(t_train, 1), "eval_wall_s": round(time.time() - t1, 1),
           "env_steps": log[-1]["step"] if log else 0,
           "eval_episodes": 100, "eval_cap": M.EPISODE_LENGTH,
           "success_rate": float(ok.mean()), "mean_length": float(length.mean()),
           "mean_return": float(ret.mean()), "lengths": length.tolist()}
with open(os.path.join(out_dir, "summary.json"), "w") as f:
    json.dump(summary, f, indent=1)
print(f"success {ok.mean():.2f} over 100 episodes (mean length {length.mean():.1f}); "
      f"train {t_train:.0f} s", flush=True)
