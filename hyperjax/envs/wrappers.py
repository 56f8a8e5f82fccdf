"""Env wrappers: episode statistics, auto-reset with in-jit context resampling, and the DMA
context-window warm-up (the authors' `dmash/contexts/sac.py` ``fill_context_window``).

All are pure and jit/vmap-safe. The context *set* is an argument (data), never an attribute, so
the same compiled program serves train / eval-in / eval-out and user-supplied sets.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from hyperjax.envs.core import Env


class StatsState(NamedTuple):
    inner: object
    episode_return: jax.Array           # float32[], running return of the current episode
    episode_length: jax.Array           # int32[]
    returned_episode_return: jax.Array  # float32[], return of the last finished episode
    returned_episode_length: jax.Array  # int32[]


class EpisodeStats:
    """Tracks running and last-finished episode return/length (PureJaxRL ``LogWrapper``).

    Wraps any env or wrapper and passes the context argument through unchanged, so it goes
    outside ``AutoReset`` (``EpisodeStats(AutoReset(env))``), where an episode ends on the
    transition's ``terminated | truncated``.
    """

    def __init__(self, env):
        self.env = env

    def __getattr__(self, name):
        return getattr(self.env, name)

    def reset(self, key, context, *args):
        inner, ts = self.env.reset(key, context, *args)
        z = jnp.zeros((), jnp.float32)
        zi = jnp.zeros((), jnp.int32)
        return StatsState(inner, z, zi, z, zi), ts

    def step(self, key, state: StatsState, action, context):
        inner, ts = self.env.step(key, state.inner, action, context)
        ret = state.episode_return + ts.reward
        length = state.episode_length + 1
        done = ts.terminated | ts.truncated
        return StatsState(
            inner,
            jnp.where(done, 0.0, ret),
            jnp.where(done, 0, length),
            jnp.where(done, ret, state.returned_episode_return),
            jnp.where(done, length, state.returned_episode_length),
        ), ts


class AutoResetState(NamedTuple):
    inner: object
    context_id: jax.Array  # int32[], row of the context set this env runs
    context: jax.Array     # float32[n_factors]


CONTEXT_SAMPLING = ("fixed", "uniform")


class AutoReset:
    """Resets an env when its episode ends, drawing the next context inside jit.

    ``sampling="uniform"`` draws a new row of the context set per env and episode (a batch of
    4096 envs may hold 4096 contexts); ``"fixed"`` keeps each env on its row, as the authors'
    ``SyncVectorEnv`` with one env per training context does (the authors' `dmash/contexts/sac.py`).

    The returned ``Timestep.obs`` is the observation to act on next (after a reset when the
    episode ended); the transition's true last observation is ``info["final_obs"]``, so nothing
    is lost at a time limit. ``info["context_id"]`` is the row the transition ran in.
    """

    def __init__(self, env, sampling: str = "uniform"):
        if sampling not in CONTEXT_SAMPLING:
            raise ValueError(f"unknown context sampling {sampling!r}; valid: "
                             f"{', '.join(CONTEXT_SAMPLING)}")
        self.env = env
        self.sampling = sampling

    def __getattr__(self, name):
        return getattr(self.env, name)

    def reset(self, key, context_set, context_id=None):
        """Args: ``context_set`` ``float32[N, F]``; ``context_id`` ``int32[]`` or None (drawn)."""
        k_id, k_reset = jax.random.split(key)
        if context_id is None:
            context_id = jax.random.randint(k_id, (), 0, context_set.shape[0])
        context_id = jnp.asarray(context_id, jnp.int32)
        context = context_set[context_id]
        inner, ts = self.env.reset(k_reset, context)
        ts = ts._replace(info={**ts.info, "final_obs": ts.obs, "context_id": context_id})
        return AutoResetState(inner, context_id, context), ts

    def step(self, key, state: AutoResetState, action, context_set):
        k_step, k_reset = jax.random.split(key)
        inner, ts = self.env.step(k_step, state.inner, action, state.context)
        done = ts.terminated | ts.truncated
        keep = state.context_id if self.sampling == "fixed" else None
        reset_state, reset_ts = self.reset(k_reset, context_set, keep)
        new = AutoResetState(
            jax.tree.map(lambda a, b: jnp.where(done, b, a), inner, reset_state.inner),
            jnp.where(done, reset_state.context_id, state.context_id),
            jnp.where(done, reset_state.context, state.context))
        obs = jnp.where(done, reset_ts.obs, ts.obs)
        info = {**ts.info, "final_obs": ts.obs, "context_id": state.context_id}
        return new, ts._replace(obs=obs, info=info)


# --- the DMA context window -------------------------------------------------------------

class Window(NamedTuple):
    """The K most recent transitions, oldest first, as raw rows (the authors' ``obs_stack``,
    ``actions_stack``, ``next_obs_stack`` deques). Leading axes ``[..., K]``."""

    obs: jax.Array       # float32[..., K, obs_dim]
    action: jax.Array    # float32[..., K, act_dim]
    next_obs: jax.Array  # float32[..., K, obs_dim]


def transition_features(obs, action, next_obs):
    """Encoder input row ``[s, a, s' - s]``: ``float32[..., 2*obs_dim + act_dim]`` (the authors'
    `dmash/contexts/encoder.py`)."""
    return jnp.concatenate([obs, action, next_obs - obs], axis=-1)


def window_features(window: Window) -> jax.Array:
    """The encoder's input ``float32[..., K, 2*obs_dim + act_dim]`` for a ``Window``."""
    return transition_features(window.obs, window.action, window.next_obs)


def initial_window(obs, k: int, action_dim: int) -> Window:
    """K copies of ``(s0, 0, s0)`` for ``obs = s0`` ``float32[..., obs_dim]``: the authors'
    deques before the first step (``deque([obs] * K)`` with zero actions; ``sac.py``)."""
    rows = jnp.repeat(obs[..., None, :], k, axis=-2)
    return Window(rows, jnp.zeros((*obs.shape[:-1], k, action_dim), obs.dtype), rows)


def push_window(window: Window, obs, action, next_obs) -> Window:
    """Rolls an unbatched window ``[K, ...]`` and appends the newest transition last."""
    roll = lambda w, x: jnp.concatenate([w[1:], x[None]], axis=0)
    return Window(roll(window.obs, obs), roll(window.action, action),
                  roll(window.next_obs, next_obs))


class Warmup(NamedTuple):
    """What ``fill_context_window`` returns (leading axis K)."""

    obs: jax.Array       # float32[K, obs_dim]
    action: jax.Array    # float32[K, act_dim]
    next_obs: jax.Array  # float32[K, obs_dim]
    window: Window       # the final window (= the K warm-up transitions)


def fill_context_window(env: Env, key, context, policy: Callable, k: int,
                        window: Window | None = None, start=None) -> Warmup:
    """DMA episode warm-up (the authors' `dmash/contexts/sac.py`): reset, run ``k`` steps of
    ``policy`` in ``context``.

    ``policy(key, obs, features) -> action`` sees the evolving window's features ``[K, D]``,
    starting from ``window`` (the authors carry the previous episode's window into a training
    warm-up and start an evaluation one from K x ``(s0, 0, s0)``; default: that, from this
    warm-up's own reset). The caller resets the env again afterwards, so the real episode
    starts with a full window of the same context. Source: ``fill_context_window`` in the
    authors' ``dmash/contexts/sac.py``.

    Args:
      env: base env (``reset(key, context)``/``step``).
      key: PRNG key.
      context: ``float32[n_factors]``.
      policy: pure action function.
      k: window length K.
      window: the window the warm-up starts from (``Window`` of ``[K, ...]`` rows).
      start: ``(state, timestep)`` of a reset done by the caller (callers batch their resets
        into one call: an MJX reset can be hundreds of physics steps, compiled per call
        site); default: reset here with part of ``key``.
    Returns:
      ``Warmup`` with the K transitions and the final window.
    """
    k_reset, k_run = jax.random.split(key)
    state, ts = env.reset(k_reset, context) if start is None else start
    if window is None:
        window = initial_window(ts.obs, k, env.action_dim)

    def body(carry, step_key):
        state, obs, window = carry
        k_pi, k_env = jax.random.split(step_key)
        action = policy(k_pi, obs, window_features(window))
        state, ts = env.step(k_env, state, action, context)
        window = push_window(window, obs, action, ts.obs)
        return (state, ts.obs, window), (obs, action, ts.obs)

    (_, _, window), (o, a, no) = jax.lax.scan(body, (state, ts.obs, window),
                                              jax.random.split(k_run, k))
    return Warmup(o, a, no, window)


class VmapAutoReset:
    """``AutoReset`` for a batch of envs, resetting only at steps where an episode ended.

    ``AutoReset`` is per env, so under ``vmap`` its reset runs on every step and ``where``
    picks it (cheap for jnp tasks; for MJX tasks a reset costs many steps: Cheetah's is 200
    stabilisation steps). Here the batch steps, and one ``lax.cond`` on ``any(done)`` runs the
    batched reset (new contexts drawn from ``context_set`` in jit) only when needed. Under a
    further ``vmap`` (over seeds) the cond becomes a select, as any cond does.

    ``reset(key, context_set, batch)``, ``step(key, state, action[B, A], context_set)``.
    """

    def __init__(self, env, sampling: str = "uniform"):
        self.env = env
        self.single = AutoReset(env, sampling)

    def __getattr__(self, name):
        return getattr(self.env, name)

    def reset(self, key, context_set, batch: int, context_id=None):
        """``batch`` envs; ``context_id`` ``int32[batch]`` or None (drawn per env)."""
        keys = jax.random.split(key, batch)
        if context_id is None:
            return jax.vmap(self.single.reset, (0, None))(keys, context_set)
        return jax.vmap(self.single.reset, (0, None, 0))(keys, context_set, context_id)

    def step(self, key, state: AutoResetState, action, context_set):
        batch = action.shape[0]
        k_step, k_reset = jax.random.split(key)
        inner, ts = jax.vmap(self.env.step)(jax.random.split(k_step, batch), state.inner,
                                            action, state.context)
        done = ts.terminated | ts.truncated
        stepped = AutoResetState(inner, state.context_id, state.context)
        info = {**ts.info, "final_obs": ts.obs, "context_id": state.context_id}

        def with_reset(_):
            keep = state.context_id if self.single.sampling == "fixed" else None
            r_state, r_ts = self.reset(k_reset, context_set, batch, keep)
            pick = lambda a, b: jax.vmap(lambda d, x, y: jnp.where(d, y, x))(done, a, b)
            return jax.tree.map(pick, stepped, r_state), pick(ts.obs, r_ts.obs)

        new, obs = jax.lax.cond(jnp.any(done), with_reset, lambda _: (stepped, ts.obs), None)
        return new, ts._replace(obs=obs, info=info)
