"""Task specifications: the paper's spec grids and its train/test split protocol.

A *spec* (HyPoGen's task specification, the ``c`` of paper Eq. 1) is a ``float32[spec_dim]``
array, exactly like an AIB context: one compiled program rolls out all specs of a grid at once.

Sources: HyPoGen paper App. B.1 Tables 6–8 (grids) and the paper's App. B.1 (grids), §3.5
(``utils/dataset.py``: the split).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from hyperjax.envs import manipulation

# Seeds of the released runs (HyPoGen's `approximators/rl_solution.py` and released configs); the
# seed also picks the split.
PAPER_SEEDS = (123, 233, 666, 999, 789)
TEST_FRACTION = 0.8


def _arange(lo: float, hi: float, step: float) -> np.ndarray:
    n = int(round((hi - lo) / step)) + 1
    return np.round(lo + step * np.arange(n), 6)


def _signed(hi: float, step: float) -> np.ndarray:
    """``[-hi, 0) ∪ (0, hi]`` in increments of ``step`` (Table 6)."""
    v = _arange(-hi, hi, step)
    return v[v != 0.0]


@dataclasses.dataclass(frozen=True)
class SpecGrid:
    """A grid of specs.

    Attributes:
      name: task name (``"cheetah_speed"``, ``"lqr_di"``, ...).
      factors: names of the spec's columns (``("speed",)``, ``("speed", "length")``).
      specs: ``float64[N, len(factors)]``, rows in grid (product) order.
    """

    name: str
    factors: tuple[str, ...]
    specs: np.ndarray

    def __len__(self) -> int:
        return len(self.specs)

    def strings(self) -> list[str]:
        """One string per spec: ``str(float)`` of each value joined by ``"_"`` (as the released
        code's file names: ``linear-0.5`` → ``"0.5"``; two-factor specs ``"0.5_0.3"``)."""
        return [spec_string(s) for s in self.specs]


def spec_string(spec) -> str:
    """``"_".join(str(float(v)) for v in spec)``, the key the split sorts on."""
    return "_".join(str(float(v)) for v in np.atleast_1d(spec))


def product_grid(name: str, factors: tuple[str, ...], *values: np.ndarray) -> SpecGrid:
    """The cartesian product of 1-D value arrays (first factor slowest)."""
    mesh = np.meshgrid(*values, indexing="ij")
    specs = np.stack([m.reshape(-1) for m in mesh], axis=-1).astype(np.float64)
    return SpecGrid(name, factors, specs)


# Paper Tables 6-8 (App. B.1).
SPEED_VALUES = {"cheetah": _signed(10.0, 0.5), "walker": _signed(5.0, 0.25),
                "finger": _signed(15.0, 1.0)}
LENGTH_VALUES = {"cheetah": _arange(0.3, 0.7, 0.01), "walker": _arange(0.1, 0.5, 0.01),
                 "finger": _arange(0.1, 0.4, 0.01)}
SPEED_LENGTH_VALUES = {
    "cheetah": (_arange(1.0, 10.0, 1.0), _arange(0.3, 0.7, 0.05)),
    "walker": (_arange(1.0, 5.0, 0.5), _arange(0.1, 0.5, 0.05)),
    "finger": (_arange(1.0, 15.0, 1.0), _arange(0.1, 0.4, 0.05)),
}
# Table 6's default speed and Table 7's default length.
DEFAULT_SPEED = {"cheetah": 10.0, "walker": 1.0, "finger": 15.0}
# The length-only (dyn) experiments' reward: cfgs/dyn_exp.yaml takes reward overwrite_all.yaml,
# ALL = {sigmoid: linear, margin: 1, value_at_margin: 0.1}, for every body (target speed 1 m/s,
# spin 1 rad/s), in the experts' training and in the evaluation alike.
DYN_MARGIN = 1.0
DEFAULT_LENGTH = {"cheetah": 0.5, "walker": 0.3, "finger": 0.16}

# The CPU default: the spec-conditioned LQR double integrator (hyperjax.hypogen.lqr).
# lqr_di: mass only, 41 values like Table 7's length grids (8 train / 32 test specs);
# lqr_di_goal: mass x goal, 7 x 5 = 35 specs (6 train).
LQR_MASSES = _arange(0.5, 2.5, 0.05)         # 41 values (kg)
LQR_GOAL_MASSES = _arange(0.5, 2.0, 0.25)    # 7 values (kg)
LQR_GOALS = _arange(-0.5, 0.5, 0.25)         # 5 values (m)


def make_grid(task: str) -> SpecGrid:
    """The spec grid of ``task``.

    Tasks: ``{cheetah,walker,finger}_{speed,length,speed_length}`` (Tables 6, 7, 8: 40/40/30,
    41/41/31 and 10×9, 9×9, 15×7 specs), ``lqr_di`` (mass 0.5…2.5 kg step 0.05: 41 specs) and
    ``lqr_di_goal`` (mass 0.5…2.0 step 0.25 × goal −0.5…0.5 m step 0.25: 35 specs), and the
    manipulation tasks ``{lift_cube,pick_cube}_{cube,stiffness,damping,length}`` (released
    ``eval_maniskill.sh``: 11, 11, 11 and 16 specs; :mod:`hyperjax.envs.manipulation`). Raises
    ``ValueError`` for an unknown task.
    """
    if task == "lqr_di":
        return product_grid(task, ("mass",), LQR_MASSES)
    if task == "lqr_di_goal":
        return product_grid(task, ("mass", "goal"), LQR_GOAL_MASSES, LQR_GOALS)
    if task in MANIPULATION_TASKS:
        m = manipulation
        family = m.split_name(task)[1]
        return product_grid(task, (m.FAMILIES[family][0].name,), m.grid_values(family))
    body, _, family = task.partition("_")
    if body not in SPEED_VALUES or family not in ("speed", "length", "speed_length"):
        raise ValueError(f"unknown spec task {task!r}; valid: {', '.join(grid_names())}")
    if family == "speed":
        return product_grid(task, ("speed",), SPEED_VALUES[body])
    if family == "length":
        return product_grid(task, ("length",), LENGTH_VALUES[body])
    return product_grid(task, ("speed", "length"), *SPEED_LENGTH_VALUES[body])


def subset_grid(grid: SpecGrid, n: int) -> SpecGrid:
    """``n`` evenly spaced rows of ``grid`` (indices ``round(linspace(0, N−1, n))``, grid order
    kept): a reduced grid for CPU-sized runs. ``n`` = 0 or ``n ≥ N`` returns ``grid``.

    Raises ``ValueError`` for a negative ``n`` or ``n`` = 1 (one spec cannot be split).
    """
    if n < 0 or n == 1:
        raise ValueError(f"num_specs must be 0 (the whole grid) or >= 2, got {n}")
    if n == 0 or n >= len(grid):
        return grid
    idx = np.unique(np.round(np.linspace(0, len(grid) - 1, n)).astype(np.int64))
    return SpecGrid(grid.name, grid.factors, grid.specs[idx])


MANIPULATION_TASKS = tuple(f"{t}_{f}" for t in ("lift_cube", "pick_cube")
                           for f in ("cube", "stiffness", "damping", "length"))


DMC_TASKS = tuple(f"{b}_{f}" for b in SPEED_VALUES for f in ("speed", "length", "speed_length"))


def grid_names() -> tuple[str, ...]:
    return ("lqr_di", "lqr_di_goal") + DMC_TASKS + MANIPULATION_TASKS


@dataclasses.dataclass(frozen=True)
class Split:
    """Indices into a grid's specs. ``unused``: specs in neither set (faithful mode only)."""

    train: np.ndarray
    test: np.ndarray
    unused: np.ndarray


SPLIT_MODES = ("faithful", "clean", "fig4", "maniskill")


def in_training_distribution(test_specs, train_specs) -> np.ndarray:
    """``bool[S]``: which of ``test_specs float[S, F]`` lie within one standard deviation of
    the training specs ``float[N, F]`` on every factor, ``|spec − mean| <= std`` (population
    std): the paper's in-distribution specs of Tables 26–29 (App. C.7, "within one standard
    deviation of training distribution"); the others are out-of-distribution."""
    train = np.asarray(train_specs, np.float64)
    test = np.asarray(test_specs, np.float64)
    mean, std = train.mean(0), train.std(0)
    return np.all(np.abs(test - mean) <= std + 1e-9 * np.abs(mean), axis=-1)


def split_specs(grid: SpecGrid, seed: int, mode: str = "faithful",
                test_fraction: float = TEST_FRACTION) -> Split:
    """The paper's split of a grid (HyPoGen's `utils/dataset.py`, ``utils/dataset.py``), or Fig.
    4's.

    1. sort the spec strings (``SpecGrid.strings``) lexicographically;
    2. ``numpy.random.default_rng(seed).shuffle`` them;
    3. test = the first ``int(test_fraction * n)``;
    4. ``faithful``: train = the next ``min(int((1 - test_fraction) * n), n - n_test)``, which
       with 1 − 0.8 = 0.19999… gives 7 of 40, 5 of 30, 8 of 41, 6 of 31 and leaves one spec
       unused; ``clean``: train = all the rest.

    ``fig4`` (paper §5.2, Fig. 4: cheetah trained on speeds 1 and 10, tested on 2 … 9): on a
    one-factor grid, train = the specs 1 and the grid's largest value, test = the whole numbers
    strictly between, unused = the rest; seed-independent. Table 19's protocol (hold out 50 %,
    train on a fraction) is ``test_fraction`` with ``faithful``/``clean``.

    ``maniskill`` (the released ``RoboArmDataset``, HyPoGen's `utils/dataset.py`): sort the specs
    by value,
    ``numpy.array_split`` them into ``int(0.3·n + 1)`` chunks, train on the last spec of every
    chunk but the final one, test on the rest; seed-independent. 11 specs → 3 train / 8 test,
    16 → 4 / 12, exactly the released ``eval-partition/*.txt`` test lists.

    Returns indices into ``grid.specs`` (int64; shuffled order, or ascending for ``fig4`` and
    ``maniskill``).
    Raises ``ValueError`` for an unknown mode, a fraction outside (0, 1), a split that leaves
    no train or no held-out spec, or ``fig4`` on a grid without the value 1 or with more than
    one factor.
    """
    if mode not in SPLIT_MODES:
        raise ValueError(f"unknown split mode {mode!r}; valid: {', '.join(SPLIT_MODES)}")
    if mode == "fig4":
        return _fig4_split(grid)
    if mode == "maniskill":
        return _maniskill_split(grid)
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    strings = grid.strings()
    if len(set(strings)) != len(strings):
        raise ValueError(f"grid {grid.name!r} has duplicate specs")
    order = sorted(strings)
    np.random.default_rng(seed).shuffle(order)
    n = len(order)
    n_test = int(test_fraction * n)
    n_train = min(int((1.0 - test_fraction) * n), n - n_test) if mode == "faithful" else n - n_test
    if n_test == 0 or n_train == 0:
        raise ValueError(f"split {mode} of {n} specs at test_fraction={test_fraction} leaves "
                         f"{n_train} train / {n_test} held-out specs: both need at least one "
                         f"(more specs or another test_fraction)")
    index = {s: i for i, s in enumerate(strings)}
    ids = np.array([index[s] for s in order], np.int64)
    return Split(train=ids[n_test:n_test + n_train], test=ids[:n_test],
                 unused=ids[n_test + n_train:])


def _fig4_split(grid: SpecGrid) -> Split:
    if len(grid.factors) != 1:
        raise ValueError(f"split fig4 needs a one-factor grid, {grid.name!r} has "
                         f"{len(grid.factors)} factors")
    v = grid.specs[:, 0]
    top = v.max()
    if not np.any(np.isclose(v, 1.0)) or top <= 2.0:
        raise ValueError(f"split fig4 needs the spec 1 and specs above 2 in the grid "
                         f"({grid.name!r} has {len(v)} specs from {v.min()} to {top})")
    train = np.flatnonzero(np.isclose(v, 1.0) | np.isclose(v, top))
    test = np.flatnonzero((v > 1.0) & (v < top) & np.isclose(v, np.round(v)))
    if len(test) == 0:
        raise ValueError(f"split fig4: {grid.name!r} has no whole-number spec between 1 and "
                         f"{top}")
    unused = np.setdiff1d(np.arange(len(v)), np.concatenate([train, test]))
    return Split(train=train.astype(np.int64), test=test.astype(np.int64),
                 unused=unused.astype(np.int64))


def _maniskill_split(grid: SpecGrid) -> Split:
    if len(grid.factors) != 1:
        raise ValueError(f"split maniskill needs a one-factor grid, {grid.name!r} has "
                         f"{len(grid.factors)} factors")
    n = len(grid)
    if n < 4:
        raise ValueError(f"split maniskill needs at least 4 specs, {grid.name!r} has {n}")
    order = np.argsort(grid.specs[:, 0], kind="stable")
    chunks = np.array_split(order, int(n * 0.3 + 1))
    train = np.sort(np.array([c[-1] for c in chunks[:-1]], np.int64))
    test = np.setdiff1d(np.arange(n), train).astype(np.int64)
    return Split(train=train, test=test, unused=np.zeros(0, np.int64))
