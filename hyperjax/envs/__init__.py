"""Task registry: ``make_env(name)`` and ``context_sets(name)``."""
from __future__ import annotations

from hyperjax.envs import contexts
from hyperjax.envs.contexts import ContextSets, Factor, make_context_sets, validate_context_set
from hyperjax.envs.core import Env, EnvState, Timestep
from hyperjax.envs.di import make_di, make_di_friction
from hyperjax.envs.ode import ComplexODE
from hyperjax.envs.wrappers import AutoReset, EpisodeStats, fill_context_window, push_window

_REGISTRY = {
    "di": make_di,
    "di_friction": make_di_friction,
    "ode": ComplexODE,
}

# Per-task defaults of the training program (notes §2): window length K and the paper's budget.
TASK_DEFAULTS = {
    "di": dict(context_size=24, paper_total_steps=100_000),
    "di_friction": dict(context_size=24, paper_total_steps=100_000),
    "ode": dict(context_size=24, paper_total_steps=100_000),
}


def env_names() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def _check(name: str) -> None:
    if name not in _REGISTRY:
        raise ValueError(f"unknown env {name!r}; valid: {', '.join(_REGISTRY)}")


def make_env(name: str) -> Env:
    """Returns the AIB task ``name`` (pure ``reset(key, context)`` / ``step``).

    Raises:
      ValueError: unknown name (the message lists the valid ones).
    """
    _check(name)
    return _REGISTRY[name]()


def context_sets(name: str) -> ContextSets:
    """Train / eval-in / eval-out context sets of task ``name`` (``float32[20, F]`` each).

    Raises:
      ValueError: unknown name.
    """
    _check(name)
    return make_context_sets(make_env(name).varied)


__all__ = ["AutoReset", "ContextSets", "Env", "EnvState", "EpisodeStats", "Factor", "Timestep",
           "context_sets", "contexts", "env_names", "fill_context_window", "make_env",
           "make_context_sets", "push_window", "validate_context_set", "TASK_DEFAULTS"]
