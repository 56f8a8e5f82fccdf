"""The scripted grasp-and-lift on every spec of every manipulation grid (MJX, 8 episodes per
spec, 100 control steps): does the physics allow the task for each spec?

    .venv/bin/python results/cpu_manipulation/scripted_sweep.py [TASK ...]   # default: all 8

Prints, per task: compile+run and run seconds, success rate per spec (grid order) and the
mean step of first success.
"""
import sys
import time

import jax
import numpy as np

from hyperjax.envs import manipulation as M, manipulation_scripted as MS

for name in sys.argv[1:] or M.task_names():
    env = M.make_manipulation_task(name)
    specs = env.table.contexts
    f = jax.jit(lambda k: MS.scripted_episodes(env, specs, k, 8))
    t = time.time()
    jax.block_until_ready(f(jax.random.key(0)))
    c = time.time() - t
    t = time.time()
    ok, step, _ = f(jax.random.key(1))
    jax.block_until_ready(ok)
    print(name, 8, "compile+run", round(c, 1), "run", round(time.time() - t, 3),
          np.asarray(ok).mean(1), np.asarray(step).mean(1), flush=True)
