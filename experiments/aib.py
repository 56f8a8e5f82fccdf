"""Train methods on AIB tasks and report: ``python -m experiments.aib --algo=dma_sh --env=di``.

``--algo`` and ``--env`` take one name, a comma-separated list, or (``--algo``) ``all``: each
(task, method) pair is one compiled program with the seeds vmapped inside. A program runs one
evaluation interval per call, and the whole train state is checkpointed (orbax) between calls,
so ``--resume`` continues a killed study exactly, run by run. Bad flags end with a one-line
error and exit status 2 before anything is compiled. After training, inferred-context methods
get the representation diagnostics (the authors' `dmash/informativeness/metrics.py`), and the
study's report and figures are written.

Scale: the runs (``--seeds`` x ``--sweep`` points) are one program whose run axis is sharded
over every device JAX finds (``hyperjax.parallel``). ``--sweep q_lr=1e-3,3e-4 --sweep tau=0.01,0.02``
trains the grid of shape-preserving hyperparameters in that one program. On several hosts, start
one process per host with ``--coordinator_address=HOST:PORT --num_processes=N
--process_id=I`` (``jax.distributed.initialize``) and a shared ``--out_dir``: each process
trains its block of runs and process 0 writes the merged files.

Run directory layout (one pair: RUN_DIR is the run; several: RUN_DIR/ENV/ALGO/ each)::

    RUN_DIR/config.json        the resolved Config (JSON)
    RUN_DIR/metrics.jsonl      one row per (seed, split, evaluation): step, aer, per-context
                               returns, training losses of the interval
    RUN_DIR/checkpoints/N/     orbax checkpoint after N segments (state + record JSON)
    RUN_DIR/summary.json       final AER per split (mean, std, per-seed scores)
    RUN_DIR/diagnostics.json   z diagnostics per split and seed (inferred methods)
  and at the top:
    report.md, study.json, plots/*.png   AER / IQM / relative-gain tables, diagnostics, figures
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import time

# XLA's C++ warnings (one per cache hit: "Assume version compatibility...") stay quiet unless
# asked for (TF_CPP_MIN_LOG_LEVEL=0); errors still print. Read when jax loads: set it first.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags, logging

from hyperjax import config as _config, envs as _envs, methods as _methods
from hyperjax.utils import (absl_flags_parser, fail as _fail, os_error_line,  # noqa: F401
                            parse_names, read_json, refuse_positional)

FLAGS = flags.FLAGS
flags.DEFINE_string("algo", "dma_sh", _methods.help_text())
flags.DEFINE_string("env", "di", _envs.env_help())
# one flag per Config field (hyperjax/config.py holds their defaults and help); the budget's
# default is the task's (TaskInfo.default_budget)
CONFIG_FLAGS = _config.define_flags(
    FLAGS, skip=("env", "algo"),
    defaults=dict(total_steps=None, eval_every=None, learning_starts=None, eval_episodes=None),
    helps=dict(total_steps=_config.Config.__dataclass_fields__["total_steps"].metadata["help"]
               + " Unset: the task's budget (DI/ODE on CPU: 9,000, eval every 1,000, "
               "learning_starts 1,000, 5 eval episodes; MJX tasks: the paper's); set: the "
               "paper's settings for the unset budget flags (eval every 5,000, "
               "learning_starts 5,000, 5 eval episodes)."))
flags.adopt_module_key_flags(_config)  # --helpshort lists them (absl files them under config)
flags.DEFINE_integer("seeds", 1, "Number of seeds, vmapped in one program (--suite=paper: "
                     "10 unless given).")
flags.DEFINE_enum("suite", None, ["paper"], "A predefined study: 'paper' = the paper's grid "
                  "(every AIB task of the paper x DR, Concat, DA, DMA, DMA-Pearl, DMA*, "
                  "DMA*-SH x 10 seeds at the paper's budgets, the authors' "
                  "`dmash/contexts/context.py`); --env / --algo / "
                  "--seeds narrow it. The report puts the paper's figures beside ours.")
flags.DEFINE_float("budget_scale", 1.0, "With --suite: every task's paper budget x this "
                   "(total steps, evaluation interval and random steps; at least one "
                   "episode of random steps).")
flags.DEFINE_integer("seed", 0, "First seed; seed i uses PRNGKey(seed + i).")
flags.DEFINE_string("context_file", None, "JSON file with user context sets: "
                    '{"train": [[...], ...], "eval_in": ..., "eval_out": ...} (rows in the '
                    "task's factor order; a missing split keeps the recipe's).")
flags.DEFINE_string("out_dir", None, "Run directory (default runs/ENV-ALGO-TIMESTAMP).")
flags.DEFINE_bool("skip_memory_check", False, "Compile even when the train state's estimated "
                  "size exceeds the available memory.")
flags.DEFINE_bool("resume", False, "Continue the run in --out_dir from its last checkpoint.")
flags.DEFINE_bool("overwrite", False, "Delete an existing --out_dir and start afresh.")
flags.DEFINE_integer("keep_checkpoints", 2, "Checkpoints kept (newest first).")
flags.DEFINE_bool("diagnostics", True, "After training, the z diagnostics of inferred-context "
                  "methods (the authors' `dmash/informativeness/metrics.py`): KSG "
                  "informativeness, variability, overlap, variance "
                  "decomposition, cosine matrices, shadow gradients.")
flags.DEFINE_integer("diag_windows", 256, "Windows per context for the diagnostics.")
flags.DEFINE_bool("diag_encoder_training", True, "Encode the diagnostics' windows with the "
                  "encoder in training mode, as the authors' metrics code (false: eval mode).")
flags.DEFINE_bool("random_baseline", True, "After training, the uniform-random policy's AER "
                  "per split on the same evaluation episodes (summary.json: random_aer).")
flags.DEFINE_integer("bootstrap_reps", 5000, "Bootstrap resamples of the report's 95 % CIs.")
flags.DEFINE_bool("report", True, "Write report.md, study.json and plots/ into the run dir.")
flags.DEFINE_multi_string("sweep", [], "NAME=V1,V2,...: train every value in one program "
                          "(vmapped like seeds; repeat the flag for a grid). Names: lr (all "
                          "four learning rates), " + ", ".join(_config.Config.sweepable())
                          + ".")
flags.DEFINE_bool("shard_envs", None, "Split each run's parallel envs over the devices the "
                  "runs leave free (default: when each device keeps >= 256 envs).")
flags.DEFINE_string("coordinator_address", None, "Multi-host: HOST:PORT of process 0 "
                    "(jax.distributed.initialize).")
flags.DEFINE_integer("num_processes", None, "Multi-host: number of processes.")
flags.DEFINE_integer("process_id", None, "Multi-host: this process's index, 0 .. N-1.")


def init_distributed() -> None:
    """``jax.distributed.initialize`` from the multi-host flags (all three or none).

    Raises ``ValueError`` naming the bad flag.
    """
    given = [FLAGS.coordinator_address is not None, FLAGS.num_processes is not None,
             FLAGS.process_id is not None]
    if not any(given):
        return
    if not all(given):
        raise ValueError("--coordinator_address, --num_processes and --process_id go together")
    if FLAGS.num_processes < 1:
        raise ValueError(f"--num_processes must be positive, got {FLAGS.num_processes}")
    if not 0 <= FLAGS.process_id < FLAGS.num_processes:
        raise ValueError(f"--process_id must be in [0, {FLAGS.num_processes}), "
                         f"got {FLAGS.process_id}")
    if FLAGS.num_processes > 1 and not FLAGS.out_dir:
        raise ValueError("several processes need a shared --out_dir")
    import jax
    jax.distributed.initialize(FLAGS.coordinator_address, num_processes=FLAGS.num_processes,
                               process_id=FLAGS.process_id)


def is_main() -> bool:
    from hyperjax.parallel import is_main as main_process
    return main_process()


def barrier(name: str) -> None:
    from hyperjax.parallel import barrier as meet
    meet(name)


def selected() -> tuple[list[str], list[str]]:
    """``(envs, algos)`` from the flags (the suite's where ``--suite`` is given and ``--env``
    / ``--algo`` are not). Raises ``ValueError`` naming a bad one."""
    from hyperjax.analysis.paper import PAPER_ALGOS, PAPER_TASKS
    from hyperjax import methods
    from hyperjax.envs import env_names
    env = FLAGS.env
    algo = FLAGS.algo
    if FLAGS.suite == "paper":
        env = env if FLAGS["env"].present else ",".join(PAPER_TASKS)
        algo = algo if FLAGS["algo"].present else ",".join(PAPER_ALGOS)
    return (parse_names(env, env_names(), "env"),
            parse_names(algo, list(methods.names()), "algo", allow_all=True,
                        all_names=list(PAPER_ALGOS)))


def suite_budget(env: str, scale: float) -> dict:
    """The paper's budget for ``env`` (the authors' `dmash/contexts/context.py`: 100k / 200k / 500k
    gradient steps, 5,000
    random steps, evaluation every 5,000 on 5 episodes per context: the authors'
    ``num_eval_episodes``) times ``scale``: the
    evaluation interval ``max(1, round(5000 scale))``, total steps the nearest multiple of it
    (at least one interval), random steps ``max(T, round(5000 scale))``."""
    from hyperjax import envs
    from hyperjax.envs import PAPER_BUDGET
    total = envs.task_info(env).paper_total_steps
    every = max(1, round(5000 * scale))
    return dict(total_steps=max(every, round(total * scale / every) * every),
                eval_every=every, eval_episodes=PAPER_BUDGET["eval_episodes"],
                learning_starts=max(envs.episode_length(env), round(5000 * scale)))


def build_config(env: str | None = None, algo: str | None = None):
    """Flags -> validated ``Config`` for one (env, algo) pair (default: the flags' only pair).

    Raises ``ValueError`` naming the bad flag.
    """
    from hyperjax.config import Config
    from hyperjax.envs import PAPER_BUDGET, task_info
    if env is None or algo is None:
        envs_, algos_ = selected()
        env, algo = env or envs_[0], algo or algos_[0]
    if not (math.isfinite(FLAGS.budget_scale) and FLAGS.budget_scale > 0):
        raise ValueError(f"budget_scale must be positive and finite, got {FLAGS.budget_scale}")
    if FLAGS.budget_scale != 1.0 and not FLAGS.suite:
        raise ValueError("--budget_scale scales a --suite's budgets; without --suite use "
                         "--total_steps")
    implied = []   # budget fields the flags did not give, taken from the paper's
    if FLAGS.suite and FLAGS.total_steps is None:
        budget = suite_budget(env, FLAGS.budget_scale)
    elif FLAGS.total_steps is None:  # jnp tasks: the CPU budget; MJX tasks: the paper's
        budget = task_info(env).default_budget()
    else:
        budget = dict(total_steps=FLAGS.total_steps, **PAPER_BUDGET)
        implied = [n for n in PAPER_BUDGET if getattr(FLAGS, n) is None]
    for name in ("eval_every", "learning_starts", "eval_episodes"):
        if getattr(FLAGS, name) is not None:
            budget[name] = getattr(FLAGS, name)
    if FLAGS.seeds is None or FLAGS.seeds <= 0:
        raise ValueError(f"seeds must be a positive integer, got {FLAGS.seeds}")
    for name in ("keep_checkpoints", "diag_windows", "bootstrap_reps"):
        if getattr(FLAGS, name) <= 0:
            raise ValueError(f"{name} must be a positive integer, got {getattr(FLAGS, name)}")
    rest = {name: getattr(FLAGS, name) for name in CONFIG_FLAGS if name not in budget}
    try:
        return Config(env=env, algo=algo, **budget, **rest).resolved()
    except ValueError as e:
        named = [n for n in implied if n in str(e)]
        if not named:
            raise
        raise ValueError(f"{e} ({', '.join(f'{n}={budget[n]}' for n in named)} is the paper's, "
                         f"which --total_steps keeps: give "
                         f"{' and '.join('--' + n for n in named)} too)") from None


def load_context_sets(cfg):
    """The run's context sets: the recipe's, with splits replaced from ``--context_file``.

    Raises:
      ValueError: unreadable file, unknown split names, or malformed sets (names the factor).
    """
    from hyperjax import envs
    sets = envs.context_sets(cfg.env, FLAGS.seed)  # ODE-k (k > 2): drawn with the first seed
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


def context_record(cfg, sets) -> dict:
    """The record's context fields: ``context_file`` (the path, or None) and, when the sets
    are not the task's own, ``context_sets`` (``hyperjax.rundir.context_fields``): a resume
    after the file's contents changed is refused (the path alone would pass) and
    ``hyperjax.load_policy`` rebuilds the run's own sets."""
    from hyperjax.rundir import context_fields
    return {"context_file": FLAGS.context_file, **context_fields(cfg, FLAGS.seed, sets)}


def check_memory_before_overwrite(cfg, sets, sweep) -> None:
    """``--overwrite`` deletes the old run: first refuse a new one that cannot fit (the check
    ``run.train_run`` makes again later), so nothing is deleted for a run that never starts."""
    if not FLAGS.overwrite or FLAGS.skip_memory_check:
        return
    from hyperjax.config import sweep_points
    from hyperjax.guards import check_fits
    from hyperjax.parallel import sweep_hparams
    from hyperjax.train import make_program
    points = sweep_points(sweep)
    check_fits(make_program(cfg, sets, tuple(points[0])), len(points) * FLAGS.seeds,
               sweep_hparams(points, FLAGS.seeds))


def prepare_run_dir(default_name: str) -> tuple[str, bool]:
    """Returns ``(run_dir, resuming)`` (``hyperjax.rundir.prepare_run_dir``: refuses to overwrite
    silently)."""
    from hyperjax.rundir import prepare_run_dir as prepare
    run_dir = FLAGS.out_dir or os.path.join(
        "runs", f"{default_name}-{time.strftime('%Y%m%d-%H%M%S')}")
    return prepare(run_dir, FLAGS.resume, FLAGS.overwrite)


def main(argv):
    refuse_positional(argv)
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
    try:
        if FLAGS.suite == "paper" and not FLAGS["seeds"].present:
            from hyperjax.analysis.paper import PAPER_N_SEEDS
            FLAGS.seeds = PAPER_N_SEEDS
        init_distributed()  # before anything touches a JAX backend (the cache's probe does)
        from hyperjax.utils import enable_compilation_cache
        enable_compilation_cache(quiet=True)  # the CLI's choice: hyperjax.run leaves it alone
        from hyperjax.config import parse_sweep
        from hyperjax.parallel import check_seeds
        sweep = parse_sweep(FLAGS.sweep)
        check_seeds(FLAGS.seed, FLAGS.seeds)
        from hyperjax.train import check_layout
        env_list, algo_list = selected()
        plan = []  # (cfg, sets) for every pair, all validated before anything compiles
        for env in env_list:
            for algo in algo_list:
                cfg = build_config(env, algo)
                if "mask_rate" in sweep and not cfg.inferred:
                    raise ValueError(f"--sweep mask_rate: {algo!r} has no context encoder")
                sets = load_context_sets(cfg)
                check_layout(cfg, cfg.method().training_contexts(
                    sets.train, sets.train[0]).shape[0])
                check_memory_before_overwrite(cfg, sets, sweep)
                plan.append((cfg, sets))
        single = len(plan) == 1
        top, resuming = prepare_run_dir(
            f"{env_list[0]}-{algo_list[0]}" if single else "study")
        runs = []
        for cfg, sets in plan:
            run_dir = top if single else os.path.join(top, cfg.env, cfg.algo)
            path = os.path.join(run_dir, "config.json")
            sub_resume = resuming and os.path.exists(path)
            if resuming and single and not sub_resume:
                raise ValueError(f"--resume: {run_dir} has no config.json")
            if sub_resume:
                _check_same(read_json(path), run_config(cfg, sets))
            runs.append((cfg, sets, run_dir, sub_resume))
    except ValueError as e:
        _fail(str(e))
    except OSError as e:    # the run directory cannot be made or locked (read-only, full)
        _fail(os_error_line(e))
    for cfg, sets, run_dir, sub_resume in runs:
        train_pair(cfg, sets, run_dir, sub_resume, sweep)
    if FLAGS.report and sweep:
        if is_main():
            print("--sweep: no report.md (it compares methods); summary.json has every "
                  "point", flush=True)
    elif FLAGS.report and is_main():
        try:
            write_report(top)
        except OSError as e:   # the runs are written; only the report is missing
            _fail(f"{os_error_line(e, top)} (the runs are complete; write the report later with "
                  f"python -m experiments.report {top})")
    barrier("done")


def write_report(top) -> None:
    """The study's report.md, study.json and plots/ in ``top``, from the run directories it
    just wrote: ``hyperjax.analysis.collect``, the code ``python -m experiments.report``
    runs."""
    import jax

    from hyperjax.analysis import collect
    from hyperjax.analysis.study import write_study
    runs, _ = collect.load([top], strict=True)
    # one invocation's runs; a study resumed under a newer commit is pooled and says so
    study = collect.merge(runs, allow_mixed=True, device=jax.devices()[0].device_kind)
    study.meta["seed"] = FLAGS.seed
    t0 = time.time()
    path = write_study(study, top, FLAGS.bootstrap_reps)
    print(f"report: {path} ({time.time() - t0:.0f} s)", flush=True)


def run_config(cfg, sets) -> dict:
    """What defines a run: the resolved Config plus the seeds and the context fields
    (``context_record``; diagnostics flags excluded: they do not change training)."""
    from hyperjax.rundir import run_record
    return run_record(cfg, FLAGS.seeds, FLAGS.seed, FLAGS.sweep, **context_record(cfg, sets))


def _check_same(saved: dict, current: dict) -> None:
    from hyperjax.checkpoint import config_diff
    k = config_diff(saved, current)
    if k is not None:
        raise ValueError(f"--resume: the run's config differs in {k!r}: the run has "
                         f"{saved.get(k)!r}, these flags give {current.get(k)!r}")


def train_pair(cfg, sets, run_dir: str, resuming: bool, sweep: dict | None = None):
    """One (env, algo) pair through ``hyperjax.run.train_run`` with the flags' settings;
    returns ``(cfg, rows, final_scores, diagnostics or None)``. Errors end the process with
    one line: exit 2 for bad input or checkpoints, 1 for a non-finite run."""
    from hyperjax import checkpoint, run
    from hyperjax.guards import NonFiniteError
    try:
        out = run.train_run(
            cfg, run_dir, sets=sets, seeds=FLAGS.seeds, seed=FLAGS.seed, sweep=FLAGS.sweep,
            resume=resuming, keep_checkpoints=FLAGS.keep_checkpoints,
            random_baseline=FLAGS.random_baseline, diagnostics=FLAGS.diagnostics,
            diag_windows=FLAGS.diag_windows, diag_encoder_training=FLAGS.diag_encoder_training,
            shard_envs=FLAGS.shard_envs, skip_memory_check=FLAGS.skip_memory_check,
            extra_record={"context_file": FLAGS.context_file},
            log=lambda msg: print(msg, flush=True))
    except NonFiniteError as e:
        _fail(str(e), code=1)
    except (ValueError, checkpoint.CheckpointError) as e:
        _fail(str(e))
    except OSError as e:   # a full disk, a file size limit: the last checkpoint is kept
        _fail(f"{os_error_line(e, run_dir)}; the last written checkpoint stays (--resume "
              f"continues)")
    return out.config, out.rows, out.scores, out.diagnostics


if __name__ == "__main__":
    app.run(main, flags_parser=absl_flags_parser(FLAGS))
