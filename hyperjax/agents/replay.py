"""Per-context episodic replay with K-window sampling (the authors' `dmash/contexts/sac.py` and
`dataset.py`).

All envs run in lock-step with fixed-length episodes (every AIB task: no termination, a time
limit), so the buffer is a dense array ``[C, E, P + T, ...]``: C contexts (one env each; with
``num_envs = m * C`` parallel envs, ``C * m`` env rows, context-major), E
episode slots (a ring), P = K rows of the context window the episode starts with (the DMA
warm-up's transitions, or the previous episode's last ones during the random phase; only for
methods with an encoder) followed by the T real steps. A sample is a real step ``t`` of an
episode; its context window is rows ``[P + t - K + 1 ... P + t]`` of the same episode, i.e. the
window ``[t - K + 1 ... t]`` that includes the current transition (the authors'
`dmash/contexts/encoder.py` caveat), reaching
back into the prefix for the first steps.

As the authors' ``MemoryEfficientContextReplayBuffer`` (``dmash/contexts/dataset.py``):
capacity per context is ``int(min(buffer_size, total_steps) / T)`` whole episodes, the ring
evicts the oldest, and samples come from **completed** episodes only (the episode being written
is never sampled), uniformly over their transitions. The authors' ring holds the episode being
written in one of its slots (after the first wrap it is sampled with the evicted episode's
stale rows); here it has a slot of its own, so ``E = capacity + 1``.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from hyperjax.envs.wrappers import transition_features


class Replay(NamedTuple):
    obs: jax.Array          # float32[C, E, P+T, obs_dim]
    action: jax.Array       # float32[C, E, P+T, act_dim]
    next_obs: jax.Array     # float32[C, E, P+T, obs_dim]
    reward: jax.Array       # float32[C, E, P+T]
    terminated: jax.Array   # bool[C, E, P+T]
    truncated: jax.Array    # bool[C, E, P+T]
    episodes: jax.Array     # int32[], episodes started so far (the current one included)
    t: jax.Array            # int32[], real steps written into the current episode


class Batch(NamedTuple):
    """A stratified sample, ``B = n_contexts * per_context`` rows, context-major."""

    obs: jax.Array         # float32[B, obs_dim]
    action: jax.Array      # float32[B, act_dim]
    reward: jax.Array      # float32[B]
    next_obs: jax.Array    # float32[B, obs_dim]
    terminated: jax.Array  # bool[B]
    truncated: jax.Array   # bool[B]
    context_id: jax.Array  # int32[B]
    window: jax.Array      # float32[B, K, 2*obs_dim+act_dim] (K = 0 without an encoder)


def num_slots(buffer_size: int, total_steps: int, episode_length: int) -> int:
    """Episode slots E: ``max(1, int(min(buffer_size, total_steps) / T))`` completed episodes
    (the authors' capacity) plus the one being written."""
    return max(1, min(buffer_size, total_steps) // episode_length) + 1


def init(n_contexts: int, slots: int, prefix: int, episode_length: int, obs_dim: int,
         action_dim: int) -> Replay:
    """An empty buffer (shapes in the class doc)."""
    length = prefix + episode_length
    f = lambda *s: jnp.zeros((n_contexts, slots, length, *s), jnp.float32)
    b = jnp.zeros((n_contexts, slots, length), bool)
    return Replay(f(obs_dim), f(action_dim), f(obs_dim), jnp.zeros((n_contexts, slots, length)),
                  b, b, jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))


def _slot(buf: Replay):
    return (buf.episodes - 1) % buf.obs.shape[1]


def start_episode(buf: Replay, warm_obs=None, warm_action=None, warm_next_obs=None) -> Replay:
    """Opens the next episode slot; writes the ``[C, P, ...]`` warm-up prefix if given."""
    buf = buf._replace(episodes=buf.episodes + 1, t=jnp.zeros((), jnp.int32))
    slot = _slot(buf)
    if warm_obs is None:
        return buf
    put = lambda arr, val: arr.at[:, slot, : val.shape[1]].set(val)
    return buf._replace(obs=put(buf.obs, warm_obs), action=put(buf.action, warm_action),
                        next_obs=put(buf.next_obs, warm_next_obs))


def add(buf: Replay, prefix: int, obs, action, reward, next_obs, terminated,
        truncated) -> Replay:
    """Writes one lock-step transition per context (``[C, ...]`` arrays) at real step ``t``.

    ``prefix`` is P, the warm-up length of every episode row (K or 0).
    """
    slot = _slot(buf)
    i = prefix + buf.t
    put = lambda arr, val: arr.at[:, slot, i].set(val)
    return buf._replace(obs=put(buf.obs, obs), action=put(buf.action, action),
                        next_obs=put(buf.next_obs, next_obs), reward=put(buf.reward, reward),
                        terminated=put(buf.terminated, terminated),
                        truncated=put(buf.truncated, truncated), t=buf.t + 1)


def num_completed(buf: Replay) -> jax.Array:
    """Completed episodes held per context (``int32[]``): at most ``E - 1``."""
    return jnp.clip(buf.episodes - 1, 0, buf.obs.shape[1] - 1)


def sample(buf: Replay, key, per_context: int, episode_length: int, context_size: int,
           n_contexts: int | None = None) -> Batch:
    """Stratified sample: ``per_context`` uniform transitions of every context's completed
    episodes (module doc).

    Args:
      buf: the replay (needs one completed episode: ``Config`` asks ``learning_starts >= T``).
      key: PRNG key.
      per_context: samples per context (the authors' ``256 // 20 = 12``).
      episode_length: T.
      context_size: K; 0 returns an empty window.
      n_contexts: C when the buffer has ``m > 1`` env rows per context (``C * m`` rows,
        context-major: row ``c * m + j``); each sample then picks one of its context's m rows
        uniformly. Default: one row per context.
    Returns:
      ``Batch`` with ``B = C * per_context`` rows, context-major; ``context_id`` in ``[0, C)``.
    """
    n_rows, slots, length = buf.reward.shape
    n_ctx = n_contexts or n_rows
    m = n_rows // n_ctx
    prefix = length - episode_length
    n = num_completed(buf) * episode_length
    u = jax.random.randint(key, (n_ctx, per_context), 0, jnp.maximum(n, 1))
    slot = (_slot(buf) - (u // episode_length + 1)) % slots  # the newest completed first
    step = u % episode_length
    c = jnp.broadcast_to(jnp.arange(n_ctx)[:, None], u.shape)
    env = c if m == 1 else c * m + jax.random.randint(jax.random.fold_in(key, 1), u.shape, 0, m)
    row = prefix + step
    take = lambda arr: arr[env, slot, row].reshape(n_ctx * per_context, *arr.shape[3:])
    if context_size:
        w = row[..., None] + jnp.arange(-context_size + 1, 1)  # [C, n, K]
        cc, ss = env[..., None], slot[..., None]
        window = transition_features(buf.obs[cc, ss, w], buf.action[cc, ss, w],
                                     buf.next_obs[cc, ss, w])
        window = window.reshape(n_ctx * per_context, context_size, -1)
    else:
        window = jnp.zeros((n_ctx * per_context, 0, 0), jnp.float32)
    return Batch(take(buf.obs), take(buf.action), take(buf.reward), take(buf.next_obs),
                 take(buf.terminated), take(buf.truncated), c.reshape(-1), window)
