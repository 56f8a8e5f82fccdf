import dataclasses, sys
import numpy as np
ROOT = __import__("os").path.dirname(__import__("os").path.dirname(__import__("os").path.dirname(__import__("os").path.abspath(__file__))))
sys.path.insert(0, ROOT + "/tests"); sys.path.insert(0, ROOT)
from hyperjax.envs import mjx_tasks
import test_mjx
which = sys.argv[1]
if which == "dm_control":
    for n in ("ball_in_cup", "cheetah", "walker"):
        mjx_tasks.MJX_TASK_DEFS[n] = dataclasses.replace(mjx_tasks.MJX_TASK_DEFS[n], solver=mjx_tasks.DM_CONTROL_SOLVER)
for name in sys.argv[2].split(","):
    e = test_mjx._open_loop_errors(name)
    m = e.max(-1)
    print(which, name, "solver", test_mjx._env(name).task.solver, "per-context max over the episode", np.array2string(m, precision=3), "median", f"{np.median(m):.3g}", "max", f"{m.max():.3g}", "first step >1e-2 per context", [int(np.argmax(r > 1e-2)) if (r > 1e-2).any() else 999 for r in e], flush=True)
