"""Probing a trained agent's inferred context z (compiled, vmappable over seeds).

``make_probe(prog)`` returns ``probe(state, key, contexts)``, one pure function that:

1. runs ``episodes`` deterministic evaluation episodes per context (``Program.rollout``: DMA
   warm-up, encoder in eval mode for acting, as the evaluation protocol);
2. draws ``n_windows`` windows ``[t-K+1 .. t]`` per context from those episodes (without
   replacement; the authors draw 256 per context from the eval replay, the authors'
   `dmash/informativeness/metrics.py`);
3. encodes them, by default with the encoder in *training* mode as the authors' metrics code
   does (``training=True`` is passed there, the authors' `dmash/informativeness/metrics.py`;
   ``encoder_training=False`` is the flag);
4. measures the shadow gradients E_i ||grad_{z_i} l_pi(i)|| and E_i ||grad_{z_i} l_Q(i)||
   on a stratified replay batch (the authors' `dmash/informativeness/metrics.py`, v2 §6.5): the
   per-sample actor and critic losses
   with the stop-gradient on z (and on omega = h_eta(z)) lifted. They are only measured:
   nothing is applied, ``state`` is not returned.

The numbers computed from z (KSG informativeness, variability, overlap, variance terms) are
host-side numpy in ``hyperjax.analysis.representation``.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from hyperjax.agents import replay as rb
from hyperjax.envs.wrappers import transition_features
from hyperjax.train import Program, TrainState


def shadow_gradients(agent, params, batch: rb.Batch, context, key, hp) -> dict:
    """Shadow gradients of the RL losses w.r.t. z (the authors' `dmash/informativeness/metrics.py`,
    "policy context sensitivity").

    Args:
      agent: an inferred-context ``Agent``.
      params: its parameters (``AgentState.params``).
      hp: its ``HParams`` (``AgentState.hparams``).
      batch: a replay ``Batch`` of B rows (window ``float32[B, K, 2*obs_dim+act_dim]``).
      context: ``float32[B, F]`` true contexts of the rows (unused by inferred methods).
      key: PRNG key.
    Returns:
      ``{"actor": float32[], "critic": float32[]}``: the mean over rows of the Euclidean norm
      of d l(i) / d z_i, where l(i) is row i's actor loss ``alpha log pi - min_j Q_j`` or its
      critic loss ``sum_j (Q_j - y)^2`` (y held fixed, as in the TD loss). Through z only:
      for DMA*-SH through omega = h_eta(z) into the shared adapters, for DMA/DMA* through the
      concatenated z.
    Raises:
      ValueError: for a method without an encoder.
    """
    if not agent.method.inferred:
        raise ValueError(f"shadow gradients need an inferred z; {agent.method.name!r} has "
                         f"none")
    k_z, k_pi, k_q = jax.random.split(key, 3)
    z = agent.encode(params, batch.window, k_z, training=True, hp=hp)
    n = z.shape[0]
    lifted = lambda z: agent.cond_from_z(params, z, stop_gradient=False)
    # The losses are batch means: n x their gradient is the per-row gradient of l(i).
    actor_obj = lambda z: n * agent.actor_loss(params, batch, context, k_pi, hp,
                                               lifted(z))[0]
    critic_obj = lambda z: n * agent.critic_loss(params, batch, context, k_q, hp,
                                                 lifted(z))[0]
    norm = lambda g: jnp.mean(jnp.linalg.norm(g, axis=-1))
    return {"actor": norm(jax.grad(actor_obj)(z)), "critic": norm(jax.grad(critic_obj)(z))}


def gather_windows(traj, pick, K: int, T: int):
    """Encoder windows at chosen steps of recorded episodes.

    Args:
      traj: a ``Trajectory`` with arrays ``[C, E * (K + T), ...]``: per context, E episodes of
        K warm-up transitions followed by T steps (``Program.rollout`` reshaped).
      pick: ``int32[C, n]`` in ``[0, E*T)``: episode ``pick // T``, step ``t = pick % T``.
      K, T: window length and episode length.
    Returns:
      ``float32[C, n, K, 2*obs_dim+act_dim]``: the window ``[t-K+1 .. t]`` of each pick, the
      current transition last (as ``push_window`` builds it while acting), reaching back into
      the warm-up for ``t < K - 1``.
    """
    row = (pick // T) * (K + T) + K + pick % T
    rows = row[..., None] + jnp.arange(-K + 1, 1)                               # [C, n, K]
    c = jnp.arange(pick.shape[0])[:, None, None]
    return transition_features(traj.obs[c, rows], traj.action[c, rows],
                               traj.next_obs[c, rows])


def make_probe(prog: Program, episodes: int, n_windows: int = 256,
               encoder_training: bool = True) -> Callable:
    """``probe(state, key, contexts) -> dict`` for one seed (vmap it over seeds).

    Args:
      prog: the run's ``Program`` (an inferred method: dma, dma_pearl, dma_star, dma_sh).
      episodes: evaluation episodes per context to draw windows from.
      n_windows: windows per context (256, the authors' `dmash/informativeness/metrics.py`).
      encoder_training: encoder mode for z (True = the authors' metrics code).
    Returns:
      ``probe(state: TrainState, key, contexts float32[C, F])`` giving ``z``
      ``float32[C, n_windows, d_z]``, ``returns`` ``float32[C, episodes]``, ``shadow_actor``
      and ``shadow_critic`` ``float32[]`` (on a replay batch of the training contexts).
    Raises:
      ValueError: the method has no encoder, or ``episodes * T < n_windows``.
    """
    agent, cfg = prog.agent, prog.cfg
    if not agent.method.inferred:
        raise ValueError(f"the representation probe needs an inferred z; {cfg.algo!r} has none")
    T, K = prog.env.episode_length, cfg.context_size
    if episodes * T < n_windows:
        raise ValueError(f"{episodes} episode(s) of {T} steps hold fewer than n_windows="
                         f"{n_windows} windows per context")
    train_ctx = jnp.asarray(prog.sets.train)

    def probe(state: TrainState, key, contexts):
        params = state.agent.params
        n_ctx = contexts.shape[0]
        k_roll, k_pick, k_enc, k_batch, k_shadow = jax.random.split(key, 5)
        ctx = jnp.repeat(contexts, episodes, axis=0)
        returns, traj = prog.rollout(params, k_roll, ctx)
        traj = jax.tree.map(lambda x: x.reshape(n_ctx, episodes * (K + T), *x.shape[2:]),
                            traj)
        # n_windows distinct (episode, step) per context
        pick = jax.vmap(lambda k: jax.random.choice(k, episodes * T, (n_windows,),
                                                    replace=False))(
            jax.random.split(k_pick, n_ctx))                                    # [C, n]
        windows = gather_windows(traj, pick, K, T)                              # [C, n, K, D]
        z = agent.encode(params, windows.reshape(n_ctx * n_windows, K, -1), k_enc,
                         training=encoder_training, hp=state.agent.hparams)
        batch = rb.sample(state.replay, k_batch, cfg.per_context_batch(train_ctx.shape[0]), T,
                          K)
        shadow = shadow_gradients(agent, params, batch, train_ctx[batch.context_id], k_shadow,
                                  state.agent.hparams)
        return {"z": z.reshape(n_ctx, n_windows, -1),
                "returns": returns.reshape(n_ctx, episodes),
                "shadow_actor": shadow["actor"], "shadow_critic": shadow["critic"]}

    return probe
