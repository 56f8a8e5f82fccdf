"""HyPoGen pipeline: experts → demonstrations → training → zero-shot evaluation.

``python -m experiments.hypogen --algo=hypogen --task=lqr_di`` (the CPU default). ``--algo``
takes one name, a comma list, or ``all`` (hypogen, hyperzero, cond, uvfa). Each stage is skipped
when its output exists in the run directory, so a rerun only does what is missing::

    RUN_DIR/experts.npz | experts/       the experts: closed-form LQR gains and P (lqr_di*),
                                         or the TD3 experts' orbax checkpoint
    RUN_DIR/dataset.npz                  demonstrations (format: hyperjax.hypogen.data)
    RUN_DIR/ALGO/seed_S/checkpoint/      orbax: last and best-on-test parameters + record
    RUN_DIR/ALGO/seed_S/log.jsonl        one row per evaluation: epoch, losses, test return
    RUN_DIR/ALGO/seed_S/result.json      test returns (best-on-test and last), split
    RUN_DIR/results.json, results.md     the table over algos and seeds, with the expert

Seeds are the released runs' (123, 233, 666, 999, 789); the seed also picks the split (paper
protocol, ``--split=faithful``: 20 % train / 80 % test with the released code's rounding).
"""
from __future__ import annotations

import json
import os
import time

from absl import app, flags, logging

from hyperjax.utils import absl_flags_parser, fail as _fail

FLAGS = flags.FLAGS
flags.DEFINE_string("algo", "hypogen", "Model(s), comma-separated, or 'all': hypogen, "
                    "hyperzero, cond, uvfa.")
flags.DEFINE_string("task", "lqr_di", "Spec task: lqr_di (spec = mass; the CPU default), "
                    "lqr_di_goal (spec = mass, goal) or "
                    "{cheetah,walker,finger}_{speed,length,speed_length} (MJX).")
flags.DEFINE_enum("expert", None, ["lqr", "td3"], "Experts: lqr (closed form; lqr_di only) or "
                  "td3 (one per spec, all specs in one vmapped program). Default: lqr for "
                  "lqr_di, td3 otherwise.")
flags.DEFINE_integer("expert_steps", 1_000_000, "TD3 env steps per expert (the paper's 1M; one "
                     "update per step).")
flags.DEFINE_integer("expert_buffer", 1_000_000, "TD3 replay capacity per expert.")
flags.DEFINE_string("run_dir", None, "Output directory (default runs/hypogen-TASK).")
flags.DEFINE_integer("seeds", 1, "Number of seeds (the first N of 123, 233, 666, 999, 789).")
flags.DEFINE_integer("epochs", None, "Training epochs (paper: 2000; lqr_di CPU default: 200).")
flags.DEFINE_integer("eval_every", 20, "Epochs between test evaluations (best-on-test).")
flags.DEFINE_integer("batch_size", 512, "Batch size.")
flags.DEFINE_float("learning_rate", None, "Adam learning rate (default: 5e-4 HyPoGen, 1e-4 "
                   "the others).")
flags.DEFINE_bool("bc_only", False, "BC loss only (no value / TD auxiliaries).")
flags.DEFINE_bool("deep_supervision", True, "HyPoGen: supervise all K blocks (newer code); "
                  "false: the final block only.")
flags.DEFINE_integer("num_blocks", 8, "HyPoGen blocks K.")
flags.DEFINE_enum("split", "faithful", ["faithful", "clean"], "Split: the released code's "
                  "rounding (one spec unused) or clean (all non-test specs train).")
flags.DEFINE_integer("episodes_per_spec", 10, "Expert episodes recorded per spec.")
flags.DEFINE_integer("eval_episodes", 10, "Deterministic test episodes per spec.")
flags.DEFINE_bool("overwrite", False, "Delete --run_dir's contents first (every stage is "
                  "redone).")


CPU_EPOCHS = {"lqr_di": 200, "lqr_di_goal": 200}


def validate():
    """Checks the flags; returns (algos, epochs). Calls ``_fail`` with a one-line message."""
    from hyperjax.utils import parse_names
    from hyperjax.hypogen import models, specs
    try:
        algos = parse_names(FLAGS.algo, models.ALGOS, "algo", allow_all=True)
        specs.make_grid(FLAGS.task)
    except ValueError as e:
        _fail(str(e))
    if FLAGS.expert == "lqr" and not FLAGS.task.startswith("lqr_di"):
        _fail(f"--expert=lqr needs --task=lqr_di or lqr_di_goal (closed-form experts), got "
              f"{FLAGS.task!r}")
    epochs = CPU_EPOCHS.get(FLAGS.task, 2000) if FLAGS.epochs is None else FLAGS.epochs
    for name, v, lo in (("seeds", FLAGS.seeds, 1), ("epochs", epochs, 1),
                        ("eval_every", FLAGS.eval_every, 1), ("batch_size", FLAGS.batch_size, 1),
                        ("episodes_per_spec", FLAGS.episodes_per_spec, 1),
                        ("eval_episodes", FLAGS.eval_episodes, 1),
                        ("num_blocks", FLAGS.num_blocks, 1),
                        ("expert_steps", FLAGS.expert_steps, 10),
                        ("expert_buffer", FLAGS.expert_buffer, 1)):
        if v < lo:
            _fail(f"--{name} must be >= {lo}, got {v}")
    if FLAGS.seeds > 5:
        _fail(f"--seeds must be <= 5 (the released seeds), got {FLAGS.seeds}")
    if epochs % FLAGS.eval_every:
        _fail(f"--eval_every={FLAGS.eval_every} must divide --epochs={epochs}")
    if FLAGS.learning_rate is not None and not FLAGS.learning_rate > 0:
        _fail(f"--learning_rate must be > 0, got {FLAGS.learning_rate}")
    return algos, epochs


def _stale(what: str, path: str, made: dict, want: dict) -> None:
    """Refuses to reuse ``path`` (made with ``made``) for a run that wants ``want``: one line
    naming the first field that differs (``_fail``, exit 2)."""
    for k in sorted(want):
        if made.get(k) != want[k]:
            _fail(f"{what} {path} was made with {k}={made.get(k)!r}, this run has "
                  f"{k}={want[k]!r}: pass --overwrite (or another --run_dir) to redo it")


def _expert_kind() -> str:
    return FLAGS.expert or ("lqr" if FLAGS.task.startswith("lqr_di") else "td3")


def expert_config() -> dict:
    """What the experts stage depends on."""
    out = {"task": FLAGS.task, "expert": _expert_kind()}
    if out["expert"] == "td3":
        out.update(expert_steps=FLAGS.expert_steps, expert_buffer=FLAGS.expert_buffer)
    return out


def data_config() -> dict:
    """What the dataset depends on (its ``meta``)."""
    return {**expert_config(), "episodes_per_spec": FLAGS.episodes_per_spec}


def fit_config(epochs: int) -> dict:
    """What one model's result depends on (beyond the dataset)."""
    return {"task": FLAGS.task, "epochs": epochs, "batch_size": FLAGS.batch_size,
            "learning_rate": FLAGS.learning_rate, "bc_only": FLAGS.bc_only,
            "deep_supervision": FLAGS.deep_supervision, "num_blocks": FLAGS.num_blocks,
            "split": FLAGS.split, "eval_every": FLAGS.eval_every,
            "eval_episodes": FLAGS.eval_episodes, **data_config()}


def _save_npz_atomic(path: str, **arrays) -> None:
    import numpy as np
    tmp = path + ".tmp.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def make_task_env():
    if FLAGS.task.startswith("lqr_di"):
        from hyperjax.hypogen import lqr
        return lqr.make_task(FLAGS.task)
    from hyperjax.hypogen import dmc
    return dmc.make_spec_task(FLAGS.task)


def stage_experts_and_data(run_dir: str):
    """Experts (closed-form LQR, or TD3 for every spec in one program), then
    ``episodes_per_spec`` recorded deterministic episodes per spec."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from hyperjax import checkpoint
    from hyperjax.hypogen import data as D, experts as X, lqr, specs
    grid = specs.make_grid(FLAGS.task)
    env = make_task_env()
    kind = _expert_kind()
    spec_arr = jnp.asarray(grid.specs, jnp.float32)
    f_ds = os.path.join(run_dir, D.DATASET_FILE)
    if os.path.exists(f_ds):
        try:
            meta = D.load_dataset(f_ds).meta
        except ValueError as e:
            _fail(str(e))
        _stale("dataset", f_ds, meta, data_config())
        print(f"dataset: {f_ds} exists, made with these settings: reused (experts not needed)")
        return grid, env
    t = time.time()
    if kind == "lqr":
        f_exp = os.path.join(run_dir, "experts.npz")
        if not os.path.exists(f_exp):
            ex = lqr.make_experts(grid.specs)
            _save_npz_atomic(f_exp, spec=grid.specs, gain=np.asarray(ex.gain),
                             p=np.asarray(ex.p), task=np.array(FLAGS.task))
            print(f"experts: closed-form LQR for {len(grid)} specs ({time.time() - t:.1f} s)")
        else:
            print(f"experts: {f_exp} exists, reused")
        try:
            with np.load(f_exp, allow_pickle=False) as z:
                made_task = str(z["task"]) if "task" in z.files else None
                ok_specs = z["spec"].shape == np.shape(grid.specs) and np.allclose(
                    z["spec"], grid.specs)
                params = (jnp.asarray(z["gain"]), jnp.asarray(z["p"]))
        except Exception as e:  # noqa: BLE001 - BadZipFile, EOFError, a missing key, ...
            _fail(f"experts {f_exp} is damaged ({type(e).__name__}): delete it (or pass "
                  f"--overwrite) to make the experts again")
        _stale("experts", f_exp, {"task": made_task}, {"task": FLAGS.task})
        if not ok_specs:
            _fail(f"experts {f_exp} were made for other specs than {FLAGS.task!r}'s grid: pass "
                  f"--overwrite (or another --run_dir) to redo them")
        policy = lambda e, o, s: lqr.expert_action(e[0], o, s)
        value = lambda e, o, a, s: lqr.expert_q(e[0], e[1], o, a, s)
    else:
        cfg = X.TD3Config(total_steps=FLAGS.expert_steps, buffer_size=FLAGS.expert_buffer)
        ckpt = os.path.join(run_dir, "experts")
        init, _ = X.make_td3(env, cfg)
        abstract = jax.eval_shape(jax.vmap(init), jax.random.split(jax.random.key(0), len(grid)),
                                  spec_arr)
        if checkpoint.latest_step(ckpt) is not None:
            try:
                params, record = checkpoint.restore(ckpt, abstract)
            except Exception as e:  # noqa: BLE001 - damaged or made for another task
                _fail(f"experts {ckpt} do not restore ({type(e).__name__}): pass --overwrite "
                      f"(or another --run_dir) to train them again")
            _stale("experts", ckpt, record, expert_config())
            print(f"experts: {ckpt} exists, made with these settings: reused")
        else:
            print(f"experts: TD3 for {len(grid)} specs x {FLAGS.expert_steps} steps")
            params = X.train_experts(env, spec_arr, cfg, jax.random.key(0),
                                     segments=10 if FLAGS.expert_steps % 10 == 0 else 1)
            checkpoint.save(ckpt, FLAGS.expert_steps, params, expert_config(), keep=1)
            print(f"experts: trained ({time.time() - t:.0f} s)")
        policy, value = X.expert_policy(env.action_dim), X.expert_value()
    t = time.time()
    out = jax.jit(lambda k: D.rollout(env, policy, value, params, spec_arr, k,
                                      FLAGS.episodes_per_spec))(jax.random.key(0))
    D.save_dataset(run_dir, grid.specs, out, {
        **data_config(), "factors": list(grid.factors), "episode_length": env.episode_length})
    print(f"dataset: {len(grid)} specs x {FLAGS.episodes_per_spec} episodes x "
          f"{env.episode_length} steps ({time.time() - t:.1f} s)")
    return grid, env


def train_one(algo: str, seed: int, epochs: int, grid, env, ds, run_dir: str) -> dict:
    """Trains one (algo, seed) and evaluates it; skipped when its result.json exists."""
    import jax
    import numpy as np

    from hyperjax import checkpoint
    from hyperjax.hypogen import data as D, models, specs, train as T
    out_dir = os.path.join(run_dir, algo, f"seed_{seed}")
    f_res = os.path.join(out_dir, "result.json")
    want = {"algo": algo, "seed": seed, **fit_config(epochs)}
    if os.path.exists(f_res):
        try:
            with open(f_res) as f:
                result = json.load(f)
        except (OSError, ValueError):
            _fail(f"{f_res} is damaged: delete it (or pass --overwrite) to train "
                  f"{algo} seed {seed} again")
        _stale("result", f_res, result.get("config", {}), want)
        print(f"{algo} seed {seed}: finished earlier with these settings, read back")
        return result
    split = specs.split_specs(grid, seed, FLAGS.split)
    cfg = T.FitConfig(algo=algo, epochs=epochs, batch_size=FLAGS.batch_size,
                      learning_rate=FLAGS.learning_rate, bc_only=FLAGS.bc_only,
                      deep_supervision=FLAGS.deep_supervision, num_blocks=FLAGS.num_blocks,
                      eval_every=FLAGS.eval_every, eval_episodes=FLAGS.eval_episodes)
    fit = T.make_fit(cfg, env, D.flatten(ds, split.train), grid.specs[split.test])
    os.makedirs(out_dir, exist_ok=True)
    t0 = time.time()
    state = fit.init(jax.random.key(seed))
    n_params = models.count_params(state.params)
    print(f"{algo} seed {seed}: {n_params:,} parameters "
          f"{models.param_breakdown(state.params)}; {len(split.train)} train / "
          f"{len(split.test)} test specs; {fit.steps_per_epoch} steps/epoch")
    log = open(os.path.join(out_dir, "log.jsonl"), "w")
    t_compile = None
    for i in range(epochs // FLAGS.eval_every):
        t = time.time()
        state, m = fit.segment(state)
        m = {k: float(np.asarray(v).reshape(-1)[-1]) for k, v in m.items()}
        if t_compile is None:
            t_compile = time.time() - t
        row = {"epoch": int(state.epoch), **m}
        log.write(json.dumps(row) + "\n")
        log.flush()
        if not np.isfinite(m["loss"]):
            _fail(f"{algo} seed {seed}: non-finite loss at epoch {row['epoch']}", code=1)
        print(f"  epoch {row['epoch']:5d}  loss {m['loss']:.5f}  bc {m['bc']:.5f}  "
              f"test return {m['test_return']:9.3f}  [{time.time() - t0:6.0f} s]", flush=True)
    log.close()
    wall = time.time() - t0
    last = np.asarray(fit.evaluate(state.params)).mean(-1)
    best = np.asarray(fit.evaluate(state.best_params)).mean(-1)
    result = {"algo": algo, "seed": seed, "n_params": n_params, "epochs": epochs,
              "train_specs": grid.specs[split.train].tolist(),
              "test_specs": grid.specs[split.test].tolist(),
              "test_return_last": float(last.mean()), "test_return_best": float(best.mean()),
              "per_spec_last": last.tolist(), "per_spec_best": best.tolist(),
              "wall_s": wall, "first_segment_s": t_compile,
              "steps": epochs * fit.steps_per_epoch, "config": want}
    checkpoint.save(os.path.join(out_dir, "checkpoint"), epochs,
                    {"last": state.params, "best": state.best_params}, {"result": result})
    with open(f_res, "w") as f:
        json.dump(result, f, indent=1)
    print(f"{algo} seed {seed}: test return best {result['test_return_best']:.3f}, last "
          f"{result['test_return_last']:.3f} ({wall:.0f} s)")
    return result


def expert_on(ds, ids) -> float:
    """The expert's mean return on specs ``ids`` over its *recorded* episodes (dataset start
    states, not the models' evaluation starts: the gap column compares the two)."""
    return float(ds.returns()[ids].mean())


def main(argv):
    del argv
    algos, epochs = validate()
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
    from hyperjax.utils import enable_compilation_cache
    enable_compilation_cache()
    import numpy as np

    from hyperjax.hypogen import data as D, specs
    run_dir = FLAGS.run_dir or os.path.join("runs", f"hypogen-{FLAGS.task}")
    if os.path.exists(run_dir) and not os.path.isdir(run_dir):
        _fail(f"--run_dir {run_dir} is a file, not a directory")
    if FLAGS.overwrite and os.path.isdir(run_dir):
        import shutil
        shutil.rmtree(run_dir)
    try:
        os.makedirs(run_dir, exist_ok=True)
    except OSError as e:
        _fail(f"--run_dir {run_dir}: cannot create it ({e.strerror})")
    print(f"hyperjax.hypogen: {','.join(algos)} on {FLAGS.task}, {FLAGS.seeds} seed(s), "
          f"{epochs} epochs; run dir {run_dir}")
    grid, env = stage_experts_and_data(run_dir)
    ds = D.load_dataset(run_dir)
    seeds = specs.PAPER_SEEDS[:FLAGS.seeds]
    results = {a: [train_one(a, s, epochs, grid, env, ds, run_dir) for s in seeds]
               for a in algos}
    expert = [expert_on(ds, specs.split_specs(grid, s, FLAGS.split).test) for s in seeds]
    table = {a: {k: (float(np.mean([r[k] for r in rs])), float(np.std([r[k] for r in rs])))
                 for k in ("test_return_best", "test_return_last")} for a, rs in results.items()}
    lines = [f"# {FLAGS.task}: zero-shot return on held-out specs ({len(seeds)} seed(s), "
             f"{epochs} epochs; mean ± std over seeds)", "",
             "| method | best-on-test (paper) | last epoch (clean) | gap to expert (last) |",
             "|---|---|---|---|"]
    for a, v in table.items():
        gap = np.mean(expert) - v["test_return_last"][0]
        lines.append(f"| {a} | {v['test_return_best'][0]:.3f} ± {v['test_return_best'][1]:.3f} "
                     f"| {v['test_return_last'][0]:.3f} ± {v['test_return_last'][1]:.3f} "
                     f"| {gap:.3f} |")
    lines.append(f"| expert | {np.mean(expert):.3f} | {np.mean(expert):.3f} | 0 |")
    lines.append("")
    lines.append("The expert row averages its recorded episodes (other start states than the "
                 "models' evaluation episodes).")
    text = "\n".join(lines) + "\n"
    with open(os.path.join(run_dir, "results.md"), "w") as f:
        f.write(text)
    with open(os.path.join(run_dir, "results.json"), "w") as f:
        json.dump({"table": table, "expert": expert, "runs": results}, f, indent=1)
    print(text)


if __name__ == "__main__":
    app.run(main, flags_parser=absl_flags_parser(FLAGS))
