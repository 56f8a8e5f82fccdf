"""Driving a run from the host: runs (seeds x sweep points) vmapped and sharded over devices,
one compiled segment per evaluation interval, metrics rows, the final AER table, and the run
driver ``train_run`` (run directory, checkpoints after every interval, resume, the non-finite
guard, summaries, the random baseline, a ``progress_fn``) that the CLI
``python -m experiments.aib`` only calls with its flags.

``run_segments`` calls ``jit(vmap(segment))`` once per evaluation interval (the same
computation as ``make_train``'s single ``lax.scan``; a test checks they are equal) so that a
driver can report progress and save between intervals.

Runs: a program trains ``n_runs = n_points * n_seeds`` independent runs along one leading
axis, point-major: run ``r`` is sweep point ``r // n_seeds`` with seed ``seed + r % n_seeds``
(every point sees the same seeds). With several devices that axis is sharded over a 1-D
``Mesh`` (axis ``"seed"``, ``NamedSharding``; no ``pmap``): each device trains its block of
runs and no data moves between devices during training. Devices left over can split each
run's parallel envs (``"env"`` axis: the replay's env rows, and through it the env steps). Under
``jax.distributed`` the mesh
spans every process's devices, so each process trains its own block of runs; ``to_host``
gathers results to every process.
"""
from __future__ import annotations

import itertools
import time
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from hyperjax.analysis.stats import final_scores  # noqa: F401  (re-exported)
from hyperjax.config import check_hparam
from hyperjax.train import SPLITS, Program
from hyperjax.utils import code_identity, write_json_atomic, write_text_atomic

RUN_AXIS = "seed"
ENV_AXIS = "env"
MIN_ENVS_PER_DEVICE = 256

TRAIN_KEYS = ("train_return", "q_loss", "actor_loss", "alpha", "entropy", "model_loss")


def seed_keys(seed: int, n: int, n_points: int = 1) -> jax.Array:
    """``uint32[n_points * n, 2]`` keys: seeds ``seed .. seed+n-1`` (seed i's run =
    ``PRNGKey(seed+i)``), repeated for each of ``n_points`` sweep points."""
    if int(n) < 1 or int(n_points) < 1:
        raise ValueError(f"seed_keys: need at least one seed and one sweep point, got "
                         f"n={n}, n_points={n_points}")
    keys = jnp.stack([jax.random.PRNGKey(seed + i) for i in range(n)])
    return jnp.tile(keys, (n_points, 1))


def parse_sweep(specs: list[str]) -> dict[str, list[float]]:
    """``["q_lr=1e-3,3e-4", "tau=0.01"]`` -> ``{"q_lr": [1e-3, 3e-4], "tau": [0.01]}``.

    ``lr`` stands for all four learning rates (q, actor, alpha, model) set to one value.

    Raises:
      ValueError: malformed item, unknown or repeated name, empty or non-numeric values.
    """
    from hyperjax.agents.agent import HParams
    SWEEPABLE = HParams.names()
    out: dict[str, list[float]] = {}
    for spec in specs:
        name, sep, values = spec.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ValueError(f"--sweep {spec!r}: expected NAME=V1,V2,...")
        if name not in SWEEPABLE and name != "lr":
            raise ValueError(f"--sweep: cannot sweep {name!r}; sweepable: lr (all four "
                             f"learning rates), {', '.join(SWEEPABLE)}")
        try:
            vals = [float(v) for v in values.split(",") if v.strip()]
        except ValueError:
            raise ValueError(f"--sweep {spec!r}: values must be numbers") from None
        if not vals:
            raise ValueError(f"--sweep {spec!r}: no values")
        for v in vals:  # the same rule as the flags and Config (config.check_hparam)
            try:
                check_hparam("q_lr" if name == "lr" else name, v)
            except ValueError as e:
                raise ValueError(f"--sweep {spec!r}: {e}") from None
        if name in out:
            raise ValueError(f"--sweep: {name!r} given twice")
        out[name] = vals
    if "lr" in out and {"q_lr", "actor_lr", "alpha_lr", "model_lr"} & set(out):
        raise ValueError("--sweep: 'lr' sets every learning rate; do not combine it with "
                         "q_lr / actor_lr / alpha_lr / model_lr")
    return out


def sweep_points(sweep: dict[str, list[float]]) -> list[dict[str, float]]:
    """The Cartesian product of a sweep, first name slowest: ``[{name: value}, ...]``
    (``lr`` expanded to the four learning rates). ``{}`` gives ``[{}]``."""
    names = list(sweep)
    points = []
    for combo in itertools.product(*(sweep[n] for n in names)):
        p = {}
        for n, v in zip(names, combo):
            p.update({k: v for k in ("q_lr", "actor_lr", "alpha_lr", "model_lr")}
                     if n == "lr" else {n: v})
        points.append(p)
    return points


def sweep_hparams(points: list[dict[str, float]], n_seeds: int) -> dict | None:
    """``{name: float32[n_points * n_seeds]}`` in run order, or None for no sweep."""
    if not points or not points[0]:
        return None
    return {k: jnp.asarray(np.repeat([p[k] for p in points], n_seeds), jnp.float32)
            for k in points[0]}


def run_mesh(n_runs: int, devices=None, n_envs: int | None = None,
             shard_envs: bool | None = None) -> Mesh:
    """A 2-D mesh ``("seed", "env")`` over the devices that share the runs (and their envs).

    The run axis gets the largest device count that divides ``n_runs`` (all of ``devices``,
    default ``jax.devices()``: every process's, when it divides). Devices left over go to the
    parallel-env axis (largest count dividing ``n_envs``) when ``shard_envs`` is True, or, for
    None, when each device would still step at least ``MIN_ENVS_PER_DEVICE`` envs (smaller
    env batches are not worth the cross-device traffic of the update's sample). The CLI says
    how many devices it uses. With several processes every process must hold whole runs.

    Raises:
      ValueError: several processes and ``n_runs`` not a multiple of the device count.
    """
    devices = list(jax.devices() if devices is None else devices)
    if n_runs % len(devices) and jax.process_count() > 1:
        raise ValueError(f"{n_runs} run(s) cannot be split evenly over the {len(devices)} "
                         f"devices of {jax.process_count()} processes: use a multiple of "
                         f"{len(devices)} seeds x sweep points")
    d = max(k for k in range(1, len(devices) + 1) if n_runs % k == 0)
    e = 1
    if n_envs and shard_envs is not False:
        e = max(k for k in range(1, len(devices) // d + 1) if n_envs % k == 0)
        if shard_envs is None:
            while e > 1 and n_envs // e < MIN_ENVS_PER_DEVICE:
                e = max(k for k in range(1, e) if n_envs % k == 0)
    return Mesh(np.array(devices[:d * e]).reshape(d, e), (RUN_AXIS, ENV_AXIS))


def to_host(tree):
    """Every leaf as a NumPy array holding all runs, on every process (``process_allgather``
    of the blocks other processes hold; a plain copy in one process)."""
    if jax.process_count() == 1:
        return jax.tree.map(np.asarray, tree)
    from jax.experimental import multihost_utils
    return multihost_utils.process_allgather(tree, tiled=True)


def state_shardings(abstract, mesh: Mesh | None):
    """``NamedSharding`` per leaf of a run-batched pytree: the leading run axis over
    ``"seed"``, and for a ``TrainState``'s replay (``[runs, envs, ...]``) the env rows over
    ``"env"``; None without a mesh (or with one device)."""
    if mesh is None or mesh.size == 1:
        return None
    run = NamedSharding(mesh, PartitionSpec(RUN_AXIS))
    out = jax.tree.map(lambda _: run, abstract)
    if mesh.shape[ENV_AXIS] > 1 and hasattr(abstract, "replay"):
        env = NamedSharding(mesh, PartitionSpec(RUN_AXIS, ENV_AXIS))
        out = out.replace(replay=jax.tree.map(lambda a: env if a.ndim >= 2 else run,
                                              abstract.replay))
    return out


def abstract_state(prog: Program, n_runs: int, hparams=None, mesh: Mesh | None = None):
    """``jax.ShapeDtypeStruct`` pytree of a run-batched ``TrainState`` (with shardings when
    ``mesh`` has several devices): what checkpoints are restored into."""
    keys = jax.ShapeDtypeStruct((n_runs, 2), jnp.uint32)  # seed_keys' shape; no values needed
    args, axes = ((keys,), 0) if hparams is None else ((keys, hparams), (0, 0))
    abstract = jax.eval_shape(jax.vmap(prog.init, in_axes=axes), *args)
    shardings = state_shardings(abstract, mesh)
    if shardings is None:
        return abstract
    return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                        abstract, shardings)


def over_seeds(fn: Callable, n_seeds: int, in_axes=0) -> Callable:
    """``jax.vmap(fn, in_axes)`` for several seeds; for one seed, ``fn`` on the squeezed state
    with the seed axis added back (same values; XLA:CPU runs the unbatched matmuls ~20 %
    faster than batch-1 ones)."""
    if n_seeds > 1:
        return jax.vmap(fn, in_axes=in_axes)
    axes = in_axes if isinstance(in_axes, tuple) else (in_axes,)

    def one(*args):
        args = [jax.tree.map(lambda x: x[0], a) if ax == 0 else a for a, ax in zip(args, axes)]
        return jax.tree.map(lambda x: x[None], fn(*args))

    return one


def compile_program(prog: Program, n_runs: int, seed: int = 0, hparams: dict | None = None,
                    mesh: Mesh | None = None):
    """Lowers and compiles ``init`` and ``segment`` over ``n_runs`` runs (``over_seeds``).

    Args:
      prog: the ``Program``.
      n_runs: runs on the leading axis (seeds x sweep points).
      seed: unused for shapes; kept for callers.
      hparams: ``{name: float32[n_runs]}`` for a sweep (``prog`` built with those names).
      mesh: a ``run_mesh``; with several devices the run axis of the state and the metrics
        is sharded over it, each device computing its runs.
    Returns:
      ``(init_fn, segment_fn, compile_seconds)``: ``init_fn(keys uint32[n_runs, 2]
      [, hparams])`` and ``segment_fn(state, seg_idx int32[]) -> (state, metrics)``.
    """
    t0 = time.time()
    keys = seed_keys(seed, n_runs)
    args, axes = ((keys,), 0) if hparams is None else ((keys, hparams), (0, 0))
    abstract = abstract_state(prog, n_runs, hparams)
    shardings = state_shardings(abstract, mesh)
    init_fn = over_seeds(prog.init, n_runs, axes)
    seg_fn = over_seeds(prog.segment, n_runs, (0, None))
    if shardings is None:
        init = jax.jit(init_fn).lower(*args).compile()
        seg = jax.jit(seg_fn, donate_argnums=0)
    else:
        replicated = NamedSharding(mesh, PartitionSpec())
        init = jax.jit(init_fn, in_shardings=replicated, out_shardings=shardings)
        init = init.lower(*args).compile()
        metrics = jax.eval_shape(jax.vmap(prog.segment, (0, None)), abstract, jnp.int32(0))[1]
        seg = jax.jit(seg_fn, donate_argnums=0, in_shardings=(shardings, replicated),
                      out_shardings=(shardings, state_shardings(metrics, mesh)))
    seg = seg.lower(abstract, jnp.int32(0)).compile()
    return init, seg, time.time() - t0


def metric_rows(metrics: dict, seed: int, points: list[dict] | None = None) -> list[dict]:
    """One row per (run, split, evaluation) from a segment's metrics (NumPy or ``to_host``
    output). With a sweep (``points``, run order of the module doc) rows carry ``hparams``."""
    rows = []
    m = jax.tree.map(np.asarray, metrics)
    n_runs = m["aer"].shape[0]
    n_seeds = n_runs // len(points) if points else n_runs
    for s in range(n_runs):
        train = {k: float(m[k][s]) for k in TRAIN_KEYS if k in m}
        extra = dict(hparams=points[s // n_seeds]) if points and points[0] else {}
        for j, split in enumerate(SPLITS):
            rows.append(dict(seed=seed + s % n_seeds, step=int(np.ravel(m["step"])[0]),
                             split=split, aer=float(m["aer"][s, j]),
                             returns=[round(float(x), 4) for x in m["eval_return"][s, j]],
                             **extra, **train))
    return rows


def rows_by_point(rows: list[dict]) -> list[tuple[dict, list[dict]]]:
    """``[(hparams, rows), ...]`` in first-seen order (one entry ``({}, rows)`` without a
    sweep)."""
    groups: dict[str, tuple[dict, list]] = {}
    for r in rows:
        hp = r.get("hparams", {})
        groups.setdefault(repr(sorted(hp.items())), (hp, []))[1].append(r)
    return list(groups.values()) or [({}, [])]


def format_table(scores: dict, algo: str, env: str, n_seeds: int) -> str:
    lines = [f"AER ({env}, {algo}, {n_seeds} seed(s); per seed the max of the last two "
             "evaluations)", f"{'split':<10} {'mean':>9} {'std':>9}"]
    for split, (mean, std, _) in scores.items():
        lines.append(f"{split:<10} {mean:>9.2f} {std:>9.2f}")
    return "\n".join(lines)


def run_segments(prog: Program, state, seg_fn: Callable, start: int, seed: int,
                 on_segment: Callable | None = None, points: list[dict] | None = None):
    """Runs segments ``start .. n_segments-1``; ``on_segment(i, state, rows, seconds)``
    (rows of every run, on every process)."""
    for i in range(start, prog.n_segments):
        t0 = time.time()
        state, metrics = seg_fn(state, jnp.int32(i))
        rows = metric_rows(to_host(metrics), seed, points)
        if on_segment is not None:
            on_segment(i, state, rows, time.time() - t0)
    return state


def state_bytes(prog: Program, n_runs: int, hparams=None) -> int:
    """Bytes of a run-batched ``TrainState`` (replay, parameters, optimiser states, env
    states), from shapes alone (``jax.eval_shape``: nothing is allocated or compiled)."""
    abstract = abstract_state(prog, n_runs, hparams)
    return int(sum(np.prod(x.shape, dtype=np.int64) * np.dtype(x.dtype).itemsize
                   for x in jax.tree.leaves(abstract)))


def available_bytes() -> int:
    """Memory the train state may take: the accelerators' limits summed (``memory_stats``),
    else the host's available physical memory."""
    import os
    devs = jax.devices()
    if devs[0].platform != "cpu":
        try:
            return int(sum(d.memory_stats()["bytes_limit"] for d in devs))
        except Exception:  # noqa: BLE001 - no stats on this backend: use the host's
            pass
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))


def check_fits(prog: Program, n_runs: int, hparams=None) -> int:
    """Raises ``ValueError`` (one line, with both figures) when the train state alone would
    not fit in ``available_bytes()``; returns the estimate. The compiled step needs more
    (activations, gradients), so this refuses only what cannot possibly run."""
    need, have = state_bytes(prog, n_runs, hparams), available_bytes()
    if need > have:
        raise ValueError(f"the train state of {n_runs} run(s) needs {need / 2**30:.1f} GiB "
                         f"(replay, parameters, optimiser states) but {have / 2**30:.1f} GiB "
                         f"is available: use fewer --seeds / --num_envs or a smaller "
                         f"--buffer_size (--skip_memory_check to try anyway)")
    return need


def lock_run_dir(run_dir: str):
    """An exclusive lock on ``run_dir`` for this process's life: ``flock`` on a hidden file
    beside it (``.NAME.lock``, holding the pid), released by the OS when the process exits,
    crash or not (a stale file is harmless). Keep the returned file object open.

    Raises:
      ValueError: another process holds it (the message names its pid), or the parent
        directory is not writable.
    """
    import fcntl
    import os
    run_dir = os.path.abspath(run_dir)
    parent, name = os.path.split(run_dir)
    try:
        os.makedirs(parent, exist_ok=True)
        f = open(os.path.join(parent, f".{name}.lock"), "a+")
    except OSError as e:
        raise ValueError(f"output directory {run_dir} is not writable ({e.strerror})") from None
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.seek(0)
        holder = f.read().strip() or "unknown"
        f.close()
        raise ValueError(f"run directory {run_dir} is in use by another run (pid {holder}); "
                         f"wait for it to end or choose another --out_dir") from None
    f.seek(0)
    f.truncate()
    f.write(f"{os.getpid()}\n")
    f.flush()
    return f


@jax.jit
def finite_params(params) -> jax.Array:
    """``bool[groups, n_runs]``: whether each ``AgentParams`` group (``agent.GROUPS`` order) is
    finite, per run (``params`` carry a leading run axis)."""
    from hyperjax.agents.agent import GROUPS
    rows = []
    for name in GROUPS:
        leaves = jax.tree.leaves(getattr(params, name))
        n = leaves[0].shape[0] if leaves else params.log_alpha.shape[0]
        ok = jnp.ones((n,), bool)
        for leaf in leaves:
            ok &= jnp.isfinite(leaf).reshape(leaf.shape[0], -1).all(-1)
        rows.append(ok)
    return jnp.stack(rows)


def non_finite(state, rows: list[dict], updates: bool, seed: int, n_seeds: int):
    """The first ``(quantity, seed)`` that is not finite after a segment, or None: the
    segment's loss rows (``metric_rows``; only when it ran updates), then every parameter
    group of every run. The same answer on every process (the check reads global arrays)."""
    import numpy as np

    from hyperjax.agents.agent import GROUPS
    if updates:
        for r in rows:
            for k in ("q_loss", "actor_loss", "model_loss", "alpha"):
                if k in r and not np.isfinite(r[k]):
                    return k, r["seed"]
    ok = to_host(finite_params(state.agent.params))
    for g, name in enumerate(GROUPS):
        if not ok[g].all():
            return f"{name} parameters", seed + int(np.flatnonzero(~ok[g])[0]) % n_seeds
    return None


# --- the run driver: one (task, method) pair over seeds x sweep points, resumable ---------------

class NonFiniteError(RuntimeError):
    """A run produced a non-finite loss or parameter; the message says which, where, and which
    checkpoint is kept (``train_run(..., resume=True)`` continues from it)."""


class RunResult(NamedTuple):
    """What ``train_run`` returns: the resolved ``Config``, every metrics row (``metric_rows``),
    the final AER per split (``final_scores``; the first point's under a sweep), the z
    diagnostics (inferred methods, else None), the final run-batched ``TrainState`` (None
    when a finished run was read back) and ``summary`` (what ``summary.json`` holds)."""

    config: object
    rows: list
    scores: dict
    diagnostics: dict | None
    state: object
    summary: dict


def is_main() -> bool:
    """Process 0: the only one that prints and writes files other than checkpoints."""
    return jax.process_index() == 0


def barrier(name: str) -> None:
    """All processes meet here (no-op with one process)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        multihost_utils.sync_global_devices(name)


def run_record(cfg, seeds: int = 1, seed: int = 0, sweep: list[str] | None = None,
               **extra) -> dict:
    """What defines a run, as ``config.json`` and every checkpoint store it: the resolved
    ``Config``, the seeds, ``sweep`` (``--sweep`` items) and ``extra`` fields (the CLI's
    ``context_file``). A resume must present the same record."""
    import dataclasses
    out = {**dataclasses.asdict(cfg), "seeds": seeds, "seed": seed, **extra}
    if sweep:
        out["sweep"] = list(sweep)
    return out


def prepare_run_dir(run_dir: str, resume: bool = False, overwrite: bool = False):
    """Locks ``run_dir`` for this process (``lock_run_dir``) and checks it against the mode:
    a non-empty directory needs ``resume`` (continue) or ``overwrite`` (delete it first).
    Returns ``(absolute run_dir, resuming)``.

    Raises:
      ValueError: both modes, a directory to resume that does not exist, one that exists
        without a mode, another process holding it, or a directory that is not writable.
    """
    import os
    import shutil
    run_dir = os.path.abspath(run_dir)
    if resume and overwrite:
        raise ValueError("--resume and --overwrite exclude each other")
    if is_main():  # one writer per run directory (multi-process runs: process 0 holds it)
        _HELD_LOCKS.append(lock_run_dir(run_dir))
    exists = os.path.isdir(run_dir) and bool(os.listdir(run_dir))
    barrier("run_dir_checked")  # every process has looked before process 0 changes it
    if exists and overwrite:
        if is_main():
            shutil.rmtree(run_dir)
        barrier("run_dir_cleared")
        exists = False
    if exists and not resume:
        raise ValueError(f"run directory {run_dir} exists: pass --resume to continue it or "
                         f"--overwrite to replace it")
    if resume and not exists:
        raise ValueError(f"--resume: run directory {run_dir} does not exist")
    if is_main():
        try:
            os.makedirs(run_dir, exist_ok=True)
            probe = os.path.join(run_dir, ".write_test")
            with open(probe, "w") as f:
                f.write("ok")
            os.remove(probe)
        except OSError as e:
            raise ValueError(f"output directory {run_dir} is not writable "
                             f"({e.strerror})") from None
    return run_dir, exists


_HELD_LOCKS: list = []   # run-directory locks, held until the process exits


def train_run(cfg, run_dir: str, *, sets=None, seeds: int = 1, seed: int = 0,
              sweep: list[str] | None = None, resume: bool = False, keep_checkpoints: int = 2,
              random_baseline: bool = True, diagnostics: bool = True,
              diag_windows: int = 256, diag_encoder_training: bool = True,
              shard_envs: bool | None = None, skip_memory_check: bool = False,
              extra_record: dict | None = None, log: Callable | None = print,
              progress_fn: Callable | None = None) -> RunResult:
    """Trains one (task, method) pair over ``seeds`` (x ``sweep`` points) into ``run_dir``,
    checkpointing the whole train state after every evaluation interval, so that a run killed
    at any point continues exactly with ``resume=True`` (from its newest checkpoint that
    restores). The runs are one compiled program sharded over every device (``run_mesh``).

    Writes ``config.json`` (``run_record``), ``metrics.jsonl`` (one row per seed, split and
    evaluation), ``checkpoints/N/`` (N segments done), ``summary.json`` (final AER per split,
    the uniform-random policy's on the same episodes, compile and training seconds) and, for
    inferred-context methods, ``diagnostics.json`` (the authors'
    `dmash/informativeness/metrics.py`). A finished run that is resumed
    is read back, not recompiled.

    Args:
      cfg: a ``Config`` (resolved here).
      run_dir: the run directory (created; a non-empty one needs ``resume``).
      sets: the context sets (default: the task's recipe).
      seeds, seed: seeds ``seed .. seed + seeds - 1``, vmapped.
      sweep: ``--sweep`` items (``["q_lr=1e-3,3e-4"]``), each point vmapped like a seed.
      resume: continue ``run_dir`` (its record must equal this run's).
      keep_checkpoints: checkpoints kept, newest first.
      random_baseline: measure the uniform-random policy's AER on the same episodes.
      diagnostics, diag_windows, diag_encoder_training: the z diagnostics (inferred methods,
        no sweep).
      shard_envs, skip_memory_check: as the CLI's flags.
      extra_record: more fields that define the run (stored and compared on resume).
      log: called with each progress line (None: silent); process 0 only.
      progress_fn: ``progress_fn(step, metrics)`` after every evaluation (brax's
        ``progress_fn``): ``step`` the gradient step evaluated, ``metrics`` a dict with
        ``aer`` ``{split: mean over runs}``, ``train_return``, ``steps_per_second``,
        ``seconds`` and ``rows`` (this evaluation's metric rows).
    Returns:
      ``RunResult``.
    Raises:
      ValueError: bad input or a run directory in the wrong state (one line, names it).
      hyperjax.checkpoint.CheckpointError: ``resume`` found no checkpoint that restores or
        one of another config.
      NonFiniteError: a non-finite loss or parameter (the last finite checkpoint is kept).
    """
    import json
    import os

    from hyperjax import checkpoint
    from hyperjax.train import make_program

    cfg = cfg.resolved()
    main_proc = is_main()
    say = (lambda msg: log(msg)) if (log is not None and main_proc) else (lambda msg: None)
    points = sweep_points(parse_sweep(list(sweep or [])))
    swept = bool(points[0])
    record_cfg = run_record(cfg, seeds, seed, sweep, **(extra_record or {}))
    hparams = sweep_hparams(points, seeds)
    n_runs = len(points) * seeds
    want_diag = diagnostics and cfg.inferred and not swept
    ckpt_dir = os.path.join(run_dir, "checkpoints")
    metrics_path = os.path.join(run_dir, "metrics.jsonl")
    diag_path = os.path.join(run_dir, "diagnostics.json")
    summary_path = os.path.join(run_dir, "summary.json")
    if main_proc:
        os.makedirs(run_dir, exist_ok=True)
    barrier("run_dir_made")
    config_path = os.path.join(run_dir, "config.json")
    if resume and os.path.exists(config_path):
        with open(config_path) as f:
            k = checkpoint.config_diff(json.load(f), record_cfg)
        if k is not None:
            with open(config_path) as f:
                saved = json.load(f)
            raise ValueError(f"--resume: the run's config differs in {k!r}: the run has "
                             f"{saved.get(k)!r}, this run gives {record_cfg.get(k)!r}")
    if resume and os.path.exists(summary_path) and (not want_diag or
                                                    os.path.exists(diag_path)):
        rows = _finished_rows(cfg, record_cfg, ckpt_dir, metrics_path, say)
        if rows is not None:
            say(f"{cfg.env}/{cfg.algo}: finished earlier; read from {run_dir}")
            diag = json.load(open(diag_path)) if want_diag else None
            summary = json.load(open(summary_path))
            return RunResult(cfg, rows, final_scores(rows_by_point(rows)[0][1]), diag, None,
                             summary)
    prog = make_program(cfg, sets, tuple(points[0]))
    mesh = run_mesh(n_runs, n_envs=cfg.num_envs or len(prog.sets.train),
                    shard_envs=shard_envs)
    what = f"{seeds} seed(s)" + (f" x {len(points)} sweep points" if swept else "")
    say(f"hyperjax: {cfg.algo} on {cfg.env}, {what}, {cfg.total_steps} steps, "
        f"eval every {cfg.eval_every}; run dir {run_dir}")
    if mesh.size < jax.device_count():
        say(f"note: {n_runs} run(s) split evenly over {mesh.size} of the "
            f"{jax.device_count()} devices (use a multiple of {jax.device_count()} runs, or "
            f"--shard_envs with --num_envs, to use all)")
    if not skip_memory_check:
        check_fits(prog, n_runs, hparams)
    init, seg, compile_s = compile_program(prog, n_runs, seed, hparams, mesh)
    say(f"compiled in {compile_s:.1f} s ({mesh.size} {jax.devices()[0].platform} device(s)"
        f"{f', envs over {mesh.shape[ENV_AXIS]}' if mesh.shape[ENV_AXIS] > 1 else ''}"
        f"{f', {jax.process_count()} processes' if jax.process_count() > 1 else ''})")

    keys = seed_keys(seed, seeds, len(points))
    start, rows = 0, []
    earlier_s = 0.0          # training seconds of earlier processes (None: not recorded)
    if resume and checkpoint.all_steps(ckpt_dir):
        abstract = abstract_state(prog, n_runs, hparams, mesh)
        state, rec, step, skipped = checkpoint.restore_good(
            ckpt_dir, abstract, lambda r: checkpoint.check_compatible(r, record_cfg))
        for s, why in skipped:
            say(f"checkpoint {s} skipped: it does not restore ({why}); using {step}")
        start, rows = int(rec["segments"]), rec["rows"]
        earlier_s = rec.get("train_seconds")  # absent from checkpoints written before it
        say(f"resumed from checkpoint after {start} segment(s) "
            f"(step {(start - 1) * cfg.eval_every})")
    else:
        if main_proc:
            write_json_atomic(config_path, record_cfg, indent=2, sort_keys=True)
            if os.path.exists(metrics_path):
                os.remove(metrics_path)
        state = init(keys) if hparams is None else init(keys, hparams)
    if main_proc:
        _write_rows(metrics_path, rows)

    t_start = time.time()

    def on_segment(i, state, seg_rows, seconds):
        step = i * cfg.eval_every
        first, stop = prog.segment_steps(i)
        updates = stop - max(first, cfg.learning_starts)
        bad = non_finite(state, seg_rows, updates, seed, seeds)
        if bad:
            n = checkpoint.latest_step(ckpt_dir)
            kept = (f"the last finite checkpoint, {os.path.join(ckpt_dir, str(n))} ({n} "
                    f"segment(s), up to the evaluation at step {(n - 1) * cfg.eval_every}), "
                    f"is kept; --resume continues from it"
                    if n and os.path.isdir(os.path.join(ckpt_dir, str(n))) else
                    "no checkpoint had been written before it (nothing to resume)")
            raise NonFiniteError(f"non-finite {bad[0]} at step {step} in seed {bad[1]}; "
                                 f"stopping: {kept}")
        rows.extend(seg_rows)
        total_s = None if earlier_s is None else earlier_s + time.time() - t_start
        checkpoint.save(ckpt_dir, i + 1, state,
                        {"config": record_cfg, "segments": i + 1, "rows": rows,
                         "train_seconds": total_s},
                        keep=keep_checkpoints)
        aer = {s: float(np.mean([r["aer"] for r in seg_rows if r["split"] == s]))
               for s in SPLITS}
        ret = np.array([r["train_return"] for r in seg_rows], float)  # NaN: no episode ended
        tr = float(ret[np.isfinite(ret)].mean()) if np.isfinite(ret).any() else float("nan")
        sps = (stop - first) / seconds
        if main_proc:
            _write_rows(metrics_path, rows)
        say(f"step {step:>7}/{cfg.total_steps}  AER train {aer['train']:7.2f}  "
            f"in {aer['eval_in']:7.2f}  out {aer['eval_out']:7.2f}  "
            f"train return {tr:7.2f}  {sps:6.1f} steps/s  [{time.time() - t_start:6.0f} s]")
        if progress_fn is not None:
            progress_fn(step, dict(aer=aer, train_return=tr, steps_per_second=sps,
                                   seconds=time.time() - t_start, rows=seg_rows))

    state = run_segments(prog, state, seg, start, seed, on_segment, points if swept else None)
    by_point = rows_by_point(rows)
    per_point = [dict(hparams=hp, aer=final_scores(r)) for hp, r in by_point]
    scores = per_point[0]["aer"]
    train_s = time.time() - t_start
    random_aer = None
    if random_baseline:
        ret = jax.jit(lambda k: prog.evaluate(None, k, random_actions=True))(
            jax.random.PRNGKey(seed + 2 * 10**6))
        random_aer = dict(zip(SPLITS, np.asarray(ret).mean(axis=(1, 2)).tolist()))
        say("uniform-random policy, same episodes: " + "  ".join(
            f"{k} {v:.2f}" for k, v in random_aer.items()))
    summary = {"compile_seconds": compile_s,
               "train_seconds": None if earlier_s is None else earlier_s + train_s,
               "train_seconds_this_process": train_s, "resumed_after_segments": start,
               "devices": mesh.size,
               "mesh": dict(mesh.shape), "processes": jax.process_count(),
               "device": jax.devices()[0].device_kind, "code": code_identity(), "aer": scores,
               **({"random_aer": random_aer} if random_aer else {}),
               **({"sweep": per_point} if swept else {})}
    if main_proc:
        write_json_atomic(summary_path, summary, indent=2)
    for p in per_point:
        if swept:
            say("sweep point " + ", ".join(f"{k}={v:g}" for k, v in p["hparams"].items()))
        say(format_table(p["aer"], cfg.algo, cfg.env, seeds))
    if diagnostics and cfg.inferred and swept:
        say("--sweep: no z diagnostics (they compare methods at their settings)")
    diag = None
    if want_diag:
        from hyperjax.analysis.study import run_diagnostics
        t0 = time.time()
        diag = run_diagnostics(prog, state, seeds, jax.random.PRNGKey(seed + 10**6),
                               diag_windows, diag_encoder_training)
        if main_proc:
            write_json_atomic(diag_path, diag)
        d = diag["splits"]["eval_out"]
        say(f"diagnostics ({time.time() - t0:.0f} s), eval-out, mean over seeds: "
            f"I(z;c) {np.mean([x['mi_context'] for x in d]):.3f} nats, variability "
            f"{np.mean([x['variability'] for x in d]):.3g}, RO "
            f"{np.mean([x['overlap'] for x in d]):.3f}")
    return RunResult(cfg, rows, scores, diag, state, summary)


def _finished_rows(cfg, record_cfg, ckpt_dir, metrics_path, say):
    """A finished run's rows, from its final checkpoint's record (which holds every row);
    ``metrics.jsonl`` is rewritten from it when missing, damaged or incomplete. None when no
    final checkpoint is readable (the run then resumes from its newest good checkpoint)."""
    import json

    from hyperjax import checkpoint
    n = cfg.total_steps // cfg.eval_every + 1
    record = checkpoint.read_record(ckpt_dir, n) if n in checkpoint.all_steps(ckpt_dir) \
        else None
    if record is None or int(record.get("segments", -1)) != n:
        return None
    checkpoint.check_compatible(record, record_cfg)
    rows = record["rows"]
    try:
        with open(metrics_path) as f:
            same = [json.loads(x) for x in f] == rows
    except (OSError, ValueError):
        same = False
    if not same:
        say(f"{metrics_path} was missing, damaged or incomplete: rewritten from checkpoint {n}")
        if is_main():
            _write_rows(metrics_path, rows)
    return rows


def _write_rows(path, rows):
    """``rows`` as JSON lines, written atomically (a temporary file renamed over ``path``)."""
    import json
    write_text_atomic(path, "".join(json.dumps(r) + "\n" for r in rows))
