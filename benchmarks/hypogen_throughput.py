"""HyPoGen throughput: training samples/s and epoch time per model, expert-training env steps/s.

    python benchmarks/hypogen_throughput.py                       # lqr_di + cheetah_speed shapes
    python benchmarks/hypogen_throughput.py --tasks=lqr_di --algos=hypogen,cond
    python benchmarks/hypogen_throughput.py --expert_tasks=lqr_di,cheetah_speed
    python benchmarks/hypogen_throughput.py --tasks= --expert_tasks=finger_speed \
        --expert_num_specs=10 --expert_steps=500        # the CPU finger run's expert program

Training is timed on the task's real shapes with synthetic transitions: lqr_di (obs 4, act 2,
8 train specs × 10 × 100 = 8,000 transitions, 16 batches of 512 per epoch) and cheetah_speed
(obs 17, act 6, 7 train specs × 10 × 1000 = 70,000 transitions, 137 batches per epoch: the
paper's), compile excluded, steady state over ``--epochs`` epochs. Expert training runs TD3 for
every spec of the grid at once (lqr_di: 41 specs; cheetah_speed: 40 on MJX) and reports env
steps/s summed over specs (one update per env step). Prints a table.
"""
from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("tasks", "lqr_di,cheetah_speed", "Shapes to time training on.")
flags.DEFINE_string("algos", "hypogen,hyperzero,cond,uvfa", "Models.")
flags.DEFINE_integer("epochs", 2, "Timed epochs per model (after one compile epoch).")
flags.DEFINE_string("expert_tasks", "lqr_di", "Grids for the TD3 expert timing ('' = none).")
flags.DEFINE_integer("expert_steps", 200, "Timed TD3 steps per spec.")
flags.DEFINE_integer("expert_num_specs", 0, "Reduced grid for the expert timing: this many "
                     "evenly spaced specs (0 = the paper's whole grid).")

SHAPES = {"lqr_di": (4, 2, 1, 8, 10 * 100), "cheetah_speed": (17, 6, 1, 7, 10 * 1000)}


def time_training(task, algo):
    import jax
    import numpy as np

    from hyperjax.hypogen import data as D, lqr, train as T
    obs, act, spec_dim, n_tasks, per = SHAPES[task]
    n = n_tasks * per
    rng = np.random.default_rng(0)
    f = lambda *s: rng.standard_normal(s).astype(np.float32)
    flat = D.Flat(np.repeat(np.arange(n_tasks, dtype=np.int32), per), f(n_tasks, spec_dim),
                  f(n, obs), np.tanh(f(n, act)), f(n, obs), f(n), np.ones(n, np.float32), f(n))

    class Dummy(lqr.LQRDoubleIntegrator):
        obs_dim, action_dim = obs, act

    fit = T.make_fit(T.FitConfig(algo=algo, epochs=1, eval_every=1, eval_episodes=0),
                     Dummy(), flat, np.zeros((1, spec_dim), np.float32))
    state = fit.init(jax.random.key(0))
    t = time.time()
    state, _ = fit.segment(state)
    jax.block_until_ready(state.params)
    compile_s = time.time() - t
    t = time.time()
    for _ in range(FLAGS.epochs):
        state, _ = fit.segment(state)
    jax.block_until_ready(state.params)
    epoch_s = (time.time() - t) / FLAGS.epochs
    idx = jax.numpy.zeros(512, jax.numpy.int32)
    cost = fit.train_step.lower((state.params, state.opt_state),
                                (idx, jax.numpy.ones(512))).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return dict(gflop=float(cost.get("flops", float("nan"))) / 1e9,params=sum(x.size for x in jax.tree_util.tree_leaves(state.params)),
                compile_s=compile_s, epoch_s=epoch_s, steps=fit.steps_per_epoch,
                samples_s=n / epoch_s, steps_s=fit.steps_per_epoch / epoch_s)


def time_experts(task: str, steps: int, num_specs: int = 0) -> dict:
    """TD3 for every spec of ``task``'s grid (``num_specs`` evenly spaced ones; 0 = all) in one
    vmapped program, ``steps`` steps timed after a first, compiling call (one update per env
    step from the first). Returns specs, compile_s, vector_steps_s and env_steps_s (= gradient
    steps/s, summed over specs). Also the probe of ``benchmarks/gpu_hypogen.py``."""
    import jax
    import jax.numpy as jnp

    from hyperjax.hypogen import experts as X, make_task_env, specs as S
    grid = S.subset_grid(S.make_grid(task), num_specs)
    env = make_task_env(task, grid)
    cfg = X.TD3Config(total_steps=steps, random_steps=0, seed_steps=0, buffer_size=steps)
    init, step = X.make_td3(env, cfg)
    specs = jnp.asarray(grid.specs, jnp.float32)
    state = jax.jit(jax.vmap(init))(jax.random.split(jax.random.key(0), len(grid)), specs)

    @jax.jit
    def run(s):
        return jax.lax.scan(lambda c, _: (step(c, specs)[0], None), s, None, steps)[0]

    t = time.time()
    state = jax.block_until_ready(run(state))
    compile_s = time.time() - t
    t = time.time()
    jax.block_until_ready(run(state))
    wall = time.time() - t
    return dict(specs=len(grid), compile_s=compile_s, vector_steps_s=steps / wall,
                env_steps_s=len(grid) * steps / wall)


def main(argv):
    del argv
    import jax
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), "
          f"{os.cpu_count()} CPUs")
    print("\n| task | model | params | batches/epoch | epoch (s) | grad steps/s | samples/s "
          "| GFLOP/step (XLA) | GFLOP/s | first segment incl. compile (s) |\n"
          "|---|---|---|---|---|---|---|---|---|---|")
    for task in [t for t in FLAGS.tasks.split(",") if t]:
        for algo in FLAGS.algos.split(","):
            r = time_training(task, algo)
            print(f"| {task} | {algo} | {r['params']:,} | {r['steps']} | {r['epoch_s']:.2f} | "
                  f"{r['steps_s']:.1f} | {r['samples_s']:,.0f} | {r['gflop']:.2f} | "
                  f"{r['gflop'] * r['steps_s']:.1f} | {r['compile_s']:.1f} |",
                  flush=True)
    if FLAGS.expert_tasks:
        print("\n| expert task | specs | vector steps/s | TD3 env steps/s = gradient steps/s "
              "(all specs, 1 update each) | compile (s) |\n|---|---|---|---|---|")
        for task in FLAGS.expert_tasks.split(","):
            r = time_experts(task, FLAGS.expert_steps, FLAGS.expert_num_specs)
            print(f"| {task} | {r['specs']} | {r['vector_steps_s']:,.1f} | "
                  f"{r['env_steps_s']:,.0f} | {r['compile_s']:.1f} |", flush=True)


if __name__ == "__main__":
    app.run(main)
