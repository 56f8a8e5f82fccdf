"""The cost of one vector step of an MJX task: 20 envs (one per training context), 200 steps of
uniform-random actions inside one jitted scan (reset included), best of 3 calls after compiling.

    python benchmarks/mjx_step_cost.py --tasks=cartpole,reacher_perm,ball_in_cup,walker,cheetah

Run it from two trees (``PYTHONPATH=TREE``) to compare physics settings; it prints which
``hyperjax`` it imported. ``results/cpu_mjx_physics/`` holds the comparison of Playground's
settings with dm_control's.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import warnings


def step_ms(name: str, n: int = 20, steps: int = 200) -> tuple[float, float]:
    """``(ms per vector step, compile seconds)`` of task ``name`` with ``n`` envs."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    import hyperjax as hj
    env = hj.make_env(name)
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
    ap.add_argument("--tasks", default="cartpole,reacher_perm,ball_in_cup,walker,cheetah")
    ap.add_argument("--num_envs", type=int, default=20)
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    import hyperjax
    print(f"hyperjax from {os.path.dirname(hyperjax.__file__)}", flush=True)
    for name in args.tasks.split(","):
        ms, c = step_ms(name, args.num_envs)
        print(f"{name:12s} {args.num_envs} envs: {ms:7.2f} ms per vector step (reset "
              f"included once per 200 steps), compile {c:.0f} s", flush=True)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    main()
