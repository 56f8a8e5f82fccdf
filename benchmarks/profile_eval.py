"""Where an evaluation's time goes, and its share of an evaluation interval (one seed).

    python benchmarks/profile_eval.py --algos=dr,dma_sh --tasks=ball_in_cup,reacher_hard

For each (algo, task) on the CLI's defaults (``hj.Config``: an evaluation every 5,000 steps,
5 episodes on each of the 3 x 20 contexts, so 300 episodes of T steps after K warm-up steps):

* **evaluation**: ``Program.evaluate`` as training calls it (jitted alone here);
* **physics**: the same batch of episodes with uniform-random actions (``random_actions``: no
  policy, no warm-up), scaled by (K + T) / T to the protocol's step count;
* **policy**: ``Policy.act`` on the whole batch for K + T steps on fixed observations (for
  inferred methods the window push, the encoder g_phi and, for DMA*-SH, the hypernet h_eta);
* **warm-up**: the K warm-up steps' share of physics + policy (the DMA protocol's own);
* **host**: what the driver does after each interval (``parallel.to_host`` of the metrics, one
  ``checkpoint.save`` of the whole train state, replay included);
* **training**: ``Program.steps`` over 250 update steps after a random phase of one episode,
  scaled to ``eval_every`` steps.

Printed: seconds of each part (best of 2 calls after the compiling one) and the evaluation's
share of one interval (evaluation / (training + evaluation + host)). Parts timed alone miss
XLA's fusion across them, so physics + policy need not equal the evaluation; random actions
also make more contacts than a trained or freshly initialised deterministic policy, so the
physics part can exceed the whole evaluation.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time


def _timed(fn, *args, repeats: int = 2):
    """(best seconds of ``repeats`` calls after the first, seconds of the first: compile +
    run) of ``fn(*args)``."""
    import jax
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    first = time.perf_counter() - t0
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - t0)
    return best, first


def profile(algo: str, task: str, update_steps: int = 250) -> dict:
    import jax
    import jax.numpy as jnp

    import hyperjax as hj
    from hyperjax import checkpoint, parallel

    T = hj.envs.episode_length(task)
    cfg = hj.Config(env=task, algo=algo, learning_starts=T)  # CLI defaults otherwise
    prog = hj.make_program(cfg)
    cfg = prog.cfg
    key = jax.random.PRNGKey(0)
    state = jax.jit(prog.init)(key)
    steps = jax.jit(prog.steps)
    g = jnp.int32
    L = cfg.learning_starts
    state, _ = steps(state, g(0), g(L + 1))  # the random phase (and the compile)
    jax.block_until_ready(state)
    t_train, _ = _timed(lambda s: steps(s, g(L + 1), g(L + 1 + update_steps)), state)
    train_interval = t_train / update_steps * cfg.eval_every
    params = state.agent.params

    out = {}
    evaluate = jax.jit(prog.evaluate, static_argnames="random_actions")
    out["evaluation"], compile_eval = _timed(evaluate, params, key)
    policy = hj.make_policy(prog.agent)
    K = policy.warmup_steps
    t_random, _ = _timed(lambda p, k: evaluate(p, k, random_actions=True), params, key)
    out["physics"] = t_random * (K + T) / T

    n = len(hj.envs.contexts.SPLITS) * prog.sets.train.shape[0] * cfg.eval_episodes
    ctx = jnp.tile(jnp.asarray(prog.sets.train), (n // prog.sets.train.shape[0], 1))
    _, ts = jax.vmap(prog.env.reset)(jax.random.split(key, n), ctx)

    @jax.jit
    def act_only(params, obs):
        ps = policy.init(obs, ctx)

        def body(carry, k):
            ps, obs = carry
            a, ps = policy.act(params, ps, obs, k)
            # the next observation depends on the action, so XLA cannot hoist the policy
            return (ps, obs + 1e-6 * a.sum(-1, keepdims=True)), a.sum()

        return jax.lax.scan(body, (ps, obs), jax.random.split(key, K + T))[1].sum()

    out["policy"], _ = _timed(act_only, params, ts.obs)
    out["warm-up (K steps of physics + policy)"] = (out["physics"] + out["policy"]) * K / (K + T)

    returns = jax.block_until_ready(evaluate(params, key))
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        parallel.to_host({"eval_return": returns})
        checkpoint.save(d, 1, state, {"segments": 1})
        out["host (metrics to host, checkpoint save)"] = time.perf_counter() - t0
    share = out["evaluation"] / (train_interval + out["evaluation"]
                                 + out["host (metrics to host, checkpoint save)"])
    return dict(algo=algo, task=task, eval_episodes_total=n, warmup_steps=K,
                episode_length=T, eval_every=cfg.eval_every,
                train_step_ms=t_train / update_steps * 1e3,
                train_interval_s=train_interval, eval_compile_s=compile_eval,
                parts_s=out, eval_share_of_interval=share,
                train_only_steps_per_s=update_steps / t_train,
                steps_per_s_with_evaluations=cfg.eval_every / (
                    train_interval + out["evaluation"]
                    + out["host (metrics to host, checkpoint save)"]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--algos", default="dr,dma_sh")
    ap.add_argument("--tasks", default="ball_in_cup,reacher_hard")
    ap.add_argument("--update_steps", type=int, default=250)
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()
    import warnings
    warnings.filterwarnings("ignore")
    results = []
    for task in args.tasks.split(","):
        for algo in args.algos.split(","):
            r = profile(algo, task, args.update_steps)
            results.append(r)
            print(f"\n{task} / {algo}: {r['eval_episodes_total']} episodes of "
                  f"{r['warmup_steps']} + {r['episode_length']} steps per evaluation; training "
                  f"{r['train_step_ms']:.2f} ms per step, {r['train_interval_s']:.1f} s per "
                  f"{r['eval_every']}-step interval ({r['train_only_steps_per_s']:.1f} "
                  f"steps/s training only, {r['steps_per_s_with_evaluations']:.1f} with "
                  f"evaluations)")
            for k, v in r["parts_s"].items():
                print(f"  {k:<45} {v:8.2f} s")
            print(f"  evaluation's share of an interval: {r['eval_share_of_interval']:.0%} "
                  f"(evaluation compile {r['eval_compile_s']:.0f} s)", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    main()
