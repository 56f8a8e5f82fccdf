"""HyPoGen's models as a registry: every per-model fact in one :class:`Algo` record.

The pipeline, the fit, the model builder and the CLI's ``--algo`` read these records, so a new
baseline is one ``register`` call (as an AIB method is one ``hyperjax.methods.register``)::

    from hyperjax.hypogen import algos, models
    algos.register(algos.Algo(
        "wide_cond", "Cond Policy, a 512-wide MLP", learning_rate=1e-4,
        build=lambda obs_dim, act_dim, *, use_q, **_: models.CondPolicy(
            obs_dim, act_dim, use_q, hidden=512)))

``hyperjax.hypogen.models`` registers HyPoGen, HyperZero, Cond Policy and UVFA;
``hyperjax.hypogen.meta`` registers Meta Policy (MAML) and PEARL. Importing
``hyperjax.hypogen`` imports both, so the registry is complete once the package is imported.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

__all__ = ["Algo", "Q_HEADS", "get", "help_text", "names", "register", "unregister"]

Q_HEADS = ("always", "never", "with_td")


@dataclasses.dataclass(frozen=True)
class Algo:
    """One behaviour-cloning model of the pipeline.

    Attributes:
      name: the ``--algo`` name (a Python identifier).
      summary: a few words for ``--algo``'s help.
      learning_rate: the released Adam learning rate (``FitConfig.learning_rate`` None).
      loss_weights: ``(value, td)`` weights of the auxiliary losses (HyPoGen's
        ``approximators/rl_solution.py``); ``--bc_only`` zeroes them.
      scheduled: the released ``MultiStepLR`` halvings at 75 / 90 / 95 % of the epochs
        (``RLApproximator``); False: a plain Adam (``PolicyApproximator``).
      q_heads: when the model carries Q heads: ``always``, ``never``, or ``with_td`` (only
        when the TD loss is on: HyPoGen's ``if self.use_td``).
      build: ``build(obs_dim, act_dim, *, use_q, use_td, deep_supervision, num_blocks,
        hyperzero_original_init, target) -> flax Module`` with the interface of
        ``models.CondPolicy`` (``generate``, ``act``, ``__call__``); None for a meta-learning
        baseline (``meta``).
      meta: trained by ``hyperjax.hypogen.meta.make_meta_fit`` instead of ``train.make_fit``
        (may also report test-time fine-tuning); that program implements ``meta`` (MAML) and
        ``pearl`` only, and refuses other names.
      fixed_target: the released network ignores ``target_layers`` / ``target_act`` (HyperZero's
        ``DoubleHeadedHyperNetwork``): it keeps ``TargetNetConfig()`` unless either is given.
    """

    name: str
    summary: str
    learning_rate: float
    loss_weights: tuple[float, float] = (0.0, 0.0)
    scheduled: bool = False
    q_heads: str = "never"
    build: Callable | None = None
    meta: bool = False
    fixed_target: bool = False

    def __post_init__(self):
        if not self.name.isidentifier():
            raise ValueError(f"Algo name must be an identifier, got {self.name!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"Algo {self.name}: learning_rate must be > 0, got "
                             f"{self.learning_rate}")
        if self.q_heads not in Q_HEADS:
            raise ValueError(f"Algo {self.name}: q_heads must be one of {', '.join(Q_HEADS)}, "
                             f"got {self.q_heads!r}")
        if (self.build is None) != self.meta:
            raise ValueError(f"Algo {self.name}: give build (a model builder) or meta=True, "
                             f"not both or neither")

    def use_q(self, use_td: bool) -> bool:
        """Whether the model builds its Q heads for this ``use_td`` (the released builds)."""
        return self.q_heads == "always" or (self.q_heads == "with_td" and use_td)


_REGISTRY: dict[str, Algo] = {}


def register(algo: Algo, replace: bool = False) -> Algo:
    """Adds ``algo`` (returned). Raises ``ValueError`` when the name is taken, unless
    ``replace``."""
    if algo.name in _REGISTRY and not replace:
        raise ValueError(f"algo {algo.name!r} is already registered (pass replace=True)")
    _REGISTRY[algo.name] = algo
    return algo


def unregister(name: str) -> None:
    """Removes ``name`` (nothing when absent)."""
    _REGISTRY.pop(name, None)


def get(name: str) -> Algo:
    """The record of ``name``. Raises ``ValueError`` naming the valid ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown algo {name!r}; valid: {', '.join(_REGISTRY)}") from None


def names(meta: bool | None = None) -> tuple[str, ...]:
    """Registered names in registration order; ``meta`` True / False: only those / the
    others."""
    return tuple(n for n, a in _REGISTRY.items() if meta is None or a.meta == meta)


def help_text() -> str:
    """``name (summary), ...`` of every registered model, for ``--algo``'s help."""
    return ", ".join(f"{a.name} ({a.summary})" for a in _REGISTRY.values())
