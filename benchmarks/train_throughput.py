"""Training throughput on an AIB task: compile seconds, steady-state gradient steps/s and env
steps/s, for 1 seed and for N vmapped seeds, and peak memory; one subprocess per cell so peak
memory is the cell's own.

    python benchmarks/train_throughput.py                      # all methods, DI, 1 and 4 seeds
    python benchmarks/train_throughput.py --algos=dr,dma_sh --seeds=1,8 --episodes=3

Setting: 20 envs (one per training context) in lock-step, batch 240 (12 per context), one
gradient step per vector step, actor every 2nd step (policy_frequency 2); learning_starts=0 so
every timed step updates. Timing is the second call of the compiled ``episodes`` program (no
evaluation inside), ``--episodes`` x 100 steps.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

ALL = ("dr", "concat", "da", "dma", "dma_pearl", "dma_star", "dma_sh")


def one(algo: str, env: str, seeds: int, episodes: int) -> dict:
    import jax
    import jax.numpy as jnp

    import hyperjax as hj
    from hyperjax.run import over_seeds, seed_keys

    cfg = hj.Config(env=env, algo=algo, total_steps=100_000, eval_every=5_000,
                    learning_starts=0)
    prog = hj.make_program(cfg)
    T = prog.env.episode_length
    keys = seed_keys(0, seeds)
    state = jax.jit(over_seeds(prog.init, seeds))(keys)
    run = jax.jit(over_seeds(prog.episodes, seeds, (0, None)), donate_argnums=0)
    eps = jnp.arange(episodes, dtype=jnp.int32)
    t0 = time.time()
    run = run.lower(state, eps).compile()
    compile_s = time.time() - t0
    state, m = run(state, eps)
    jax.block_until_ready(m)
    t0 = time.time()
    state, m = run(state, eps + episodes)
    jax.block_until_ready(m)
    dt = time.time() - t0
    steps = episodes * T
    dev = jax.devices()[0]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MiB (host RSS)
    stats = dev.memory_stats() if dev.platform != "cpu" else None
    if stats:
        peak = stats.get("peak_bytes_in_use", 0) / 2**20
    return dict(algo=algo, env=env, seeds=seeds, compile_s=compile_s,
                grad_steps_per_s=steps / dt, seed_grad_steps_per_s=seeds * steps / dt,
                env_steps_per_s=seeds * steps * prog.sets.train.shape[0] / dt,
                peak_mib=peak, platform=dev.platform)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--algos", default=",".join(ALL))
    ap.add_argument("--env", default="di")
    ap.add_argument("--seeds", default="1,4", help="comma list of vmapped seed counts")
    ap.add_argument("--episodes", type=int, default=2)
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        algo, seeds = args.one.split(":")
        print("RESULT " + json.dumps(one(algo, args.env, int(seeds), args.episodes)))
        return
    print(f"{'algo':<10} {'seeds':>5} {'compile s':>9} {'grad steps/s':>12} "
          f"{'x seeds':>9} {'env steps/s':>11} {'peak MiB':>9}")
    for algo in args.algos.split(","):
        for seeds in args.seeds.split(","):
            out = subprocess.run([sys.executable, __file__, f"--one={algo}:{seeds}",
                                  f"--env={args.env}", f"--episodes={args.episodes}"],
                                 capture_output=True, text=True, env=os.environ)
            line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
            if not line:
                print(f"{algo:<10} {seeds:>5} FAILED: {out.stderr.strip().splitlines()[-1:]}")
                continue
            r = json.loads(line[0][7:])
            print(f"{algo:<10} {seeds:>5} {r['compile_s']:>9.1f} {r['grad_steps_per_s']:>12.1f} "
                  f"{r['seed_grad_steps_per_s']:>9.1f} {r['env_steps_per_s']:>11.0f} "
                  f"{r['peak_mib']:>9.0f}", flush=True)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    main()
