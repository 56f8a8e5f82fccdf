"""Env steps/s of hyperjax's MJX tasks against the bare Playground/MJX step (issue 3).

For each task and batch size B, in one process:

* **bare**: ``vmap(playground_env.step)`` on Playground's own (default) model, no contexts;
* **hyperjax**: ``VmapAutoReset(make_env(task))``: each env gathers its own context's model
  from the table (contexts drawn uniformly from all 60 recipe contexts, so B envs hold up to
  60 models), applies the action factor, counts time, and auto-resets with a new context.

Both run ``--steps`` steps inside one jitted ``lax.scan`` with random actions. The per-step
ratio is hyperjax/bare; the reset (new context, Cheetah's 200 stabilisation steps) happens once
per 1000-step episode, so its cost is measured separately and the amortised ratio is
``bare_step / (ours_step + reset / 1000)``. Compile time is printed separately.

    python benchmarks/env_throughput.py --tasks=cheetah --batches=1,128,1024,4096
"""
from __future__ import annotations

import time

from absl import app, flags

flags.DEFINE_list("tasks", ["cheetah"], "MJX tasks.")
flags.DEFINE_list("batches", ["1", "128", "1024", "4096"], "Batch sizes.")
flags.DEFINE_integer("steps", 20, "Steps per timed scan.")
flags.DEFINE_integer("repeats", 3, "Timed repetitions (best is reported).")
FLAGS = flags.FLAGS


def _timed(fn, *args, repeats):
    import jax
    t0 = time.time()
    compiled = jax.jit(fn).lower(*args).compile()
    compile_s = time.time() - t0
    jax.block_until_ready(compiled(*args))
    best = float("inf")
    for _ in range(repeats):
        t0 = time.time()
        jax.block_until_ready(compiled(*args))
        best = min(best, time.time() - t0)
    return compile_s, best


def bench(task: str, batch: int, steps: int, repeats: int) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    import hyperjax
    from hyperjax.envs.wrappers import VmapAutoReset
    jax.config.update("jax_enable_compilation_cache", False)  # compile seconds are measured

    env = hyperjax.make_env(task)
    backend = env.backend
    sets = hyperjax.context_sets(task)
    ctx_set = jnp.asarray(sets.stacked().reshape(-1, sets.train.shape[-1]))
    wrapped = VmapAutoReset(env, "uniform")
    key = jax.random.key(0)
    actions = jax.random.uniform(key, (steps, batch, env.action_dim), jnp.float32, -1, 1)

    bare0 = jax.jit(jax.vmap(backend.reset))(jax.random.split(key, batch))
    ours0, _ = jax.jit(lambda k: wrapped.reset(k, ctx_set, batch))(key)

    def bare(state, actions):
        def body(s, a):
            s = jax.vmap(backend.step)(s, a)
            return s, s.reward.sum()
        return jax.lax.scan(body, state, actions)[1].sum()

    def ours(state, actions):
        def body(carry, a):
            s, k = carry
            k, k_step = jax.random.split(k)
            s, ts = wrapped.step(k_step, s, a, ctx_set)
            return (s, k), ts.reward.sum()
        return jax.lax.scan(body, (state, key), actions)[1].sum()

    def reset(k):
        return wrapped.reset(k, ctx_set, batch)[1].obs.sum()

    c_bare, t_bare = _timed(bare, bare0, actions, repeats=repeats)
    c_ours, t_ours = _timed(ours, ours0, actions, repeats=repeats)
    c_reset, t_reset = _timed(reset, key, repeats=repeats)
    per_bare, per_ours = t_bare / steps, t_ours / steps
    amortised = per_ours + t_reset / env.episode_length
    return dict(task=task, batch=batch, bare_sps=batch / per_bare, ours_sps=batch / per_ours,
                ratio=per_bare / per_ours, amortised_ratio=per_bare / amortised,
                reset_ms=1e3 * t_reset, compile_bare=c_bare, compile_ours=c_ours + c_reset,
                distinct_models=int(np.unique(np.asarray(ours0.context_id)).size))


def main(argv):
    del argv
    import jax
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), "
          f"{FLAGS.steps} steps per scan, best of {FLAGS.repeats}")
    print(f"{'task':13s} {'B':>5s} {'bare st/s':>11s} {'ours st/s':>11s} {'ratio':>6s} "
          f"{'amort.':>6s} {'reset ms':>9s} {'models':>6s} {'compile bare/ours s':>20s}")
    for task in FLAGS.tasks:
        for b in FLAGS.batches:
            r = bench(task, int(b), FLAGS.steps, FLAGS.repeats)
            print(f"{r['task']:13s} {r['batch']:5d} {r['bare_sps']:11,.0f} {r['ours_sps']:11,.0f} "
                  f"{r['ratio']:6.2f} {r['amortised_ratio']:6.2f} {r['reset_ms']:9.1f} "
                  f"{r['distinct_models']:6d} {r['compile_bare']:9.1f} / {r['compile_ours']:.1f}",
                  flush=True)


if __name__ == "__main__":
    app.run(main)
