"""Train a method on an AIB task: ``python -m experiments.aib --algo=dma_sh --env=di``.

Seeds are vmapped inside one compiled program; the program runs one evaluation interval per
call, and the whole train state is checkpointed (orbax) between calls, so ``--resume``
continues a killed run exactly. Bad flags end with a one-line error and exit status 2 before
anything is compiled.

Run directory layout::

    RUN_DIR/config.json      the resolved Config (JSON)
    RUN_DIR/metrics.jsonl    one row per (seed, split, evaluation): step, aer, per-context
                             returns, training losses of the interval
    RUN_DIR/checkpoints/N/   orbax checkpoint after N segments (state + record JSON)
    RUN_DIR/summary.json     final AER per split (mean, std, per-seed scores)
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import time

from absl import app, flags, logging

FLAGS = flags.FLAGS
flags.DEFINE_string("algo", "dma_sh", "Method preset: dr, concat, da, dma, dma_pearl, dma_star, "
                    "dma_sh.")
flags.DEFINE_string("env", "di", "AIB task: di, di_friction, ode.")
flags.DEFINE_integer("seeds", 1, "Number of seeds, vmapped in one program.")
flags.DEFINE_integer("seed", 0, "First seed; seed i uses PRNGKey(seed + i).")
flags.DEFINE_integer("total_steps", None, "Vector-env steps (one gradient step each after "
                     "learning_starts). Unset: the task's CPU budget (DI: 10,000 steps, "
                     "eval every 1,000, learning_starts 1,000, 5 eval episodes); set: the "
                     "paper's settings for the unset flags (eval every 5,000, "
                     "learning_starts 5,000, 10 eval episodes). The paper used 100,000.")
flags.DEFINE_integer("eval_every", None, "Steps between evaluations.")
flags.DEFINE_integer("learning_starts", None, "Uniform-random steps before updates start.")
flags.DEFINE_integer("eval_episodes", None, "Evaluation episodes per context and split.")
flags.DEFINE_integer("batch_size", 240, "Batch size, stratified evenly over the training "
                     "contexts (the authors' 256 // 20 = 12 per context = 240).")
flags.DEFINE_float("q_lr", 1e-3, "Critic learning rate (Adam).")
flags.DEFINE_float("actor_lr", 3e-4, "Actor learning rate (Adam).")
flags.DEFINE_float("alpha_lr", 1e-3, "Temperature learning rate (Adam).")
flags.DEFINE_float("model_lr", 3e-4, "Encoder / hypernetwork / dynamics-model learning rate.")
flags.DEFINE_float("gamma", 0.99, "Discount.")
flags.DEFINE_float("tau", 0.005, "Target-critic Polyak rate.")
flags.DEFINE_string("context_file", None, "JSON file with user context sets: "
                    '{"train": [[...], ...], "eval_in": ..., "eval_out": ...} (rows in the '
                    "task's factor order; a missing split keeps the recipe's).")
flags.DEFINE_integer("context_size", None, "Encoder window K (default: 24 for DI/ODE).")
flags.DEFINE_integer("buffer_size", 100_000, "Replay capacity per context (transitions).")
flags.DEFINE_float("mask_rate", None, "Encoder input mask rate (default: the preset's).")
flags.DEFINE_bool("bootstrap_truncation", False, "Bootstrap through time limits (the "
                  "authors' code treats truncation as terminal).")
flags.DEFINE_string("out_dir", None, "Run directory (default runs/ENV-ALGO-TIMESTAMP).")
flags.DEFINE_bool("resume", False, "Continue the run in --out_dir from its last checkpoint.")
flags.DEFINE_bool("overwrite", False, "Delete an existing --out_dir and start afresh.")
flags.DEFINE_integer("keep_checkpoints", 2, "Checkpoints kept (newest first).")


def _fail(msg: str, code: int = 2):
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(code)


def _parse(argv):
    try:
        return FLAGS(argv)
    except flags.Error as e:
        _fail(str(e).splitlines()[0])


def build_config():
    """Flags -> validated ``Config``. Raises ``ValueError`` naming the bad flag."""
    from hyperjax.config import CPU_BUDGET, PAPER_BUDGET, Config
    from hyperjax.envs import TASK_DEFAULTS
    if FLAGS.total_steps is None:  # jnp tasks: the CPU budget; MJX tasks: the paper's (§2)
        paper = TASK_DEFAULTS.get(FLAGS.env, {}).get("paper_total_steps", 100_000)
        budget = dict(CPU_BUDGET.get(FLAGS.env, dict(total_steps=paper, **PAPER_BUDGET)))
    else:
        budget = dict(total_steps=FLAGS.total_steps, **PAPER_BUDGET)
    for name in ("eval_every", "learning_starts", "eval_episodes"):
        if getattr(FLAGS, name) is not None:
            budget[name] = getattr(FLAGS, name)
    if FLAGS.seeds is None or FLAGS.seeds <= 0:
        raise ValueError(f"seeds must be a positive integer, got {FLAGS.seeds}")
    if FLAGS.keep_checkpoints <= 0:
        raise ValueError(f"keep_checkpoints must be a positive integer, "
                         f"got {FLAGS.keep_checkpoints}")
    return Config(env=FLAGS.env, algo=FLAGS.algo, **budget, batch_size=FLAGS.batch_size,
                  context_size=FLAGS.context_size,
                  buffer_size=FLAGS.buffer_size, mask_rate=FLAGS.mask_rate,
                  bootstrap_truncation=FLAGS.bootstrap_truncation, q_lr=FLAGS.q_lr,
                  actor_lr=FLAGS.actor_lr, alpha_lr=FLAGS.alpha_lr, model_lr=FLAGS.model_lr,
                  gamma=FLAGS.gamma, tau=FLAGS.tau).resolved()


def load_context_sets(cfg):
    """The run's context sets: the recipe's, with splits replaced from ``--context_file``.

    Raises:
      ValueError: unreadable file, unknown split names, or malformed sets (names the factor).
    """
    from hyperjax import envs
    sets = envs.context_sets(cfg.env)
    if not FLAGS.context_file:
        return sets
    try:
        with open(FLAGS.context_file) as f:
            user = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"--context_file {FLAGS.context_file}: {e}") from None
    if not isinstance(user, dict) or set(user) - set(envs.contexts.SPLITS):
        raise ValueError(f"--context_file must be a JSON object with keys among "
                         f"{list(envs.contexts.SPLITS)}")
    varied = envs.varied_factors(cfg.env)
    new = {s: envs.validate_context_set(v, varied, what=f"{s} context set")
           for s, v in user.items()}
    return dataclasses.replace(sets, **new)


def prepare_run_dir(cfg) -> tuple[str, bool]:
    """Returns ``(run_dir, resuming)``; refuses to overwrite silently."""
    run_dir = FLAGS.out_dir or os.path.join(
        "runs", f"{cfg.env}-{cfg.algo}-{time.strftime('%Y%m%d-%H%M%S')}")
    run_dir = os.path.abspath(run_dir)
    exists = os.path.isdir(run_dir) and bool(os.listdir(run_dir))
    if FLAGS.resume and FLAGS.overwrite:
        raise ValueError("--resume and --overwrite exclude each other")
    if exists and FLAGS.overwrite:
        shutil.rmtree(run_dir)
        exists = False
    if exists and not FLAGS.resume:
        raise ValueError(f"run directory {run_dir} exists: pass --resume to continue it or "
                         f"--overwrite to replace it")
    if FLAGS.resume and not exists:
        raise ValueError(f"--resume: run directory {run_dir} does not exist")
    try:
        os.makedirs(run_dir, exist_ok=True)
        probe = os.path.join(run_dir, ".write_test")
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as e:
        raise ValueError(f"output directory {run_dir} is not writable ({e.strerror})") from None
    return run_dir, exists


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
    try:
        cfg = build_config()
        sets = load_context_sets(cfg)
        from hyperjax.config import check_batch
        check_batch(cfg.batch_size, sets.train.shape[0])
        run_dir, resuming = prepare_run_dir(cfg)
        if resuming:
            path = os.path.join(run_dir, "config.json")
            if not os.path.exists(path):
                raise ValueError(f"--resume: {run_dir} has no config.json")
            with open(path) as f:
                saved = json.load(f)
            _check_same(saved, run_config(cfg))
    except ValueError as e:
        _fail(str(e))
    train_run(cfg, sets, run_dir, resuming)


def run_config(cfg) -> dict:
    """What defines a run: the resolved Config plus the seeds."""
    return {**dataclasses.asdict(cfg), "seeds": FLAGS.seeds, "seed": FLAGS.seed,
            "context_file": FLAGS.context_file}


def _check_same(saved: dict, current: dict) -> None:
    from hyperjax.checkpoint import config_diff
    k = config_diff(saved, current)
    if k is not None:
        raise ValueError(f"--resume: the run's config differs in {k!r}: the run has "
                         f"{saved.get(k)!r}, these flags give {current.get(k)!r}")


def train_run(cfg, sets, run_dir: str, resuming: bool) -> None:
    import jax
    import numpy as np

    from hyperjax import checkpoint, run
    from hyperjax.train import make_program
    from hyperjax.utils import enable_compilation_cache

    enable_compilation_cache()
    config_dict = run_config(cfg)
    ckpt_dir = os.path.join(run_dir, "checkpoints")
    metrics_path = os.path.join(run_dir, "metrics.jsonl")
    prog = make_program(cfg, sets)
    print(f"hyperjax: {cfg.algo} on {cfg.env}, {FLAGS.seeds} seed(s), {cfg.total_steps} steps, "
          f"eval every {cfg.eval_every}; run dir {run_dir}", flush=True)
    init, seg, compile_s = run.compile_program(prog, FLAGS.seeds, FLAGS.seed)
    print(f"compiled in {compile_s:.1f} s ({jax.devices()[0].platform})", flush=True)

    keys = run.seed_keys(FLAGS.seed, FLAGS.seeds)
    start, rows = 0, []
    if resuming and checkpoint.latest_step(ckpt_dir) is not None:
        abstract = jax.eval_shape(jax.vmap(prog.init), keys)
        state, record = checkpoint.restore(ckpt_dir, abstract)
        try:
            checkpoint.check_compatible(record, config_dict)
        except checkpoint.CheckpointError as e:
            _fail(str(e))
        start, rows = int(record["segments"]), record["rows"]
        print(f"resumed from checkpoint after {start} segment(s) "
              f"(step {start * cfg.eval_every})", flush=True)
    else:
        with open(os.path.join(run_dir, "config.json"), "w") as f:
            json.dump(config_dict, f, indent=2, sort_keys=True)
        state = init(keys)
        if os.path.exists(metrics_path):
            os.remove(metrics_path)
    _write_rows(metrics_path, rows)

    t_start = time.time()

    def on_segment(i, state, seg_rows, seconds):
        step = (i + 1) * cfg.eval_every
        first = i * cfg.eval_every
        updates = max(0, step - max(first, cfg.learning_starts))
        bad = _non_finite(state, seg_rows, updates)
        if bad:
            _fail(f"non-finite {bad[0]} at step {step} in seed {bad[1]}; stopping. The last "
                  f"finite checkpoint ({checkpoint.latest_step(ckpt_dir) or 0} segment(s)) is "
                  f"kept in {ckpt_dir}", code=1)
        rows.extend(seg_rows)
        checkpoint.save(ckpt_dir, i + 1, state,
                        {"config": config_dict, "segments": i + 1, "rows": rows},
                        keep=FLAGS.keep_checkpoints)
        _write_rows(metrics_path, rows)
        aer = {s: np.mean([r["aer"] for r in seg_rows if r["split"] == s])
               for s in ("train", "eval_in", "eval_out")}
        tr = np.nanmean([r["train_return"] for r in seg_rows])
        sps = cfg.eval_every / seconds
        print(f"step {step:>7}/{cfg.total_steps}  AER train {aer['train']:7.2f}  "
              f"in {aer['eval_in']:7.2f}  out {aer['eval_out']:7.2f}  "
              f"train return {tr:7.2f}  {sps:6.1f} steps/s  "
              f"[{time.time() - t_start:6.0f} s]", flush=True)

    run.run_segments(prog, state, seg, start, FLAGS.seed, on_segment)
    scores = run.final_scores(rows)
    with open(os.path.join(run_dir, "summary.json"), "w") as f:
        json.dump({"compile_seconds": compile_s, "train_seconds": time.time() - t_start,
                   "aer": scores}, f, indent=2)
    print(run.format_table(scores, cfg.algo, cfg.env, FLAGS.seeds), flush=True)


def _write_rows(path, rows):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    os.replace(tmp, path)


def _non_finite(state, rows, updates):
    """First ``(quantity, seed)`` that is not finite, or None."""
    import jax
    import numpy as np
    if updates:
        for r in rows:
            for k in ("q_loss", "actor_loss", "model_loss", "alpha"):
                if k in r and not np.isfinite(r[k]):
                    return k, r["seed"]
    params = state.agent.params
    for name in ("actor", "critic", "target_critic", "log_alpha", "model"):
        for leaf in jax.tree.leaves(params[name]):
            ok = np.isfinite(np.asarray(leaf)).reshape(leaf.shape[0], -1).all(-1)
            if not ok.all():
                return f"{name} parameters", FLAGS.seed + int(np.flatnonzero(~ok)[0])
    return None


if __name__ == "__main__":
    app.run(main, flags_parser=_parse)
