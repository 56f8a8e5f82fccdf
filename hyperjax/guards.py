"""What stops a run before it wastes a machine or reports wrongly: the memory check before
compiling (``check_fits``) and the non-finite guard after every interval (``non_finite``,
``DivergenceGuard``, ``NonFiniteError``), shared by the AIB driver (``hyperjax.run``) and
HyPoGen's pipeline."""
from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from hyperjax import checkpoint
from hyperjax.agents.agent import GROUPS
from hyperjax.parallel import abstract_state, to_host
from hyperjax.train import SPLITS, Program

def state_bytes(prog: Program, n_runs: int, hparams=None) -> int:
    """Bytes of a run-batched ``TrainState`` (replay, parameters, optimiser states, env
    states), from shapes alone (``jax.eval_shape``: nothing is allocated or compiled)."""
    abstract = abstract_state(prog, n_runs, hparams)
    return int(sum(np.prod(x.shape, dtype=np.int64) * np.dtype(x.dtype).itemsize
                   for x in jax.tree.leaves(abstract)))


def available_bytes() -> int:
    """Memory the train state may take: the accelerators' limits summed (``memory_stats``),
    else the host's available physical memory."""
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


@jax.jit
def finite_params(params) -> jax.Array:
    """``bool[groups, n_runs]``: whether each ``AgentParams`` group (``agent.GROUPS`` order) is
    finite, per run (``params`` carry a leading run axis)."""
    rows = []
    for name in GROUPS:
        leaves = jax.tree.leaves(getattr(params, name))
        n = leaves[0].shape[0] if leaves else params.log_alpha.shape[0]
        ok = jnp.ones((n,), bool)
        for leaf in leaves:
            ok &= jnp.isfinite(leaf).reshape(leaf.shape[0], -1).all(-1)
        rows.append(ok)
    return jnp.stack(rows)


def non_finite(state, rows: list[dict], updates: bool) -> dict[int, str]:
    """``{run index: the first quantity that is not finite}`` after a segment (empty when all
    are finite): the segment's loss rows (``metric_rows``, ``len(SPLITS)`` rows per run in run
    order; only when it ran updates), then every parameter group of every run. The same
    answer on every process (the check reads global arrays)."""
    bad: dict[int, str] = {}
    if updates:
        for j, r in enumerate(rows):
            for k in ("q_loss", "actor_loss", "model_loss", "alpha"):
                if k in r and not np.isfinite(r[k]):
                    bad.setdefault(j // len(SPLITS), k)
    ok = to_host(finite_params(state.agent.params))
    for g, name in enumerate(GROUPS):
        for i in np.flatnonzero(~ok[g]):
            bad.setdefault(int(i), f"{name} parameters")
    return dict(sorted(bad.items()))


def _run_key(d: dict) -> tuple:
    """One run of a batch, from a diverged record, a ``_run`` or a metric row alike."""
    return d["seed"], repr(sorted(d.get("hparams", {}).items()))


class DivergenceGuard:
    """The non-finite guard of one run batch (``seeds`` x sweep ``points``, run order of
    ``hyperjax.run``). Without a sweep a non-finite run stops the batch (``NonFiniteError``):
    a seed that diverges is a fault to look at. Under a sweep a diverging point is an outcome:
    it is recorded (``diverged``: quantity, step, seed, hparams), said, and the other points
    train on (runs are independent under ``vmap``; its rows are then NaN); only when every
    run has diverged does the batch stop."""

    def __init__(self, seed: int, n_seeds: int, points: list[dict],
                 diverged: list[dict] | None = None):
        self.seed, self.n_seeds, self.points = seed, n_seeds, points
        self.swept = bool(points and points[0])
        self.diverged = list(diverged or [])

    def _run(self, i: int) -> dict:
        hp = self.points[i // self.n_seeds] if self.swept else {}
        return dict(seed=self.seed + i % self.n_seeds, **({"hparams": hp} if hp else {}))

    def _name(self, i: int) -> str:
        run = self._run(i)
        return f"seed {run['seed']}" + (" of sweep point " + ", ".join(
            f"{k}={v:g}" for k, v in run["hparams"].items()) if "hparams" in run else "")

    def check(self, state, rows: list[dict], updates: bool, step: int, ckpt_dir: str,
              eval_every: int) -> list[str]:
        """After the segment evaluated at ``step``: the lines to say about runs that diverged
        in it (sweeps), else nothing.

        Raises:
          NonFiniteError: a run diverged without a sweep, or every run of a sweep has.
        """
        known = {_run_key(d) for d in self.diverged}
        new = {i: q for i, q in non_finite(state, rows, updates).items()
               if _run_key(self._run(i)) not in known}
        if not new:
            return []
        n_runs = len(self.points) * self.n_seeds
        if not self.swept or len(known) + len(new) == n_runs:
            i, q = next(iter(new.items()))
            kept = kept_checkpoint(ckpt_dir, eval_every)
            every = " (every run of the sweep has diverged)" if self.swept else ""
            raise NonFiniteError(f"non-finite {q} at step {step} in {self._name(i)}{every}; "
                                 f"stopping: {kept}")
        said = []
        for i, q in new.items():
            self.diverged.append(dict(quantity=q, step=step, **self._run(i)))
            said.append(f"non-finite {q} at step {step} in {self._name(i)}: that run "
                        f"diverged (its AER is NaN from here; summary.json lists it); the "
                        f"sweep's other runs continue")
        return said

    def mark(self, rows: list[dict]) -> list[dict]:
        """``rows`` (``metric_rows``) with the AER and returns of every diverged run set to NaN:
        a diverged run's episodes may still count (a NaN state never reaches DI's goal, so its
        AER read 0), and a score must not stand for a run that no longer trains."""
        gone = {_run_key(d) for d in self.diverged}
        for r in rows:
            if _run_key(r) in gone:
                r["aer"] = float("nan")
                r["returns"] = [float("nan")] * len(r["returns"])
        return rows


class NonFiniteError(RuntimeError):
    """A run produced a non-finite loss or parameter; the message says which, where, and which
    checkpoint is kept (``train_run(..., resume=True)`` continues from it)."""


def kept_checkpoint(ckpt_dir: str, eval_every: int) -> str:
    """What a ``NonFiniteError`` says is kept: the newest checkpoint in ``ckpt_dir`` (segments
    done, the last evaluation it holds), or that none was written."""
    n = checkpoint.latest_step(ckpt_dir)
    if n and os.path.isdir(os.path.join(ckpt_dir, str(n))):
        return (f"the last finite checkpoint, {os.path.join(ckpt_dir, str(n))} ({n} "
                f"segment(s), up to the evaluation at step {(n - 1) * eval_every}), is kept; "
                f"--resume continues from it")
    return "no checkpoint had been written before it (nothing to resume)"
