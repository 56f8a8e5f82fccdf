"""The whole rollout-update-evaluate loop as one pure function (``make_train``).

Structure (all ``lax.scan``, nothing per step in Python)::

    train(key) = scan(segment, init(key), arange(n_segments))
    segment    = scan(episode, eval_every / T episodes) ; evaluate on train / eval-in / eval-out
    episode    = [DMA warm-up: reset, K policy steps, reset] ; scan(step, T steps)
    step       = act (uniform-random before learning_starts) ; env step for the 20 contexts in
                 lock-step (``num_envs``: m envs per context) ; store ; one gradient step
                 (after learning_starts)

``segment`` is also exposed (``make_program``), so a driver can run the same computation one
evaluation interval at a time and checkpoint between calls; ``train`` gives identical results.
The step and segment indices come from ``arange`` (not from the carry), so under
``jax.vmap(train)`` over seeds they stay unbatched and every ``lax.cond`` stays a branch.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from hyperjax import envs
from hyperjax.agents import replay as rb
from hyperjax.agents.agent import Agent, AgentState
from hyperjax.config import Config, check_batch
from hyperjax.envs.wrappers import EpisodeStats, fill_context_window, push_window

SPLITS = envs.contexts.SPLITS


@flax.struct.dataclass
class TrainState:
    agent: AgentState
    replay: rb.Replay
    key: jax.Array
    segments_done: jax.Array  # int32[]


class Trajectory(NamedTuple):
    """Recorded evaluation episodes (``Program.rollout``), leading axes ``[N, P + T]``."""

    obs: jax.Array       # float32[N, P+T, obs_dim]
    action: jax.Array    # float32[N, P+T, act_dim]
    next_obs: jax.Array  # float32[N, P+T, obs_dim]


class Program(NamedTuple):
    """The pieces of a run. ``segment(state, seg_idx)`` runs one evaluation interval."""

    cfg: Config
    env: envs.Env
    agent: Agent
    sets: envs.ContextSets
    init: Callable
    segment: Callable
    evaluate: Callable
    episodes: Callable
    rollout: Callable
    n_segments: int


def make_program(config: Config, sets: envs.ContextSets | None = None,
                 sweep: tuple[str, ...] = ()) -> Program:
    """Builds ``init``, ``segment`` and ``evaluate`` for ``config``.

    Args:
      config: a ``Config`` (validated here).
      sets: context sets to train and evaluate on; default ``hyperjax.context_sets(env)``.
      sweep: hyperparameter names (``hyperjax.agents.agent.SWEEPABLE``) that each run takes
        from ``init(key, hparams)`` instead of the config, so that ``jax.vmap`` over
        ``(keys, hparams)`` is a sweep in one program.
    Raises:
      ValueError: invalid config, malformed context sets or an unsweepable name (names the
        field / factor).
    """
    cfg = config.resolved()
    sets = sets if sets is not None else envs.context_sets(cfg.env)
    varied = envs.varied_factors(cfg.env)
    if tuple(sets.factors) != tuple(f.name for f in varied):
        raise ValueError(f"context set factors {list(sets.factors)} do not match "
                         f"{cfg.env!r}'s factors {[f.name for f in varied]}")
    for split in SPLITS:
        envs.validate_context_set(sets.split(split), varied, what=f"{split} context set")
    # MJX tasks compile a model per context: the run's sets (user-supplied ones included).
    env = envs.make_env(cfg.env, np.concatenate([sets.split(s) for s in SPLITS])
                        if envs.is_mjx(cfg.env) else None)
    check_batch(cfg.batch_size, sets.train.shape[0])
    agent = Agent(cfg, env, tuple(sweep))
    stats_env = EpisodeStats(env)
    T = env.episode_length
    train_ctx = jnp.asarray(sets.train)
    n_ctx = train_ctx.shape[0]
    n_envs = cfg.num_envs or n_ctx  # parallel envs: m per training context, context-major
    if n_envs % n_ctx:
        raise ValueError(f"num_envs={n_envs} is not a multiple of the {n_ctx} training "
                         f"contexts")
    m = n_envs // n_ctx
    env_ctx = jnp.repeat(train_ctx, m, axis=0)  # [n_envs, F]
    K = cfg.context_size if cfg.inferred else 0
    n_factors = len(env.factors)
    eps_per_segment = cfg.eval_every // T
    n_segments = cfg.total_steps // cfg.eval_every
    # a context's m envs share its capacity (buffer_size transitions per context)
    slots = rb.num_slots(-(-cfg.buffer_size // m), cfg.total_steps, T)
    low, high = env.action_low, env.action_high
    eval_ctx = jnp.asarray(np.repeat(sets.stacked().reshape(-1, n_factors),
                                     cfg.eval_episodes, axis=0))  # [3*C*E, F]

    def init(key, hparams=None) -> TrainState:
        """A fresh ``TrainState`` from ``key`` (``uint32[2]``); ``hparams``: ``{name:
        float32[]}`` for the swept names (default: the config's values)."""
        k_agent, k_run = jax.random.split(key)
        replay = rb.init(n_envs, slots, K, T, env.obs_dim, env.action_dim)
        return TrainState(agent.init(k_agent, n_factors, hparams), replay, k_run,
                          jnp.zeros((), jnp.int32))

    def warmup(params, keys, contexts, encoder_training):
        """DMA warm-up for a batch of envs: ``fill_context_window`` vmapped (notes §3.6)."""

        def one(key, context):
            def policy(k, obs, window):
                return agent.act(params, obs[None], window[None], context[None], k,
                                 deterministic=True, encoder_training=encoder_training)[0]
            return fill_context_window(env, key, context, policy, K)

        return jax.vmap(one)(keys, contexts)

    # --- training ------------------------------------------------------------------------
    def env_step(carry, global_step):
        agent_state, replay, env_state, obs, window, key = carry
        key, k_act, k_rand, k_env, k_sample, k_upd = jax.random.split(key, 6)
        params = agent_state.params
        a_pi = agent.act(params, obs, window, env_ctx, k_act, deterministic=False,
                         encoder_training=True)
        a_rand = jax.random.uniform(k_rand, a_pi.shape, jnp.float32, low, high)
        action = jnp.where(global_step < cfg.learning_starts, a_rand, a_pi)
        env_state, ts = jax.vmap(stats_env.step)(jax.random.split(k_env, n_envs), env_state,
                                                 action, env_ctx)
        replay = rb.add(replay, K, obs, action, ts.reward, ts.obs, ts.terminated, ts.truncated)
        if K:
            window = jax.vmap(push_window)(window, obs, action, ts.obs)

        def do_update(agent_state):
            batch = rb.sample(replay, k_sample, cfg.per_context_batch(n_ctx), T, K,
                              n_ctx if m > 1 else None)
            return agent.update(agent_state, batch, train_ctx, k_upd,
                                global_step % cfg.policy_frequency == 0)

        def no_update(agent_state):
            shapes = jax.eval_shape(do_update, agent_state)[1]
            return agent_state, jax.tree.map(lambda s: jnp.full(s.shape, jnp.nan, s.dtype),
                                             shapes)

        agent_state, metrics = jax.lax.cond(global_step >= cfg.learning_starts, do_update,
                                            no_update, agent_state)
        return (agent_state, replay, env_state, ts.obs, window, key), metrics

    def episode(state: TrainState, ep_idx):
        key, k_warm, k_reset, k_steps = jax.random.split(state.key, 4)
        replay = state.replay
        if K:
            warm = warmup(state.agent.params, jax.random.split(k_warm, n_envs), env_ctx, True)
            replay = rb.start_episode(replay, warm.obs, warm.action, warm.next_obs)
            window = warm.window
        else:
            replay = rb.start_episode(replay)
            window = jnp.zeros((n_envs, 0, 0), jnp.float32)
        env_state, ts = jax.vmap(stats_env.reset)(jax.random.split(k_reset, n_envs), env_ctx)
        carry = (state.agent, replay, env_state, ts.obs, window, k_steps)
        steps = ep_idx * T + jnp.arange(T)
        (agent_state, replay, env_state, _, _, _), metrics = jax.lax.scan(env_step, carry, steps)
        metrics = jax.tree.map(_nanmean, metrics)
        metrics["train_return"] = jnp.mean(env_state.returned_episode_return)
        return state.replace(agent=agent_state, replay=replay, key=key), metrics

    # --- evaluation ------------------------------------------------------------------------
    def rollout(params, key, contexts, record: bool = True):
        """Deterministic episodes, one per row of ``contexts`` ``float32[N, F]``, in one batch.

        The encoder runs in eval mode after the DMA warm-up (notes §3.6, §9.9). Returns
        ``(returns float32[N], Trajectory)``; the trajectory's arrays are ``[N, P + T, ...]``
        with the P = K warm-up transitions first (as in the replay), or None when ``record``
        is False.
        """
        n = contexts.shape[0]
        k_warm, k_reset, k_run = jax.random.split(key, 3)
        if K:
            warm = warmup(params, jax.random.split(k_warm, n), contexts, False)
            window = warm.window
        else:
            window = jnp.zeros((n, 0, 0), jnp.float32)
        env_state, ts = jax.vmap(env.reset)(jax.random.split(k_reset, n), contexts)

        def body(carry, key):
            env_state, obs, window, ret = carry
            k_act, k_env = jax.random.split(key)
            action = agent.act(params, obs, window, contexts, k_act, deterministic=True,
                               encoder_training=False)
            env_state, ts = jax.vmap(env.step)(jax.random.split(k_env, n), env_state, action,
                                               contexts)
            if K:
                window = jax.vmap(push_window)(window, obs, action, ts.obs)
            out = (obs, action, ts.obs) if record else None
            return (env_state, ts.obs, window, ret + ts.reward), out

        carry = (env_state, ts.obs, window, jnp.zeros(n))
        (_, _, _, ret), traj = jax.lax.scan(body, carry, jax.random.split(k_run, T))
        if not record:
            return ret, None
        traj = Trajectory(*(jnp.swapaxes(x, 0, 1) for x in traj))  # [N, T, ...]
        if K:
            traj = Trajectory(*(jnp.concatenate([w, x], axis=1) for w, x in
                                zip((warm.obs, warm.action, warm.next_obs), traj)))
        return ret, traj

    def evaluate(params, key):
        """Deterministic returns on all splits: ``float32[3, C, eval_episodes]`` (notes §3.6).

        Every context of train / eval-in / eval-out runs ``eval_episodes`` episodes in one
        batch (``rollout``), with the encoder in eval mode and the DMA warm-up before each.
        """
        ret, _ = rollout(params, key, eval_ctx, record=False)
        return ret.reshape(len(SPLITS), n_ctx, cfg.eval_episodes)

    def episodes(state: TrainState, ep_indices):
        """Training only: one lock-step episode per entry of ``ep_indices`` (``int32[n]``)."""
        return jax.lax.scan(episode, state, ep_indices)

    def segment(state: TrainState, seg_idx):
        """One evaluation interval: ``eval_every`` steps, then an evaluation.

        ``seg_idx`` (``int32[]``, unbatched) is the interval's index; returns ``(state,
        metrics)`` with scalar training metrics (means over the interval), ``eval_return``
        ``float32[3, C]`` (mean over episodes) and ``aer`` ``float32[3]``.
        """
        state, m = episodes(state, seg_idx * eps_per_segment + jnp.arange(eps_per_segment))
        key, k_eval = jax.random.split(state.key)
        returns = evaluate(state.agent.params, k_eval).mean(-1)
        metrics = {k: _nanmean(v) for k, v in m.items()}
        metrics.update(step=(seg_idx + 1) * cfg.eval_every, eval_return=returns,
                       aer=returns.mean(-1))
        return state.replace(key=key, segments_done=state.segments_done + 1), metrics

    return Program(cfg, env, agent, sets, init, segment, evaluate, episodes, rollout, n_segments)


def _nanmean(x):
    return jnp.nanmean(x, axis=0) if x.ndim else x


def make_train(config: Config, sets: envs.ContextSets | None = None):
    """``train(key) -> (TrainState, metrics)``: the whole run as one pure function.

    ``metrics`` leaves have a leading axis ``[n_segments]`` (one row per evaluation):
    ``step``, ``aer`` ``[n, 3]`` (train, eval_in, eval_out), ``eval_return`` ``[n, 3, 20]``,
    ``train_return``, ``q_loss``, ``actor_loss``, ``alpha``, ... ``jax.jit(jax.vmap(train))``
    over a batch of keys is a seed sweep.

    Raises:
      ValueError: invalid config (see ``Config.resolved``).
    """
    prog = make_program(config, sets)

    def train(key):
        state = prog.init(key)
        return jax.lax.scan(prog.segment, state, jnp.arange(prog.n_segments))

    return train
