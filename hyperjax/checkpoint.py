"""Orbax checkpoints of the whole train state (parameters, optimizer states, targets, log alpha,
replay buffer, RNG keys, counters) plus a JSON record (config, version, metrics rows so far).

Saves go through ``orbax.checkpoint.CheckpointManager``, whose saves are atomic (written to a
temporary directory and renamed when complete), so a kill during a save leaves the previous
checkpoint restorable. Steps are numbers of completed segments.

Orbax cannot write zero-size arrays (an MJX ``Data`` has some, e.g. ``act`` of a model without
activation states): such leaves are stored as zeros of the same shape with every 0 replaced
by 1, and restored as zero-size arrays from the abstract state.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import warnings

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

from hyperjax._version import __version__


class CheckpointError(ValueError):
    """A checkpoint that cannot be used for this run (other config or version, none found)."""


def _manager(directory: str, keep: int | None = None) -> ocp.CheckpointManager:
    opts = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                        enable_async_checkpointing=False)
    return ocp.CheckpointManager(os.path.abspath(directory), options=opts)


def _stand_in(shape) -> tuple[int, ...]:
    return tuple(d or 1 for d in shape)


def save(directory: str, step: int, state, record: dict, keep: int | None = None) -> None:
    """Saves ``state`` (any pytree of arrays) and ``record`` (JSON) as checkpoint ``step``.

    Keeps the newest ``keep`` checkpoints (all when None). Blocks until written. Checkpoints
    numbered ``step`` or above are deleted first: in a run directory they are an earlier
    process's (an unrestorable one a resume skipped), and orbax would otherwise skip the
    save silently.

    Raises:
      CheckpointError: orbax did not write it, or a write failed (a full disk, a file size
        limit, a read-only directory: the message names the OS error). Orbax writes into a
        temporary directory renamed when complete, so the checkpoints already there stay
        restorable; the error traces orbax's writer threads log are dropped (one line here).
    """
    state = jax.tree.map(
        lambda x: jnp.zeros(_stand_in(x.shape), x.dtype) if x.size == 0 else x, state)
    try:
        with _manager(directory, keep) as mgr, _quiet_orbax_threads():
            for old in [s for s in mgr.all_steps() if s >= step]:
                mgr.delete(old)     # left by an earlier process of this run: replaced
            saved = mgr.save(step, args=ocp.args.Composite(
                state=ocp.args.StandardSave(state),
                record=ocp.args.JsonSave({**record, "version": __version__})))
            mgr.wait_until_finished()
    except Exception as e:  # noqa: BLE001 - orbax wraps OS errors in ValueError and others
        # the writes left in flight are never awaited: Python warns about each at exit
        warnings.filterwarnings("ignore", message=r"coroutine '.*serializ.*' was never awaited",
                                category=RuntimeWarning)
        kept = [s for s in all_steps(directory) if s < step]
        raise CheckpointError(f"checkpoint {step} in {directory} could not be written "
                              f"({_os_reason(e)}); checkpoints kept: {kept or 'none'}") from e
    if not saved:
        raise CheckpointError(f"checkpoint {step} in {directory} was not written (orbax "
                              f"refused the step)")


class _DropWriteNoise(logging.Filter):
    """Drops what orbax's writer threads and asyncio log about a failed checkpoint write: one
    traceback per thread (``_SignalingThread``) and, when the writes' futures are collected,
    "exception was never retrieved" for each write still in flight. The same error reaches
    ``save``, which raises it as one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        return not ("_SignalingThread.run() raised" in msg
                    or ("exception was never retrieved" in msg
                        and "orbax-checkpoint-tmp" in msg))


_NOISE = _DropWriteNoise()


def _loop_closed(u) -> bool:
    return u.exc_type is RuntimeError and "Event loop is closed" in str(u.exc_value)


@contextlib.contextmanager
def _quiet_orbax_threads():
    """While a save runs: the write noise above (``absl`` and ``asyncio`` loggers), and the
    ``RuntimeError: Event loop is closed`` that tensorstore's callbacks report through
    ``sys.unraisablehook`` for every write still in flight after the first failed one
    (dozens of tracebacks for one error). After a failed save both filters stay (late
    callbacks and collected futures; only these messages are dropped), with one for Python's
    exit-time warning about the serialisation coroutines never awaited; after a good save the
    logging filters are removed and the previous hook is back."""
    loggers = [logging.getLogger("absl"), logging.getLogger("asyncio")]
    hook = sys.unraisablehook
    for logger in loggers:
        logger.addFilter(_NOISE)
    sys.unraisablehook = lambda u: None if _loop_closed(u) else hook(u)
    yield       # an exception propagates from here and leaves the filters in place
    for logger in loggers:
        logger.removeFilter(_NOISE)
    sys.unraisablehook = hook


def _os_reason(e: BaseException) -> str:
    """The OS error behind a failed write, e.g. ``No space left on device (errno 28)``:
    tensorstore's ``[os_error_code='N']`` or an ``OSError`` in the chain, else the first line."""
    cur = e
    while cur is not None:
        if isinstance(cur, OSError) and cur.errno:
            return f"{os.strerror(cur.errno)} (errno {cur.errno})"
        m = re.search(r"os_error_code='(\d+)'", str(cur))
        if m:
            return f"{os.strerror(int(m.group(1)))} (errno {m.group(1)})"
        cur = cur.__cause__ or cur.__context__
    return _one_line(e)


def latest_step(directory: str) -> int | None:
    if not os.path.isdir(directory):
        return None
    with _manager(directory) as mgr:
        return mgr.latest_step()


def all_steps(directory: str) -> list[int]:
    if not os.path.isdir(directory):
        return []
    with _manager(directory) as mgr:
        return sorted(mgr.all_steps())


def restore(directory: str, abstract_state, step: int | None = None):
    """Restores ``(state, record)`` of checkpoint ``step`` (default: the latest).

    ``abstract_state``: the pytree structure to restore into (``jax.eval_shape`` of ``init``);
    without it orbax would turn tuples into lists.

    Raises:
      CheckpointError (a ValueError): no checkpoint in ``directory``, or none at ``step``
        (the message lists the steps there are).
    """
    with _manager(directory) as mgr:
        if step is not None and step not in mgr.all_steps():
            raise CheckpointError(f"no checkpoint at step {step} in {directory}; there are "
                                  f"{sorted(mgr.all_steps()) or 'none'}")
        step = mgr.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(f"no checkpoint in {directory}")
        abstract = jax.tree.map(
            lambda a: jax.ShapeDtypeStruct(_stand_in(a.shape), a.dtype) if 0 in a.shape
            else ocp.utils.to_shape_dtype_struct(a), abstract_state)
        out = mgr.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract), record=ocp.args.JsonRestore()))
    state = jax.tree.map(lambda a, x: jnp.zeros(a.shape, a.dtype) if 0 in a.shape else x,
                         abstract_state, out["state"])
    return state, out["record"]


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:200] if text else ''}"


def restore_good(directory: str, abstract_state, check=None):
    """The newest checkpoint that restores and passes ``check(record)``, falling back to older
    ones when a newer one is damaged (a truncated or missing file, a deleted item).

    Returns:
      ``(state, record, step, skipped)``; ``skipped`` lists ``(step, one-line reason)`` for
      every newer checkpoint that did not restore.
    Raises:
      CheckpointError: none restores (the message gives each one's reason), or ``check``
        raised ``CheckpointError`` (an incompatible run: no fallback, every checkpoint of a
        run shares its config).
    """
    skipped = []
    for step in reversed(all_steps(directory)):
        try:
            state, record = restore(directory, abstract_state, step)
            if not isinstance(record, dict) or int(record.get("segments", -1)) != step:
                raise ValueError("its record does not describe this checkpoint")
        except Exception as e:  # noqa: BLE001 - any damage: try the previous checkpoint
            skipped.append((step, _one_line(e)))
            continue
        if check is not None:
            check(record)
        return state, record, step, skipped
    why = "; ".join(f"{s}: {r}" for s, r in skipped) or "none found"
    raise CheckpointError(f"no checkpoint in {directory} restores ({why})")


def read_record(directory: str, step: int | None = None) -> dict | None:
    """The JSON record of checkpoint ``step`` (default: the newest readable), or None."""
    steps = all_steps(directory) if step is None else [step]
    for s in reversed(steps):
        try:
            with _manager(directory) as mgr:
                return mgr.restore(s, args=ocp.args.Composite(
                    record=ocp.args.JsonRestore()))["record"]
        except Exception:  # noqa: BLE001 - damaged: try an older one
            continue
    return None


def config_diff(saved: dict, current: dict, defaults: dict | None = None,
                keys=None) -> str | None:
    """The stale-record rule of both drivers (AIB's resume, HyPoGen's stage outputs): the first
    field (sorted) whose value differs between a saved record and this run's, or None.

    Args:
      saved, current: the records (``{field: value}``).
      defaults: the value of a field ``saved`` lacks (a record written before the field
        existed); default: a missing field differs from any value but None.
      keys: the fields compared (default: both records' fields).
    """
    defaults = defaults or {}
    for k in sorted(set(saved) | set(current) if keys is None else keys):
        if saved.get(k, defaults.get(k)) != current.get(k):
            return k
    return None


def check_compatible(record: dict, config: dict) -> None:
    """Raises ``CheckpointError`` naming the first field where a checkpoint's config or version
    differs from this run's."""
    if record.get("version") != __version__:
        raise CheckpointError(f"checkpoint was written by hyperjax {record.get('version')}, "
                              f"this is {__version__}")
    saved = record.get("config", {})
    k = config_diff(saved, config)
    if k is not None:
        raise CheckpointError(f"checkpoint config differs in {k!r}: checkpoint has "
                              f"{saved.get(k)!r}, this run has {config.get(k)!r}")
