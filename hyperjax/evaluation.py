"""The DMA evaluation protocol, written once (the authors'
``fill_context_window`` and ``make_evaluation_and_fill_ds`` in ``dmash/contexts/sac.py``).

For every context (one row of ``contexts``), in one batch:

1. three independent resets: ``s0'`` fills the window with K x ``(s0', 0, s0')`` (the authors'
   evaluation deques), the warm-up starts from the second, the episode from the third;
2. K warm-up steps with the deterministic policy in eval mode (encoder without masks, the
   equidistant subset), the window rolling;
3. ``policy.reset`` closes the warm-up's last transition and the episode starts from the third
   reset's state with the window kept; T steps, whose rewards are the return.

The warm-up and the episode are one ``lax.scan`` of K + T steps (one compiled env step). Every
step's key splits into the policy's and the env's. ``Program.evaluate`` (the CLI's evaluation),
``hyperjax.load_policy``'s policies and the README's example all run through ``run_episodes``.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from hyperjax.policy import Policy, PolicyState, check_params
from hyperjax.utils import raw_key


class Trajectory(NamedTuple):
    """Recorded evaluation episodes (``run_episodes(record=True)``), leading axes ``[N, P+T]``
    with the P = K warm-up transitions first (as in the replay)."""

    obs: jax.Array       # float32[N, P+T, obs_dim]
    action: jax.Array    # float32[N, P+T, act_dim]
    next_obs: jax.Array  # float32[N, P+T, obs_dim]


def random_policy(action_dim: int, low: float = -1.0, high: float = 1.0) -> Policy:
    """Uniform-random actions in ``[low, high]`` (no window, no warm-up): the baseline every
    task's scores are compared with. ``params`` are ignored."""

    def init(obs, context=None):
        b = obs.shape[0]
        ctx = jnp.zeros((b, 0)) if context is None else jnp.asarray(context, jnp.float32)
        return PolicyState(None, obs, jnp.zeros((b, action_dim), obs.dtype),
                           jnp.zeros((b,), bool), ctx)

    def act(params, ps, obs, key, deterministic: bool = True):
        del params, deterministic
        return jax.random.uniform(key, (obs.shape[0], action_dim), jnp.float32, low,
                                  high), ps

    return Policy(init, act, lambda ps, final_obs, obs: ps, 0, None)


def run_episodes(policy: Policy, params, env, contexts, key, record: bool = False):
    """One deterministic evaluation episode per row of ``contexts`` (module doc).

    Args:
      policy: a ``Policy`` (``make_policy(agent)``, ``load_policy(...)[1]`` or
        ``random_policy``); its ``warmup_steps`` K sets the warm-up (0: none, one reset).
      params: the policy's parameters (``AgentParams``).
      env: a ``hyperjax.envs.Env``.
      contexts: ``float32[N, n_factors]``.
      key: PRNG key, raw ``uint32[2]`` or typed threefry (the same numbers).
      record: also return the ``Trajectory``.
    Returns:
      ``(returns float32[N], Trajectory or None)``.
    """
    n = contexts.shape[0]
    P, T = policy.warmup_steps, env.episode_length
    k_reset, k_run = jax.random.split(raw_key(key))

    def reset(k, c):
        return jax.vmap(env.reset)(jax.random.split(k, c.shape[0]), c)

    if P:
        out = reset(k_reset, jnp.tile(contexts, (3, 1)))  # three resets, one batched call
        (ep_state, ep_ts), (_, ts0), (state, ts) = [
            jax.tree.map(lambda x: x[i * n:(i + 1) * n], out) for i in range(3)]
        ps = policy.init(ts0.obs, contexts)
    else:
        state, ts = reset(k_reset, contexts)
        ps = policy.init(ts.obs, contexts)

    def body(carry, inp):
        env_state, obs, ps, ret = carry
        i, k = inp
        k_act, k_env = jax.random.split(k)
        action, ps = policy.act(params, ps, obs, k_act)
        env_state, ts = jax.vmap(env.step)(jax.random.split(k_env, n), env_state, action,
                                           contexts)
        ret = ret + jnp.where(i >= P, ts.reward, 0.0)
        rec = (obs, action, ts.obs) if record else None
        next_obs = ts.obs
        if P:  # after the warm-up's last step: the episode's reset state, the window kept
            env_state, next_obs, ps = jax.lax.cond(
                i == P - 1, lambda: (ep_state, ep_ts.obs, policy.reset(ps, ts.obs, ep_ts.obs)),
                lambda: (env_state, ts.obs, ps))
        return (env_state, next_obs, ps, ret), rec

    (_, _, _, ret), traj = jax.lax.scan(
        body, (state, ts.obs, ps, jnp.zeros(n)),
        (jnp.arange(P + T), jax.random.split(k_run, P + T)))
    if not record:
        return ret, None
    return ret, Trajectory(*(jnp.swapaxes(x, 0, 1) for x in traj))


def evaluate(policy: Policy, params, env, contexts, key, episodes: int = 1) -> jax.Array:
    """Deterministic returns ``float32[N, episodes]``: ``episodes`` evaluation episodes per row
    of ``contexts`` ``float32[N, n_factors]``, all in one batch (module doc). Each row is
    repeated ``episodes`` times in place, as the CLI's evaluation lays them out, so
    ``evaluate(make_policy(prog.agent), params, prog.env, split_contexts, key, E)`` is the
    CLI's evaluation of that split when the key and the batch are the same.

    Raises:
      ValueError: ``episodes`` is not a positive integer, ``contexts`` is not 2-D, or
        ``params`` are not one run's parameters of the policy (``policy.check_params``: a
        seed-batched tree is named as such).
    """
    check_params(policy, params)
    if isinstance(episodes, (bool, np.bool_)) or not isinstance(episodes, (int, np.integer)) \
            or episodes <= 0:
        raise ValueError(f"episodes must be a positive integer, got {episodes!r}")
    episodes = int(episodes)  # a NumPy integer too (a static shape)
    contexts = jnp.asarray(contexts, jnp.float32)
    if contexts.ndim != 2:
        raise ValueError(f"contexts must be [N, n_factors], got shape {list(contexts.shape)}")
    ret, _ = run_episodes(policy, params, env, jnp.repeat(contexts, episodes, axis=0), key)
    return ret.reshape(contexts.shape[0], episodes)
