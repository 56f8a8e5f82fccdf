"""The cost of one vector step of an MJX task: 20 envs (one per training context), 200 steps of
uniform-random actions inside one jitted scan (reset included), best of 3 calls after compiling.

    python benchmarks/mjx_step_cost.py [--tasks=ball_in_cup,walker] [--solver=dm_control]

Run it from two trees (``PYTHONPATH=TREE``) to compare physics settings, or with
``--solver`` to compare solver caps in one tree; it prints which ``hyperjax`` it imported.
``results/cpu_mjx_physics/`` holds the comparisons (Playground's settings against
dm_control's; dm_control's solver caps against ``MJX_SOLVER``).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import warnings


def step_ms(name: str, n: int = 20, steps: int = 200, solver=None) -> tuple[float, float]:
    """``(ms per vector step, compile seconds)`` of task ``name`` with ``n`` envs, on the
    task's solver caps or ``solver`` (an ``MjxSolver``)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    import hyperjax as hj
    from hyperjax.envs import mjx_tasks
    env = mjx_tasks.make_mjx_task(name, solver=solver)
    ctx = jnp.asarray(np.resize(np.asarray(hj.context_sets(name).train), (n, len(env.factors))))

    @jax.jit
    def run(key):
        st, _ = jax.vmap(env.reset)(jax.random.split(key, n), ctx)

        def body(st, k):
            a = jax.random.uniform(k, (n, env.action_dim), minval=-1.0, maxval=1.0)
            st, ts = jax.vmap(env.step)(jax.random.split(k, n), st, a, ctx)
            return st, ts.reward

        return jax.lax.scan(body, st, jax.random.split(key, steps))[1].sum()

    t0 = time.time()
    run(jax.random.PRNGKey(0)).block_until_ready()
    compile_s = time.time() - t0
    best = float("inf")
    for i in range(3):
        t0 = time.perf_counter()
        run(jax.random.PRNGKey(i)).block_until_ready()
        best = min(best, time.perf_counter() - t0)
    return best / steps * 1e3, compile_s


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", default="cartpole,reacher_easy,reacher_hard,reacher_perm,"
                                       "ball_in_cup,walker,cheetah,walker_gym,hopper_gym")
    ap.add_argument("--num_envs", type=int, default=20)
    ap.add_argument("--solver", default=None,
                    help="solver caps ITERATIONS/LS_ITERATIONS/TOLERANCE or 'dm_control' "
                         "(MuJoCo's defaults) instead of each task's (hyperjax.envs.mjx_tasks."
                         "MJX_SOLVER); trees before 2026-12-06 have no such option")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    import hyperjax
    print(f"hyperjax from {os.path.dirname(hyperjax.__file__)}", flush=True)
    solver = None
    if args.solver:
        from hyperjax.envs import mjx_tasks
        if args.solver == "dm_control":
            solver = mjx_tasks.DM_CONTROL_SOLVER
        else:
            it, ls, tol = args.solver.split("/")
            solver = mjx_tasks.MjxSolver(int(it), int(ls), float(tol))
        print(f"solver caps: {solver}", flush=True)
    for name in args.tasks.split(","):
        ms, c = step_ms(name, args.num_envs, solver=solver)
        print(f"{name:12s} {args.num_envs} envs: {ms:7.2f} ms per vector step (reset "
              f"included once per 200 steps), compile {c:.0f} s", flush=True)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    main()
