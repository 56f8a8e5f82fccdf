"""Env protocol shared by every hyperjax task (gymnax-style, contexts as data).

An env is a stateless object whose methods are pure functions::

    state, ts = env.reset(key, context)
    state, ts = env.step(key, state, action, context)

``context`` is a ``float32[n_factors]`` array whose entries follow ``env.factors``
(for AIB's DI: ``("mass", "action_factor")``). Nothing about the context is stored on the
env object, so one compiled program can run thousands of envs, each with its own context,
under ``jax.vmap``.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp


class Timestep(NamedTuple):
    """What an env returns after ``reset`` and ``step``.

    Attributes:
      obs: ``float32[obs_dim]`` observation after the step (the first one after reset).
      reward: ``float32[]`` reward of the transition (0 after reset).
      terminated: ``bool[]`` true MDP termination (never true on AIB tasks).
      truncated: ``bool[]`` the time limit was reached on this step.
      info: wrapper extras (``AutoReset`` adds ``final_obs`` and ``context_id``).
    """

    obs: jax.Array
    reward: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    info: dict = {}


class Env:
    """Base class: subclasses set the class attributes and implement ``_reset``/``_step``.

    Class attributes:
      name: registry name.
      obs_dim, action_dim: sizes of the flat observation and action vectors.
      action_low, action_high: scalar action bounds (same for every dimension).
      episode_length: number of steps after which ``truncated`` is set.
      factors: tuple of context factor names, the column order of a context array.
      default_context: ``float32[n_factors]`` default values (the unmodified task).
    """

    name: str = ""
    obs_dim: int = 0
    action_dim: int = 0
    action_low: float = -1.0
    action_high: float = 1.0
    episode_length: int = 0
    factors: tuple[str, ...] = ()

    @property
    def default_context(self) -> jax.Array:
        return jnp.asarray(self._default_context, jnp.float32)

    _default_context: tuple[float, ...] = ()

    @property
    def default_training_context(self) -> jax.Array:
        """``float32[n_factors]``: the one context ``unaware_default`` trains in and is
        evaluated in on the train split, the authors' ``--context_default``
        (``CONTEXT_DEFAULTS[env_id][factor][0]``, ``dmash/contexts/context.py``): each varied
        factor's ``Factor.default``. It differs from ``default_context`` on ODE / ODE-k
        ((0, 0) against the env's constructor default (1, 0)). Envs without ``varied``
        factors return ``default_context``."""
        varied = getattr(self, "varied", None)
        if not varied:
            return self.default_context
        return jnp.asarray([f.default for f in varied], jnp.float32)

    # --- the public, pure API -------------------------------------------------------
    def reset(self, key: jax.Array, context: jax.Array) -> tuple[Any, Timestep]:
        """Starts an episode.

        Args:
          key: PRNG key.
          context: ``float32[n_factors]`` in ``self.factors`` order.
        Returns:
          ``(state, timestep)`` with ``timestep.reward == 0`` and both flags false.
        """
        self._check("reset", context=context)
        physics = self._reset(key, context)
        state = EnvState(physics=physics, t=jnp.zeros((), jnp.int32))
        obs = self._obs(physics)
        self._check_out("reset", obs)
        return state, Timestep(obs, jnp.zeros((), jnp.float32),
                               jnp.zeros((), bool), jnp.zeros((), bool), {})

    def step(self, key: jax.Array, state: "EnvState", action: jax.Array,
             context: jax.Array) -> tuple["EnvState", Timestep]:
        """Advances one step.

        Args:
          key: PRNG key (unused by deterministic tasks, kept for a uniform signature).
          state: the ``EnvState`` returned by ``reset``/``step``.
          action: ``float32[action_dim]`` in ``[action_low, action_high]``.
          context: ``float32[n_factors]``.
        Returns:
          ``(next_state, timestep)``; ``truncated`` is true on the ``episode_length``-th step.
        """
        self._check("step", context=context, action=action)
        physics, reward, terminated = self._step(key, state.physics, action, context)
        t = state.t + 1
        truncated = t >= self.episode_length
        obs = self._obs(physics)
        self._check_out("step", obs, reward, terminated)
        return (EnvState(physics=physics, t=t),
                Timestep(obs, reward.astype(jnp.float32), terminated, truncated, {}))

    def _check(self, where: str, context, action=None) -> None:
        """Shapes are static under jit: a wrong context or action shape is a ``ValueError``
        at trace time, naming the argument (a broadcast would otherwise run silently).
        Values are not checked here (they are traced): they are validated where they enter
        from the host (``make_env(contexts=)``, ``make_program(sets=)``, context files); a
        meaningless value passed straight to ``reset`` / ``step`` (mass 0, NaN) gives
        meaningless physics (NaN observations), not an error."""
        want = (len(self.factors),)
        if jnp.shape(context) != want:
            raise ValueError(f"{self.name or type(self).__name__}.{where}: context must have "
                             f"shape {want} (factors {list(self.factors)}), got "
                             f"{jnp.shape(context)}")
        if action is not None and jnp.shape(action) != (self.action_dim,):
            raise ValueError(f"{self.name or type(self).__name__}.{where}: action must have "
                             f"shape ({self.action_dim},), got {jnp.shape(action)}")

    def _check_out(self, where: str, obs, reward=None, terminated=None) -> None:
        """What ``_obs`` / ``_step`` give, checked on static shapes at trace time: a wrong
        ``obs_dim`` or a batched reward would otherwise fail deep inside the networks."""
        who = f"{self.name or type(self).__name__}.{where}"
        if jnp.shape(obs) != (self.obs_dim,):
            raise ValueError(f"{who}: _obs gives shape {jnp.shape(obs)}, but obs_dim = "
                             f"{self.obs_dim} (set obs_dim to the observation's length)")
        for name, x in (("reward", reward), ("terminated", terminated)):
            if x is not None and jnp.shape(x) != ():
                raise ValueError(f"{who}: _step's {name} has shape {jnp.shape(x)}, expected a "
                                 f"scalar (shape ())")

    # --- to implement -----------------------------------------------------------------
    def _reset(self, key, context):  # pragma: no cover - abstract
        raise NotImplementedError

    def _step(self, key, physics, action, context):  # pragma: no cover - abstract
        raise NotImplementedError

    def _obs(self, physics):  # pragma: no cover - abstract
        raise NotImplementedError

    def factor(self, context: jax.Array, name: str) -> jax.Array:
        """Value of factor ``name`` in ``context`` (a static lookup, jit-safe)."""
        return context[..., self.factors.index(name)]


class EnvState(NamedTuple):
    """Env state: the task's physical state and the step counter ``t`` (``int32[]``)."""

    physics: Any
    t: jax.Array


def per_spec_episodes(episode: Callable, specs, key, episodes: int, *per_spec_args):
    """``episode(*args_s, spec, k)`` for every spec (rows of ``specs``, with the matching
    leading-axis entries of ``per_spec_args``) and ``episodes`` episodes each, vmapped; episode
    ``e`` of spec ``s`` gets the key ``fold_in(fold_in(key, s), e)``. Outputs gain leading
    ``[S, E]`` axes."""
    def per_spec(s, spec, *args_s):
        keys = jax.vmap(lambda e: jax.random.fold_in(jax.random.fold_in(key, s), e))(
            jnp.arange(episodes))
        return jax.vmap(lambda k: episode(*args_s, spec, k))(keys)

    return jax.vmap(per_spec)(jnp.arange(specs.shape[0]), specs, *per_spec_args)
