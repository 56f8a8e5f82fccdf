"""Where the time of one training step goes: each part of a vector step jitted and timed on
its own (one seed), with XLA's FLOP count, against the whole step timed in the training scan.

    python benchmarks/profile_step.py --algos=dr,dma_sh --tasks=di --num_envs=20,320

Parts of ``hyperjax.train``'s step (``env_step``): **env** (``vmap(env.step)`` over the
envs), **act** (the policy on every env: for inferred methods the **encoder** g_phi on the
K-windows and, for DMA*-SH, the **hypernet** h_eta producing omega, then the actor),
**sample** (the stratified replay sample with its K-windows) and **update**: the **model**
step (dynamics loss, its gradient through encoder + hypernet + dynamics model, Adam), the
**critic** step, and the **actor** phase (two actor + alpha steps every 2nd step; averaged
here over a pair of steps, as in training), plus the Polyak update. Parts timed alone miss
the fusion across them and add a dispatch each (~0.05 ms), so they need not sum to the step.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time


def _time(fn, *args, repeats: int = 20):
    """(median seconds per call, GFLOP per call) of ``jax.jit(fn)``."""
    import jax
    import numpy as np
    compiled = jax.jit(fn).lower(*args).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    jax.block_until_ready(compiled(*args))
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts)), float((cost or {}).get("flops", float("nan"))) / 1e9


def profile(algo: str, task: str, num_envs: int | None, repeats: int) -> dict:
    import jax
    import jax.numpy as jnp

    import hyperjax as hj
    from hyperjax.agents import replay as rb
    from hyperjax.utils import enable_compilation_cache

    enable_compilation_cache(quiet=True)
    T = hj.envs.episode_length(task)
    cfg = hj.Config(env=task, algo=algo, total_steps=100_000, eval_every=T, learning_starts=T,
                    num_envs=num_envs)
    prog = hj.make_program(cfg)
    cfg = prog.cfg  # resolved: the preset's method fields
    agent, env = prog.agent, prog.env
    key = jax.random.PRNGKey(0)
    state = prog.init(key)
    params = state.agent.params
    n_ctx = prog.sets.train.shape[0]
    n = num_envs or n_ctx
    ctx = jnp.repeat(jnp.asarray(prog.sets.train), n // n_ctx, axis=0)
    K = cfg.context_size if cfg.inferred else 0
    # a replay with one full random episode per env row
    buf = state.replay._replace(episodes=jnp.int32(2), t=jnp.int32(T))
    buf = jax.tree.map(lambda x: jax.random.normal(key, x.shape) if x.dtype == jnp.float32
                       and x.ndim > 1 else x, buf)
    env_state, ts = jax.vmap(env.reset)(jax.random.split(key, n), ctx)
    obs = ts.obs
    window = jnp.zeros((n, *agent.window_shape))
    action = jnp.zeros((n, env.action_dim))
    per_ctx = cfg.per_context_batch(n_ctx)
    batch = rb.sample(buf, key, per_ctx, T, K, n_ctx if n > n_ctx else None)
    train_ctx = jnp.asarray(prog.sets.train)

    out = {}
    out["env"] = _time(lambda s, a: jax.vmap(env.step)(jax.random.split(key, n), s, a, ctx),
                       env_state, action, repeats=repeats)
    out["act"] = _time(lambda p, o, w: agent.act(p, o, w, ctx, key, False, True), params, obs,
                       window, repeats=repeats)
    if cfg.inferred:
        out["act: encoder"] = _time(lambda p, w: agent.encode(p, w, key, True),
                                    params, window, repeats=repeats)
        if agent.method.policy_merge == "shared":
            z = agent.encode(params, window, key, True)
            out["act: hypernet"] = _time(lambda p, z: agent.cond_from_z(p, z), params,
                                         z, repeats=repeats)
    out["sample"] = _time(lambda b: rb.sample(b, key, per_ctx, T, K,
                                              n_ctx if n > n_ctx else None), buf,
                          repeats=repeats)

    def update(s, do_actor):
        return agent.update(s, batch, train_ctx, key, do_actor)

    t_a, f_a = _time(lambda s: update(s, True), state.agent, repeats=repeats)
    t_c, f_c = _time(lambda s: update(s, False), state.agent, repeats=repeats)
    out["update"] = ((t_a + t_c) / 2, (f_a + f_c) / 2)
    from hyperjax.agents.agent import ADAM
    from hyperjax.optim import apply_gradients
    hp = state.agent.hparams
    if agent.method.has_aux():
        def model_step(p, o):
            g = jax.grad(lambda mp: agent.aux_loss(mp, batch, key, hp)[0])(p.method)
            return {n: apply_gradients(ADAM, g[n], o.method[n], p.method[n], hp.model_lr)
                    for n in g}
        out["update: model"] = _time(model_step, params, state.agent.opt_state,
                                     repeats=repeats)

    def critic_step(p, o):
        context = train_ctx[batch.context_id]
        g = jax.grad(lambda cp: agent.critic_loss(p.replace(critic=cp), batch, context, key,
                                                  hp)[0])(p.critic)
        return apply_gradients(ADAM, g, o.critic, p.critic, hp.q_lr)
    out["update: critic"] = _time(critic_step, params, state.agent.opt_state, repeats=repeats)
    rest = out["update"][0] - out["update: critic"][0] - out.get("update: model", (0, 0))[0]
    rest_f = out["update"][1] - out["update: critic"][1] - out.get("update: model", (0, 0))[1]
    out["update: actor + alpha (avg over the pair) + polyak"] = (rest, rest_f)

    # the whole vector step inside the training loop (one episode of updates, second call)
    run = jax.jit(prog.steps)
    g = jnp.int32
    s2, _ = run(state, g(0), g(T))  # the random episode (learning_starts = T)
    s2, _ = run(s2, g(T), g(2 * T))
    jax.block_until_ready(s2)
    t0 = time.perf_counter()
    s2, m = run(s2, g(2 * T), g(3 * T))
    jax.block_until_ready(m)
    step_s = (time.perf_counter() - t0) / T
    return dict(algo=algo, task=task, num_envs=n, step_ms=step_s * 1e3,
                parts={k: dict(ms=v[0] * 1e3, gflop=v[1]) for k, v in out.items()},
                device=jax.devices()[0].device_kind)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--algos", default="dr,dma_sh")
    ap.add_argument("--tasks", default="di")
    ap.add_argument("--num_envs", default="20")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()
    results = []
    for task in args.tasks.split(","):
        for algo in args.algos.split(","):
            for n in args.num_envs.split(","):
                r = profile(algo, task, int(n), args.repeats)
                results.append(r)
                print(f"\n{task} / {algo} / {r['num_envs']} envs: whole vector step "
                      f"{r['step_ms']:.2f} ms ({1e3 / r['step_ms']:.1f} steps/s)")
                print(f"  {'part':<52} {'ms':>8} {'share':>6} {'GFLOP':>7} {'GFLOP/s':>8}")
                for k, v in r["parts"].items():
                    print(f"  {k:<52} {v['ms']:>8.2f} {v['ms'] / r['step_ms']:>6.0%} "
                          f"{v['gflop']:>7.3f} {v['gflop'] / v['ms'] * 1e3:>8.1f}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    main()
