"""Context factors and the AIB context sets (train / eval-in / eval-out).

Source: DMA*-SH the authors' `dmash/contexts/context.py` (``setup_context_env`` in the authors'
code). For each factor with
``in_range = (lo, hi)`` and ``out_range = (out_lo, out_hi)`` and margin ``m = 0.01 * |hi - lo|``:

* train    = ``linspace(lo, hi, 50)``
* eval_in  = ``linspace(lo + m, hi - m, 50)``
* eval_out = ``linspace(out_lo, lo - m, 25) ++ linspace(hi + m, out_hi, 25)``

values rounded to 4 decimals. ``action_factor`` takes both values ``(-1, +1)`` in all three
sets. The cartesian mesh of the factors (in factor order) is sorted lexicographically and the
20 contexts are the rows at ``linspace(0, len - 1, 20).astype(int)``.
"""
from __future__ import annotations

import dataclasses
import itertools
import warnings

import numpy as np

NUM_CONTEXTS = 20


@dataclasses.dataclass(frozen=True)
class Factor:
    """One context factor.

    Attributes:
      name: factor name (``"mass"``, ``"action_factor"``, ...).
      default: the authors' ``CONTEXT_DEFAULTS`` default (``dmash/contexts/context.py``):
        the context ``unaware_default`` trains in (``Env.default_training_context``). It is
        the unmodified task's value except for ODE / ODE-k, whose default is 0 here while the
        env's constructor default is (1, 0, ...).
      in_range: ``(lo, hi)`` interpolation range (train and eval-in).
      out_range: ``(lo, hi)`` extrapolation range (eval-out).
      values: for discrete factors (``action_factor``), the values every split takes.
    """

    name: str
    default: float
    in_range: tuple[float, float]
    out_range: tuple[float, float]
    values: tuple[float, ...] | None = None

    def split_values(self, split: str) -> np.ndarray:
        """Per-split 1-D grid of this factor (the authors' `dmash/contexts/context.py`), float64,
        rounded to 4 decimals."""
        if self.values is not None:
            return np.asarray(self.values, np.float64)
        lo, hi = self.in_range
        out_lo, out_hi = self.out_range
        m = 0.01 * abs(hi - lo)
        if split == "train":
            v = np.linspace(lo, hi, 50)
        elif split == "eval_in":
            v = np.linspace(lo + m, hi - m, 50)
        elif split == "eval_out":
            v = np.concatenate([np.linspace(out_lo, lo - m, 25), np.linspace(hi + m, out_hi, 25)])
        else:
            raise ValueError(f"unknown split {split!r}; valid: train, eval_in, eval_out")
        return np.round(v, 4)

    @property
    def bounds(self) -> tuple[float, float]:
        """Smallest interval holding every value any split can take."""
        if self.values is not None:
            return (min(self.values), max(self.values))
        return (min(self.in_range[0], self.out_range[0]), max(self.in_range[1], self.out_range[1]))


# Factor table (the authors' `dmash/contexts/context.py`, CONTEXT_DEFAULTS).
MASS = Factor("mass", 1.0, (0.5, 1.5), (0.1, 2.0))
FRICTION = Factor("friction", 1.0, (0.5, 1.5), (0.1, 2.0))
ACTION_FACTOR = Factor("action_factor", 1.0, (-1.0, 1.0), (-1.0, 1.0), values=(-1.0, 1.0))
PERMUTATION = Factor("permutation", 0.0, (0.0, 1.0), (0.0, 1.0), values=(0.0, 1.0))
ODE_P0 = Factor("parameter_0", 0.0, (-5.0, 5.0), (-10.0, 10.0))
ODE_P1 = Factor("parameter_1", 0.0, (-5.0, 5.0), (-10.0, 10.0))

SPLITS = ("train", "eval_in", "eval_out")


def ode_k_factors(k: int) -> tuple[Factor, ...]:
    """ODE-k's factors: ``parameter_0 .. parameter_{k-1}``, default 0.0, in [-5, 5], out
    [-10, 10] (``CONTEXT_DEFAULTS["dmash/ODE-{k}-v0"]``)."""
    return tuple(Factor(f"parameter_{j}", 0.0, (-5.0, 5.0), (-10.0, 10.0)) for j in range(k))


@dataclasses.dataclass(frozen=True)
class ContextSets:
    """The three context sets of a task.

    Attributes:
      factors: factor names, the column order of every array.
      train, eval_in, eval_out: ``float32[20, n_factors]`` contexts of each split.
    """

    factors: tuple[str, ...]
    train: np.ndarray
    eval_in: np.ndarray
    eval_out: np.ndarray

    def split(self, name: str) -> np.ndarray:
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; valid: {', '.join(SPLITS)}")
        return getattr(self, name)

    def stacked(self) -> np.ndarray:
        """``float32[3, 20, n_factors]``: train, eval_in, eval_out."""
        return np.stack([self.train, self.eval_in, self.eval_out])


def make_context_sets(factors: tuple[Factor, ...], num: int = NUM_CONTEXTS) -> ContextSets:
    """Builds train / eval-in / eval-out by the authors' deterministic recipe (module doc).

    Args:
      factors: the varied factors, in the task's factor order.
      num: contexts per split (20 in the paper).
    Returns:
      ``ContextSets`` with ``float32[num, len(factors)]`` arrays.
    Warns:
      UserWarning: a split's grid has fewer points than ``num`` (the recipe then repeats them
        unevenly: 19 and 1 for one binary factor).
    """
    out = {}
    for split in SPLITS:
        grids = [f.split_values(split) for f in factors]
        mesh = sorted(itertools.product(*[g.tolist() for g in grids]))
        idx = np.linspace(0, len(mesh) - 1, num).astype(int)
        if len(mesh) < num:  # one binary factor: 19 contexts of one value, 1 of the other
            counts = np.bincount(idx, minlength=len(mesh)).tolist()
            warnings.warn(f"make_context_sets: the {split} grid has {len(mesh)} points for "
                          f"{num} contexts; the authors' recipe repeats them {counts} times "
                          f"(build the contexts yourself for a balanced set)", stacklevel=2)
        out[split] = np.asarray([mesh[i] for i in idx], np.float32)
    return ContextSets(tuple(f.name for f in factors), **out)


def sample_context_sets(factors: tuple[Factor, ...], seed: int,
                        num: int = NUM_CONTEXTS) -> ContextSets:
    """Context sets of a task with more than two factors, sampled as the authors do.

    The authors' ``select_context_instances`` (``dmash/contexts/context.py``) does not build
    the mesh for more than two factors: each of the ``num`` contexts takes every factor's value
    by ``np.random.choice`` from that factor's 50-value grid of the split, and the list is then
    sorted lexicographically. ``setup_context_env`` seeds NumPy's global generator with the
    run's seed first and draws train, eval-in, eval-out in that order; this reproduces the
    draws with ``np.random.RandomState(seed)``.

    Args:
      factors: the task's factors (more than two).
      seed: the run's seed (the authors' ``--seed``).
      num: contexts per split.
    Returns:
      ``ContextSets`` with ``float32[num, len(factors)]`` arrays.
    """
    rng = np.random.RandomState(seed)
    out = {}
    for split in SPLITS:
        grids = [f.split_values(split).tolist() for f in factors]
        rows = [tuple(rng.choice(g) for g in grids) for _ in range(num)]
        out[split] = np.asarray(sorted(rows), np.float32)
    return ContextSets(tuple(f.name for f in factors), **out)


def validate_context_set(contexts, factors: tuple[Factor, ...], what: str = "context set"):
    """Checks a user-supplied context array; returns it as ``float32[N, n_factors]``.

    Raises:
      ValueError: wrong rank or width, non-finite values, or a value outside the factor's
        bounds (``Factor.bounds``); the message names the factor and the offending row.
    """
    names = [f.name for f in factors]
    try:
        arr = np.asarray(contexts, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a numeric array of shape [N, {len(factors)}] for "
                         f"factors {names}") from None
    if arr.ndim != 2 or arr.shape[1] != len(factors) or arr.shape[0] == 0:
        raise ValueError(f"{what} must have shape [N, {len(factors)}] for factors {names}, "
                         f"got {list(arr.shape)}")
    for j, f in enumerate(factors):
        col = arr[:, j]
        bad = np.flatnonzero(~np.isfinite(col))
        if bad.size:
            raise ValueError(f"{what}: factor {f.name!r} is not finite in row {bad[0]}")
        lo, hi = f.bounds
        bad = np.flatnonzero((col < lo - 1e-6) | (col > hi + 1e-6))
        if bad.size:
            raise ValueError(f"{what}: factor {f.name!r} = {col[bad[0]]:g} in row {bad[0]} is "
                             f"outside its bounds [{lo:g}, {hi:g}]")
        if f.values is not None:
            ok = np.isin(col, f.values)
            if not ok.all():
                r = int(np.flatnonzero(~ok)[0])
                raise ValueError(f"{what}: factor {f.name!r} = {col[r]:g} in row {r} is not "
                                 f"one of {list(f.values)}")
    return arr.astype(np.float32)
