"""How much constraint-solver work an MJX substep runs, against what C MuJoCo needs on the same
states, and how close each solver cap's solution is to C MuJoCo's float64 one.

    python benchmarks/mjx_solver_iterations.py --tasks=ball_in_cup,walker,cheetah --steps=100

Per task: 20 envs (one per training context) are reset and stepped under ``vmap`` with
uniform-random actions for ``--steps`` env steps, one substep at a time, on MuJoCo's default
solver caps (Newton, 100 iterations, line search 50, tolerance 1e-8: what dm_control asks for).
The constraint solve of each substep's ``mj_forward`` is instrumented (mujoco-mjx 3.17's
``solver.solve``; patched here, nowhere else) to record its Newton iterations and line-search
iterations per env. Then, on the same states (``qpos``, ``qvel``, ``act``, ``ctrl``,
``qacc_warmstart``, ``time``, mocap), C MuJoCo's float64 ``mj_forward`` gives the iterations it
needs (``solver_niter``, max over islands) and its ``qacc``.

Printed per task:

* MJX: Newton iterations per env-substep (median, p99, max) and the max over the vmapped batch
  per substep (what a vector substep pays: a batched ``while_loop`` runs until the slowest env is
  done); line-search iterations per Newton iteration (max), against the cap, which a batched
  line search always pays in full (MJX runs it as a ``scan`` of ``lax.cond`` that ``vmap``
  turns into ``select``).
* C MuJoCo float64: Newton iterations per substep (median, p99, max).
* For each candidate ``iterations/ls_iterations[/tolerance]`` in ``--caps`` (the first is the
  reference): the error of MJX's ``qacc`` against C's on those states (``|dqacc| / (1 +
  |qacc_C|)``, median / p99 / max), the share of states whose ``qacc`` equals the first cap's
  bitwise and the largest relative difference, and the Newton iterations under the cap. A cap
  whose errors equal the default's computes the same solution to float32's accuracy.

With ``--open_loop=1000`` instead: 1,000-step open-loop episodes on both caps against C MuJoCo
(``open_loop``). Used for ``hyperjax.envs.mjx_tasks.MjxSolver``; results in
``results/cpu_mjx_physics/``.
"""

import argparse
import functools
import json
import os
import sys
import warnings


def _instrument():
    """Patches mujoco-mjx's constraint solver to record ``(newton_iters, ls_max, ls_total)``
    of the top-level solve of each traced ``mjx.step`` into ``RECORD`` (a list the caller reads
    inside the same trace). Only for this script's measurements."""
    import jax
    import jax.numpy as jnp
    from mujoco.mjx._src import solver

    if getattr(solver, "_hyperjax_instrumented", False):
        return
    stash: list = []

    class CountingContext(solver.Context):
        ls_max: jax.Array = 0
        ls_total: jax.Array = 0

    solver.Context = CountingContext  # Context.create builds ``Context(...)`` by global name

    orig_scan = solver._while_loop_scan

    def while_loop_scan(cond, body, init, max_iter):
        out = orig_scan(cond, body, init, max_iter)
        stash.append(out.ls_iter)
        return out

    orig_ls = solver._linesearch

    def linesearch(m, d, ctx):
        out = orig_ls(m, d, ctx)
        n = jnp.asarray(stash.pop(), jnp.int32)
        return out.replace(ls_max=jnp.maximum(jnp.asarray(ctx.ls_max, jnp.int32), n),
                           ls_total=jnp.asarray(ctx.ls_total, jnp.int32) + n)

    orig_solve = solver.solve

    def solve(m, d):
        captured = []
        real = jax.lax.while_loop

        def while_loop(cond, body, init):
            out = real(cond, body, init)
            captured.append(out)
            return out

        jax.lax.while_loop = while_loop
        try:
            d = orig_solve(m, d)
        finally:
            jax.lax.while_loop = real
        if captured:
            c = captured[-1]
            RECORD.append((jnp.asarray(c.solver_niter, jnp.int32),
                           jnp.asarray(c.ls_max, jnp.int32), jnp.asarray(c.ls_total, jnp.int32)))
        else:  # iterations == 1: one body call, no loop
            RECORD.append((jnp.ones((), jnp.int32), jnp.zeros((), jnp.int32),
                           jnp.zeros((), jnp.int32)))
        return d

    solver._while_loop_scan = while_loop_scan
    solver._linesearch = linesearch
    solver.solve = solve
    solver._hyperjax_instrumented = True


RECORD: list = []


def _with_caps(model, iterations, ls_iterations, tolerance=None):
    import jax.numpy as jnp
    opt = model.opt.replace(iterations=iterations, ls_iterations=ls_iterations)
    if tolerance is not None:
        opt = opt.replace(tolerance=jnp.asarray(tolerance, opt.tolerance.dtype))
    return model.replace(opt=opt)


def measure(name: str, steps: int, caps: list[tuple[int, int]], seed: int = 0) -> dict:
    import jax
    import jax.numpy as jnp
    import mujoco
    import numpy as np
    from mujoco import mjx

    import hyperjax as hj
    from hyperjax.envs import mjx_tasks

    _instrument()
    env = mjx_tasks.make_mjx_task(name, solver=mjx_tasks.DM_CONTROL_SOLVER)
    ctxs = jnp.asarray(hj.context_sets(name).train, jnp.float32)
    n = ctxs.shape[0]
    n_sub = getattr(env.backend, "n_substeps", None) or 4  # gym tasks: frame_skip 4
    key = jax.random.PRNGKey(seed)
    actions = jax.random.uniform(jax.random.PRNGKey(seed + 1), (steps, n, env.action_dim),
                                 minval=-1.0, maxval=1.0)

    def substep(model_id, data, caps_=None):
        model = env.table.at(model_id)
        if caps_ is not None:
            model = _with_caps(model, *caps_)
        RECORD.clear()
        data = mjx.step(model, data)
        return data, RECORD[0]

    @jax.jit
    def rollout(key, actions):
        st, _ = jax.vmap(env.reset)(jax.random.split(key, n), ctxs)
        ids = st.physics.model_id

        def env_step(data, a):
            ctrl = jax.vmap(env.apply_action_factors)(jnp.clip(a, -1.0, 1.0), ctxs)
            data = data.replace(ctrl=ctrl)

            def sub(d, _):
                before = (d.qpos, d.qvel, d.act, d.qacc_warmstart, d.time, d.mocap_pos)
                d, counts = jax.vmap(substep)(ids, d)
                return d, (before, counts)

            return jax.lax.scan(sub, data, None, n_sub)

        _, out = jax.lax.scan(env_step, st.physics.state.data, actions)
        return ids, out

    ids, (before, counts) = rollout(key, actions)
    ids = np.asarray(ids)
    before = [np.asarray(x).reshape(steps * n_sub, n, *np.shape(x)[3:]) for x in before]  # [S, n, ...]
    niter, ls_max, ls_total = (np.asarray(c).reshape(-1, n) for c in counts)
    ctrl = np.asarray(jax.vmap(jax.vmap(env.apply_action_factors), (0, None))(
        jnp.clip(actions, -1.0, 1.0), ctxs))
    ctrl = np.repeat(ctrl, n_sub, axis=0)  # [S, n, nu]
    qpos, qvel, act, warm, time, mocap = before
    S = qpos.shape[0]

    # C MuJoCo float64 on the same states
    c_niter = np.zeros((S, n), np.int64)
    c_qacc = np.zeros(qvel.shape)
    for i in range(n):
        model = mjx_tasks.MjxSolver.reference(env.mj_model(np.asarray(ctxs[i])))
        data = mujoco.MjData(model)
        for s in range(S):
            data.qpos[:], data.qvel[:], data.qacc_warmstart[:] = qpos[s, i], qvel[s, i], warm[s, i]
            if data.act.size:
                data.act[:] = act[s, i]
            if data.mocap_pos.size:
                data.mocap_pos[:] = mocap[s, i]
            data.ctrl[:] = ctrl[s, i]
            data.time = time[s, i]
            mujoco.mj_forward(model, data)
            nisland = max(int(data.nisland), 1)
            c_niter[s, i] = int(np.max(data.solver_niter[:nisland]))
            c_qacc[s, i] = data.qacc

    # MJX qacc on the same states under each cap
    template = mjx.make_data(env.mj_model(np.asarray(ctxs[0])), impl="jax")

    @functools.partial(jax.jit, static_argnums=(0,))
    def forward_qacc(caps_, ids, qpos, qvel, act, warm, time, mocap, ctrl):
        def one(model_id, qp, qv, ac, w, t, mc, u):
            model = _with_caps(env.table.at(model_id), *caps_)
            d = template.replace(qpos=qp, qvel=qv, act=ac, qacc_warmstart=w, time=t, mocap_pos=mc,
                          ctrl=u)
            RECORD.clear()
            qacc = mjx.forward(model, d).qacc
            return qacc, RECORD[0][0]
        return jax.vmap(jax.vmap(one))(jnp.broadcast_to(ids, qpos.shape[:2]), qpos, qvel, act,
                                       warm, time, mocap, ctrl)

    def stats(x):
        return {"median": float(np.median(x)), "p99": float(np.percentile(x, 99)),
                "max": float(np.max(x))}

    errs, same, newton = {}, {}, {}
    q_ref = None
    for c in caps:
        q, it = forward_qacc(tuple(c), ids, qpos, qvel, act, warm, time, mocap,
                             ctrl.astype(np.float32))
        q, it = np.asarray(q), np.asarray(it)
        q_ref = q if q_ref is None else q_ref
        e = (np.abs(q - c_qacc) / (1.0 + np.abs(c_qacc))).max(-1)
        key_ = "/".join(str(v) for v in c)
        errs[key_] = stats(e)
        d = (np.abs(q - q_ref) / (1.0 + np.abs(q_ref))).max(-1)
        same[key_] = {"bitwise_equal_fraction": float((q == q_ref).all(-1).mean()),
                      "max_rel_diff": float(d.max())}
        newton[key_] = {"per_env_max": int(it.max()), "batch_max_median":
                        float(np.median(it.max(1))), "batch_max_mean": float(it.max(1).mean())}
    return {
        "task": name, "envs": n, "substeps": int(S),
        "mjx_newton_per_env_substep": stats(niter),
        "mjx_newton_batch_max_per_substep": stats(niter.max(1)),
        "mjx_newton_hist": np.bincount(niter.ravel(), minlength=1).tolist(),
        "mjx_ls_max_per_newton_iteration": int(ls_max.max()),
        "mjx_ls_per_newton_iteration_mean": float(ls_total.sum() / max(niter.sum(), 1)),
        "mjx_ls_max_hist": np.bincount(ls_max.ravel(), minlength=1).tolist(),
        "c_newton_per_substep": stats(c_niter),
        "c_newton_hist": np.bincount(c_niter.ravel(), minlength=1).tolist(),
        "qacc_error_vs_c": errs,
        "qacc_vs_first_cap": same,
        "newton_under_cap": newton,
    }


def open_loop(name: str, steps: int = 1000, seed: int = 0) -> dict:
    """1,000-step open-loop trajectories of 5 contexts (training rows 0 and 7, eval-in 10,
    eval-out 0 and 19; ``tests/test_mjx.py``'s) under fixed uniform-random actions: MJX on
    dm_control's caps and on ``MJX_SOLVER``, each against C MuJoCo float64 on dm_control's caps
    from the same reset state. Also C against C from a state nudged by 1e-6 on every ``qpos``
    (a float32 rounding's size): how fast the task itself separates trajectories.

    Returns per solver: the median and the max over contexts of ``max |dqpos|`` at steps 10,
    100, 300 and ``steps``, and the median first step where it exceeds 1e-2 (``steps`` when
    never)."""
    import jax
    import jax.numpy as jnp
    import mujoco
    import numpy as np

    import hyperjax as hj
    from hyperjax.envs import mjx_tasks

    sets = hj.context_sets(name)
    ctxs = np.stack([sets.train[0], sets.train[7], sets.eval_in[10], sets.eval_out[0],
                     sets.eval_out[-1]]).astype(np.float32)
    n = len(ctxs)
    solvers = {"dm_control": mjx_tasks.DM_CONTROL_SOLVER, "mjx_solver": mjx_tasks.MJX_SOLVER}
    envs = {k: mjx_tasks.make_mjx_task(name, solver=v) for k, v in solvers.items()}
    env = envs["dm_control"]
    actions = np.asarray(jax.random.uniform(jax.random.PRNGKey(seed + 1),
                                            (steps, n, env.action_dim), minval=-1.0,
                                            maxval=1.0))
    n_sub = getattr(env.backend, "n_substeps", None) or 4

    def rollout(e):
        @jax.jit
        def run(key, actions):
            st, _ = jax.vmap(e.reset)(jax.random.split(key, n), jnp.asarray(ctxs))
            d = st.physics.state.data
            start = (d.qpos, d.qvel, d.qacc_warmstart, d.time, d.mocap_pos)

            def body(st, a):
                st, _ = jax.vmap(e.step)(jax.random.split(key, n), st, a, jnp.asarray(ctxs))
                return st, st.physics.state.data.qpos

            return start, jax.lax.scan(body, st, actions)[1]
        return jax.tree.map(np.asarray, run(jax.random.PRNGKey(seed), jnp.asarray(actions)))

    runs = {k: rollout(e) for k, e in envs.items()}
    (qpos0, qvel0, warm0, time0, mocap0), _ = runs["dm_control"]

    def c_rollout(i, nudge=0.0):
        model = mjx_tasks.MjxSolver.reference(env.mj_model(ctxs[i]))
        data = mujoco.MjData(model)
        data.qpos[:], data.qvel[:] = qpos0[i] + nudge, qvel0[i]
        data.qacc_warmstart[:], data.time = warm0[i], time0[i]
        if data.mocap_pos.size:
            data.mocap_pos[:] = mocap0[i]
        out = np.zeros((steps, model.nq))
        for t in range(steps):
            data.ctrl[:] = np.asarray(env.apply_action_factors(
                jnp.clip(jnp.asarray(actions[t, i]), -1, 1), jnp.asarray(ctxs[i])))
            mujoco.mj_step(model, data, nstep=n_sub)
            out[t] = data.qpos
        return out

    c_ref = np.stack([c_rollout(i) for i in range(n)], 1)                  # [T, n, nq]
    traj = {k: v[1].astype(np.float64) for k, v in runs.items()}
    traj["c_nudged_1e-6"] = np.stack([c_rollout(i, 1e-6) for i in range(n)], 1)
    out = {}
    for k, q in traj.items():
        err = np.abs(q - c_ref).max(-1)                                     # [T, n]
        over = err > 1e-2
        first = np.where(over.any(0), over.argmax(0), steps)
        out[k] = {**{f"step_{t}": [float(np.median(err[t - 1])), float(err[t - 1].max())]
                     for t in (10, 100, 300, steps)},
                  "first_step_over_1e-2": float(np.median(first))}
    return {"task": name, "steps": steps, "open_loop_max_abs_qpos_error_median_max": out}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", default="cartpole,ball_in_cup,walker,cheetah,reacher_hard,"
                                       "walker_gym,hopper_gym")
    ap.add_argument("--steps", type=int, default=100, help="env steps per env")
    ap.add_argument("--caps", default="100/50,100/8,100/6,100/4,100/4/1e-6",
                    help="candidate iterations/ls_iterations[/tolerance] settings")
    ap.add_argument("--json", default=None, help="also write the results here")
    ap.add_argument("--open_loop", type=int, default=0,
                    help="instead: N-step open-loop trajectories against C MuJoCo (open_loop)")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    if args.open_loop:
        out = [open_loop(name, args.open_loop) for name in args.tasks.split(",")]
        for r in out:
            print(json.dumps(r), flush=True)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(out, f, indent=1)
        return
    caps = [tuple(int(v) if i < 2 else float(v) for i, v in enumerate(c.split("/")))
            for c in args.caps.split(",")]
    out = []
    for name in args.tasks.split(","):
        r = measure(name, args.steps, caps)
        out.append(r)
        print(json.dumps(r), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    main()
