"""Training throughput and its scaling: compile seconds, steady-state gradient steps/s (per
seed and in total), env steps/s and peak memory against the number of vmapped seeds and of
parallel envs per seed; one subprocess per cell so peak memory is the cell's own.

    python benchmarks/train_throughput.py                      # all methods, DI, 1 and 4 seeds
    python benchmarks/train_throughput.py --algos=dr,dma_sh --seeds=1,8 --episodes=3
    # DMA*-SH against Concat on an MJX task with K = 128 (prints their step-time ratio)
    python benchmarks/train_throughput.py --algos=concat,dma_sh --tasks=cartpole --seeds=1 \
        --episodes=1 --no_warm
    # scaling curves: seeds 1, 2, 4, ... (at 20 envs) until a cell fails or exceeds
    # --max_mem_gib, then envs per seed (at 1 seed)
    python benchmarks/train_throughput.py --algos=dr,dma_sh --tasks=di,cheetah \
        --seeds=1,2,4,8,16,32 --num_envs=20,80,320,1280,4080 --episodes=1

Setting: 20 envs (one per training context; ``--num_envs``: m per context) in lock-step,
batch 240 (12 per context), one gradient step per vector step, actor every 2nd step
(policy_frequency 2); learning_starts = one episode, and every timed step updates. Timing is
the second call of the compiled ``steps`` program (no evaluation inside), ``--episodes`` x T
steps. The 2048^3 float32 matmul rate is measured at the start of the run and every method's
GFLOP/s is printed as a share of it. The runs
are sharded over every local device (``hyperjax.parallel.run_mesh``). GFLOP/s: XLA's count
(``cost_analysis``) of a vector step's parts times the vector steps/s measured
(``step_gflop``; ``benchmarks/profile_step.py`` breaks a step into its parts and times them).
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import subprocess
import sys
import time

ALL = ("dr", "concat", "da", "dma", "dma_pearl", "dma_star", "dma_sh")


def matmul_gflops(n: int = 2048, repeats: int = 10) -> float:
    """The rate of an ``n``^3 float32 matmul on the default device, measured now (GFLOP/s):
    the reference every method's GFLOP/s is compared with."""
    import jax
    import jax.numpy as jnp
    a = jnp.ones((n, n), jnp.float32)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        f(a).block_until_ready()
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def n_envs_of(prog, num_envs):
    return num_envs or prog.sets.train.shape[0]


def _gflop(fn, *args) -> float:
    import jax
    cost = jax.jit(fn).lower(*args).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float((cost or {}).get("flops", float("nan"))) / 1e9


def step_gflop(prog, n_envs: int) -> float:
    """XLA's FLOP count of one vector step of one seed: the policy on ``n_envs`` envs plus
    the gradient step averaged over the actor / critic-only pair (``lax.cond`` branches are
    compiled apart: XLA's count of the scan body would charge the costlier one every step
    and also count the DMA warm-up scan's body), with the actor loop unrolled for the count
    (XLA counts a loop body once, whatever its trip count). The env step is left out (DI: ~0 FLOPs;
    MJX: not matmul work)."""
    import jax
    import jax.numpy as jnp

    from hyperjax.agents import replay as rb
    cfg, agent, env = prog.cfg, prog.agent, prog.env
    key = jax.random.PRNGKey(0)
    state = prog.init(key)
    T = env.episode_length
    K = cfg.context_size if cfg.inferred else 0
    n_ctx = prog.sets.train.shape[0]
    buf = state.replay._replace(episodes=jnp.int32(2), t=jnp.int32(T))
    batch = rb.sample(buf, key, cfg.per_context_batch(n_ctx), T, K,
                      n_ctx if n_envs > n_ctx else None)
    ctx = jnp.asarray(prog.sets.train)
    counting = copy.copy(agent)
    counting.unroll_actor_loop = True  # XLA's count of a loop body is once, not per iteration
    update = [_gflop(lambda s: counting.update(s, batch, ctx, key, a), state.agent)
              for a in (True, False)]
    obs = jnp.zeros((n_envs, env.obs_dim))
    window = jnp.zeros((n_envs, *agent.window_shape))  # features [n, K, D]
    ctx_env = jnp.repeat(ctx, n_envs // n_ctx, axis=0)
    act = _gflop(lambda p: agent.act(p, obs, window, ctx_env, key, False, True),
                 state.agent.params)
    return sum(update) / 2 + act


def one(algo: str, env: str, seeds: int, episodes: int, num_envs: int | None = None,
        total_steps: int = 100_000, warm: bool = True) -> dict:
    import jax
    import jax.numpy as jnp
    from jax.sharding import NamedSharding, PartitionSpec

    import hyperjax as hj
    from hyperjax.parallel import RUN_AXIS, over_seeds, run_mesh, seed_keys, state_shardings
    jax.config.update("jax_enable_compilation_cache", False)  # compile seconds are measured
    T = hj.envs.episode_length(env)
    cfg = hj.Config(env=env, algo=algo, total_steps=total_steps, eval_every=T,
                    learning_starts=T, num_envs=num_envs)
    prog = hj.make_program(cfg)
    keys = seed_keys(0, seeds)
    mesh = run_mesh(seeds, n_envs=num_envs)
    abstract = jax.eval_shape(jax.vmap(prog.init), keys)
    shard = state_shardings(abstract, mesh)
    init = jax.jit(over_seeds(prog.init, seeds), out_shardings=shard)
    state = init(keys)
    if shard is None:
        run = jax.jit(over_seeds(prog.steps, seeds, (0, None, None)), donate_argnums=0)
    else:
        rep = NamedSharding(mesh, PartitionSpec())
        run = jax.jit(over_seeds(prog.steps, seeds, (0, None, None)), donate_argnums=0,
                      in_shardings=(shard, rep, rep),
                      out_shardings=(shard, NamedSharding(mesh, PartitionSpec(RUN_AXIS))))
    steps = episodes * T
    g = lambda x: jnp.int32(x)
    t0 = time.time()
    run = run.lower(state, g(0), g(T)).compile()
    compile_s = time.time() - t0
    state, m = run(state, g(0), g(T))  # the random episode (learning_starts = T)
    if warm:
        state, m = run(state, g(T), g(T + steps))
        jax.block_until_ready(m)
    start = T + steps if warm else T
    t0 = time.time()
    state, m = run(state, g(start), g(start + steps))
    jax.block_until_ready(m)
    dt = time.time() - t0
    n_envs = n_envs_of(prog, num_envs)
    dev = jax.devices()[0]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MiB (host RSS)
    stats = dev.memory_stats() if dev.platform != "cpu" else None
    if stats:
        peak = stats.get("peak_bytes_in_use", 0) / 2**20
    gflop_step = seeds * step_gflop(prog, n_envs_of(prog, num_envs))
    return dict(algo=algo, env=env, seeds=seeds, num_envs=n_envs, compile_s=compile_s,
                grad_steps_per_s=steps / dt, seed_grad_steps_per_s=seeds * steps / dt,
                env_steps_per_s=seeds * steps * n_envs / dt, peak_mib=peak,
                gflop_per_vector_step=gflop_step, gflops=gflop_step * steps / dt,
                devices=mesh.size, platform=dev.platform, device_kind=dev.device_kind)


def _cell(args, algo, task, seeds, num_envs):
    cmd = [sys.executable, __file__, f"--one={algo}:{seeds}:{num_envs}", f"--tasks={task}",
           f"--episodes={args.episodes}", f"--total_steps={args.total_steps}"]
    if args.no_warm:
        cmd.append("--no_warm")
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, env=os.environ,
                             timeout=args.cell_timeout)
    except subprocess.TimeoutExpired:
        return None, f"over --cell_timeout={args.cell_timeout} s"
    line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
    if not line:
        return None, (out.stderr.strip().splitlines() or ["killed (out of memory?)"])[-1][:200]
    return json.loads(line[0][7:]), None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--algos", default=",".join(ALL))
    ap.add_argument("--tasks", "--env", default="di", help="comma list of AIB tasks")
    ap.add_argument("--seeds", default="1,4", help="comma list of vmapped seed counts "
                    "(ascending: the axis stops at the first failure / memory limit)")
    ap.add_argument("--num_envs", default="", help="comma list of parallel envs per seed, "
                    "run at 1 seed (multiples of the 20 training contexts)")
    ap.add_argument("--episodes", type=int, default=2)
    ap.add_argument("--total_steps", type=int, default=100_000,
                    help="sets the replay capacity (min(buffer_size, total_steps) per context)")
    ap.add_argument("--max_mem_gib", type=float, default=20.0,
                    help="stop an axis once a cell's peak memory passes this")
    ap.add_argument("--cell_timeout", type=int, default=1800)
    ap.add_argument("--no_warm", action="store_true", help="time the first call after "
                    "compiling (for long episodes, e.g. MJX tasks' 1000 steps)")
    ap.add_argument("--json", help="also write every cell's figures to this file")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        algo, seeds, num_envs = args.one.split(":")
        print("RESULT " + json.dumps(one(algo, args.tasks, int(seeds), args.episodes,
                                         int(num_envs) or None, args.total_steps,
                                         not args.no_warm)))
        return
    # this process measures the matmul; cells run in subprocesses: no GPU preallocation here
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    peak = matmul_gflops()
    print(f"2048^3 float32 matmul, measured in this run: {peak:.1f} GFLOP/s", flush=True)
    print(f"{'task':<8} {'algo':<8} {'seeds':>5} {'envs':>5} {'compile s':>9} "
          f"{'steps/s/seed':>12} {'x seeds':>9} {'env steps/s':>11} {'GFLOP/s':>8} "
          f"{'of matmul':>9} {'peak MiB':>9}", flush=True)
    results = []
    for task in args.tasks.split(","):
        for algo in args.algos.split(","):
            axes = [(int(s), 0) for s in args.seeds.split(",") if s]
            envs = [(1, int(n)) for n in args.num_envs.split(",") if n]
            for axis in (axes, envs):
                for seeds, num_envs in axis:
                    r, err = _cell(args, algo, task, seeds, num_envs)
                    if r is None:
                        print(f"{task:<8} {algo:<8} {seeds:>5} {num_envs or '':>5} "
                              f"FAILED: {err}", flush=True)
                        break
                    r["matmul_gflops"] = peak
                    results.append(r)
                    print(f"{task:<8} {algo:<8} {seeds:>5} {r['num_envs']:>5} "
                          f"{r['compile_s']:>9.1f} {r['grad_steps_per_s']:>12.1f} "
                          f"{r['seed_grad_steps_per_s']:>9.1f} {r['env_steps_per_s']:>11.0f} "
                          f"{r['gflops']:>8.1f} {r['gflops'] / peak:>9.0%} "
                          f"{r['peak_mib']:>9.0f}", flush=True)
                    if r["peak_mib"] > args.max_mem_gib * 1024:
                        print(f"  (stopping this axis: peak memory above {args.max_mem_gib} "
                              f"GiB)", flush=True)
                        break
    for line in ratio_lines(results):
        print(line, flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


def ratio_lines(results, algo: str = "dma_sh", base: str = "concat",
                target: float = 4.0) -> list[str]:
    """``algo``'s time per gradient step over ``base``'s, per (task, seeds, envs) cell that
    has both (issue 26: DMA*-SH at most 4x Concat on Cartpole)."""
    cells = {(r["env"], r["seeds"], r["num_envs"], r["algo"]): r for r in results}
    out = []
    for (task, seeds, n, a), r in cells.items():
        other = cells.get((task, seeds, n, base))
        if a != algo or other is None:
            continue
        ratio = other["grad_steps_per_s"] / r["grad_steps_per_s"]
        out.append(f"{task}, {seeds} seed(s), {n} envs: {algo} takes {ratio:.2f}x {base}'s "
                   f"time per gradient step (target <= {target:g}x); {algo} at "
                   f"{r['gflops'] / r['matmul_gflops']:.0%} of the matmul rate")
    return out


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    main()
