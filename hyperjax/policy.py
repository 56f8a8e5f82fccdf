"""Trained policies you can load and call: ``hyperjax.load_policy(run_dir)``.

A ``Policy`` is three pure functions over a ``PolicyState`` that carries what the method needs
between steps: the window of the K most recent transitions (the DMA encoder's input), the last
observation and action (to complete the next transition), and the true context (aware
methods). All are jittable and vmappable; every array has a leading batch axis ``[B, ...]``.

    params, policy = hyperjax.load_policy("runs/di-dma_sh-...")
    ps = policy.init(obs0, context)                      # window = K x (obs0, 0, obs0)
    action, ps = policy.act(params, ps, obs, key)        # deterministic, encoder in eval mode
    ps = policy.reset(ps, final_obs, new_obs)            # at an env reset

``act`` pushes the transition that led to ``obs`` (the previous observation and action, and
``obs``) into the window before acting, so a caller only passes observations. ``reset`` closes
the ended episode's last transition with its final observation and starts the next: the window
is kept across the reset, as the authors' deques are. The DMA evaluation protocol (the authors'
`dmash/contexts/sac.py`)
is then: ``init`` from a reset's s0', run ``policy.warmup_steps`` (K) steps in the context from
another reset, ``reset`` to the episode's start, run the episode (``tests/test_policy.py``
reproduces the CLI's evaluation returns this way).
"""
from __future__ import annotations

import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from hyperjax.envs.wrappers import Window, initial_window, push_window, window_features


class PolicyState(NamedTuple):
    window: Window | None     # [B, K, ...] raw rows, None without an encoder
    prev_obs: jax.Array       # float32[B, obs_dim]
    prev_action: jax.Array    # float32[B, act_dim]
    has_prev: jax.Array       # bool[B]: prev_obs / prev_action belong to this episode
    context: jax.Array        # float32[B, n_factors] (aware methods; zeros otherwise)


class Policy(NamedTuple):
    init: Callable
    act: Callable
    reset: Callable
    warmup_steps: int
    agent: object


def make_policy(agent) -> Policy:
    """The ``Policy`` of an ``Agent`` (any preset; module doc)."""
    K = agent.window_size
    A = agent.shapes.action_dim

    def init(obs, context=None) -> PolicyState:
        """``obs`` ``float32[B, obs_dim]``: the window becomes K x (obs, 0, obs) (the authors'
        evaluation deques); ``context`` ``float32[B, F]`` for aware methods."""
        b = obs.shape[0]
        ctx = (jnp.zeros((b, agent.shapes.n_factors)) if context is None
               else jnp.asarray(context, jnp.float32))
        return PolicyState(initial_window(obs, K, A) if K else None, obs,
                           jnp.zeros((b, A), obs.dtype), jnp.zeros((b,), bool), ctx)

    def _close(ps: PolicyState, obs) -> Window | None:
        if ps.window is None:
            return None
        pushed = jax.vmap(push_window)(ps.window, ps.prev_obs, ps.prev_action, obs)
        keep = lambda new, old: jnp.where(ps.has_prev[:, None, None], new, old)
        return jax.tree.map(keep, pushed, ps.window)

    def act(params, ps: PolicyState, obs, key, deterministic: bool = True):
        """``(action float32[B, act_dim], PolicyState)``: the policy's action for ``obs`` (the
        mean action when ``deterministic``), the encoder in eval mode."""
        window = _close(ps, obs)
        feats = window_features(window) if window is not None else None
        action = agent.act(params, obs, feats, ps.context, key, deterministic,
                           encoder_training=False)
        return action, PolicyState(window, obs, action, jnp.ones_like(ps.has_prev), ps.context)

    def reset(ps: PolicyState, final_obs, obs) -> PolicyState:
        """At an env reset: the ended episode's last transition ends in ``final_obs``; the next
        starts at ``obs``."""
        return PolicyState(_close(ps, final_obs), obs, jnp.zeros_like(ps.prev_action),
                           jnp.zeros_like(ps.has_prev), ps.context)

    return Policy(init, act, reset, K, agent)


def check_params(policy: Policy, params) -> None:
    """Refuses, in one line, ``params`` that are not one run's parameters of ``policy``'s
    agent (shapes only: works at trace time, inside ``jit``). A seed-batched tree (what
    ``jax.vmap`` over seeds or ``train_run`` trains: every leaf ``[n_seeds, ...]``) gets the
    fix in the message. A policy without an agent (``random_policy``) takes anything.

    Raises:
      ValueError: a leading seed axis, or the first leaf whose shape differs.
    """
    if policy.agent is None:
        return
    got = jax.tree_util.tree_flatten_with_path(params)[0]
    ref = _param_shapes(policy.agent)
    if [p for p, _ in got] != [p for p, _ in ref]:
        raise ValueError("params: not the parameters of this policy's agent (another method "
                         "or structure): pass AgentParams of the agent the policy was made "
                         "from")
    shapes = [(jax.tree_util.keystr(p), tuple(jnp.shape(g)), tuple(w.shape))
              for (p, g), (_, w) in zip(got, ref)]
    if all(len(g) == len(w) + 1 and g[1:] == w for _, g, w in shapes):
        n = shapes[0][1][0]
        raise ValueError(f"params carry a leading axis of {n} (a seed-batched train state): "
                         f"pass one run's, jax.tree.map(lambda x: x[i], params), or vmap the "
                         f"evaluation over that axis")
    for path, g, w in shapes:
        if g != w:
            raise ValueError(f"params{path} has shape {list(g)}, this policy's agent has "
                             f"{list(w)}")


@functools.lru_cache(maxsize=32)
def _param_shapes(agent):
    """``[(path, ShapeDtypeStruct)]`` of ``agent.init``'s parameters: traced once per agent
    (``jax.eval_shape``), not on every ``evaluate`` call."""
    want = jax.eval_shape(agent.init, jax.ShapeDtypeStruct((2,), jnp.uint32)).params
    return jax.tree_util.tree_flatten_with_path(want)[0]
