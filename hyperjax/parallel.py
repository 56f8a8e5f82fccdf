"""Runs side by side: the run axis (seeds x sweep points) vmapped and sharded over devices,
compiled once, and brought back to the host.

Runs: a program trains ``n_runs = n_points * n_seeds`` independent runs along one leading
axis, point-major: run ``r`` is sweep point ``r // n_seeds`` with seed ``seed + r % n_seeds``
(every point sees the same seeds). With several devices that axis is sharded over a
``Mesh`` (axis ``"seed"``, ``NamedSharding``; no ``pmap``): each device trains its block of
runs and no data moves between devices during training. Devices left over can split each
run's parallel envs (``"env"`` axis: the replay's env rows, and through it the env steps).
Under ``jax.distributed`` the mesh spans every process's devices, so each process trains its
own block of runs; ``to_host`` gathers results to every process. brax keeps the same job in
``brax/training/pmap.py``.
"""
from __future__ import annotations

import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from hyperjax.train import Program

RUN_AXIS = "seed"


ENV_AXIS = "env"


MIN_ENVS_PER_DEVICE = 256


def check_seeds(seed: int, n: int) -> None:
    """Raises ``ValueError`` (one line) unless ``seed .. seed + n - 1`` are distinct
    ``PRNGKey`` seeds: integers in [0, 2**32) (a key keeps 32 bits without x64, so seed 2**32
    would silently be seed 0, and 2**63 overflows) and ``n >= 1``."""
    for name, v in (("seed", seed), ("seeds", n)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise ValueError(f"{name} must be an integer, got {v!r}")
    if n < 1:
        raise ValueError(f"seeds must be a positive integer, got {n}")
    if not 0 <= seed <= 2 ** 32 - n:
        raise ValueError(f"seed={seed} with seeds={n}: the seeds must lie in [0, 2**32) "
                         f"(a PRNGKey keeps 32 bits; seed 2**32 would be seed 0)")


def seed_keys(seed: int, n: int, n_points: int = 1) -> jax.Array:
    """``uint32[n_points * n, 2]`` keys: seeds ``seed .. seed+n-1`` (seed i's run =
    ``PRNGKey(seed+i)``), repeated for each of ``n_points`` sweep points.

    Raises:
      ValueError: no seed or sweep point, or seeds outside [0, 2**32) (``check_seeds``).
    """
    if int(n) < 1 or int(n_points) < 1:
        raise ValueError(f"seed_keys: need at least one seed and one sweep point, got "
                         f"n={n}, n_points={n_points}")
    check_seeds(seed, int(n))
    keys = jnp.stack([jax.random.PRNGKey(seed + i) for i in range(n)])
    return jnp.tile(keys, (n_points, 1))


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


def is_main() -> bool:
    """Process 0: the only one that prints and writes files other than checkpoints."""
    return jax.process_index() == 0


def barrier(name: str) -> None:
    """All processes meet here (no-op with one process)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        multihost_utils.sync_global_devices(name)
