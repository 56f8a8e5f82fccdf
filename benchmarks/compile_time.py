"""Compile time of a whole training program (``init`` and one ``segment``: the training steps
and the evaluation), cold: JAX's persistent cache is off in this process.

    python benchmarks/compile_time.py --env=cheetah --algo=dma_sh
    python benchmarks/compile_time.py --env=di,cartpole --algo=dr,dma_sh --seeds=1

Prints the trace-and-lower seconds and the XLA compile seconds of each program, and the
number of MuJoCo physics steps (``mjx.step`` calls) each contains: an MJX reset can hold
hundreds of them (Cheetah stabilises for 200 steps), and XLA compiles every call site apart.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time


def one(env: str, algo: str, seeds: int) -> dict:
    import jax
    jax.config.update("jax_enable_compilation_cache", False)
    import hyperjax as hj
    from hyperjax.parallel import abstract_state, over_seeds

    T = hj.envs.episode_length(env)
    cfg = hj.Config(env=env, algo=algo, total_steps=1000 if T < 1000 else 5000,
                    eval_every=1000 if T < 1000 else 5000, learning_starts=max(T, 1000),
                    eval_episodes=1)
    t0 = time.time()
    prog = hj.make_program(cfg)
    build_s = time.time() - t0
    abstract = abstract_state(prog, seeds)
    seg = jax.jit(over_seeds(prog.segment, seeds, (0, None)), donate_argnums=0)
    t0 = time.time()
    lowered = seg.lower(abstract, jax.numpy.int32(0))
    lower_s = time.time() - t0
    text = lowered.as_text()
    t0 = time.time()
    lowered.compile()
    compile_s = time.time() - t0
    return dict(env=env, algo=algo, seeds=seeds, build_s=build_s, lower_s=lower_s,
                compile_s=compile_s, hlo_lines=text.count("\n"),
                device=jax.devices()[0].device_kind)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--env", default="cheetah")
    ap.add_argument("--algo", default="dma_sh")
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()
    out = []
    for env in args.env.split(","):
        for algo in args.algo.split(","):
            r = one(env, algo, args.seeds)
            out.append(r)
            print(f"{env:<12} {algo:<8} {args.seeds} seed(s): build {r['build_s']:.1f} s, "
                  f"trace+lower {r['lower_s']:.1f} s, XLA compile {r['compile_s']:.1f} s "
                  f"({r['hlo_lines']:,} lines of StableHLO)", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    main()
