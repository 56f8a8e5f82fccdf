"""The whole rollout-update-evaluate loop as one pure function (``make_train``).

Step accounting is the authors' (``dmash/contexts/sac.py``: ``for step in np.arange(
-learning_starts, total_timesteps + 1)``): ``learning_starts`` vector steps of uniform-random
actions (s = -L .. -1), then ``total_steps + 1`` vector steps with one gradient step each
(s = 0 .. N), and an evaluation after s = 0, eval_every, 2 eval_every, ..., N. The loop runs
over the global step ``g = s + L``::

    train(key) = scan(segment, init(key), arange(n_segments))      n_segments = N / E + 1
    segment k  = steps g in [start_k, stop_k) ; evaluate on train / eval-in / eval-out
                 (segment 0: the random phase and s = 0; segment k > 0: E steps)
    step g     = [episode start (g % T == 0): g > 0: reset, after the DMA warm-up from the
                  current window once s >= 0 (the authors' `dmash/contexts/sac.py`) ; open a replay
                  slot whose prefix is
                  the current window]
                 act (uniform-random while s < 0) ; env step for the 20 contexts in lock-step
                 (``num_envs``: m envs per context) ; store ; push the window ;
                 one gradient step (s >= 0)

The window rolls across episodes as the authors' deques do: it starts as K x ``(s0, 0, s0)``,
carries the previous episode's random transitions through the random phase (no warm-up
there), and a training warm-up starts from the previous episode's window, with the encoder in
eval mode and deterministic actions (the authors' ``fill_context_window``). Evaluation
episodes start their warm-up from K x ``(s0', 0, s0')`` of a reset of their own.

``segment`` is also exposed (``make_program``), so a driver can run the same computation one
evaluation interval at a time and checkpoint between calls; ``train`` gives identical results.
The step and segment indices come from loop counters and ``arange`` (not from the batched
carry), so under ``jax.vmap(train)`` over seeds they stay unbatched and every ``lax.cond``
stays a branch.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from hyperjax import envs
from hyperjax.agents import replay as rb
from hyperjax.agents.agent import Agent, AgentConfig, AgentState, HParams
from hyperjax.methods import MethodShapes
from hyperjax.config import Config, check_batch, expand_lr, sweep_names
from hyperjax.envs.wrappers import (Window, fill_context_window, initial_window, push_window,
                                    window_features)
from hyperjax.evaluation import Trajectory, random_policy, run_episodes  # noqa: F401
from hyperjax.policy import make_policy
from hyperjax.utils import raw_key

SPLITS = envs.contexts.SPLITS


@flax.struct.dataclass
class TrainState:
    agent: AgentState
    replay: rb.Replay
    key: jax.Array
    env_state: object          # the training envs' states, leading axis [n_envs]
    obs: jax.Array             # float32[n_envs, obs_dim], the observation to act on
    window: Window | None      # [n_envs, K, ...] raw rows; None without an encoder
    episode_return: jax.Array  # float32[n_envs], return of the running episode
    segments_done: jax.Array   # int32[]
    eval_key: jax.Array        # uint32[2], the key of the last evaluation (to reproduce it)


class Program(NamedTuple):
    """The pieces of a run. ``segment(state, seg_idx)`` runs one evaluation interval;
    ``steps(state, start, stop)`` the training steps ``g in [start, stop)`` alone;
    ``segment_steps(k)`` is segment k's ``(start, stop)`` as Python ints."""

    cfg: Config
    env: envs.Env
    agent: Agent
    sets: envs.ContextSets
    init: Callable
    segment: Callable
    evaluate: Callable
    steps: Callable
    rollout: Callable
    n_segments: int
    segment_steps: Callable


class _Layout(NamedTuple):
    """A program's set-up arithmetic (``_setup``)."""

    n_ctx: int             # contexts trained in (20; 1 for unaware_default)
    n_envs: int            # parallel training envs (m per context, context-major)
    m: int
    train_ctx: jax.Array   # float32[n_ctx, F]
    env_ctx: jax.Array     # float32[n_envs, F]
    eval_ctx: jax.Array    # float32[3 * C * eval_episodes, F]: every split's contexts
    n_eval: int            # C, contexts per evaluation split
    slots: int             # replay slots per env (rb.num_slots)
    n_segments: int        # N / E + 1
    base_hp: HParams       # the config's hyperparameters


def check_layout(cfg: Config, n_contexts: int) -> None:
    """The run's batch and envs fit its ``n_contexts`` training contexts: the batch divides
    evenly over them (stratified sampling) and ``num_envs`` is a multiple of them. Checked once
    per program (``make_program``); the CLI calls it for every pair before compiling any.

    Raises:
      ValueError: naming the field.
    """
    check_batch(cfg.batch_size, n_contexts)
    if cfg.num_envs and cfg.num_envs % n_contexts:
        raise ValueError(f"num_envs={cfg.num_envs} is not a multiple of the {n_contexts} "
                         f"training contexts")


def _setup(config: Config, sets, sweep, env):
    """Validated config, env, context sets, agent and the ``_Layout`` of a program.

    Raises ``ValueError`` (``make_program``'s errors)."""
    cfg = config.resolved(env)
    if env is not None:
        varied = tuple(env.varied)
        sets = sets if sets is not None else envs.make_context_sets(varied)
    else:
        sets = sets if sets is not None else envs.context_sets(cfg.env)
        varied = envs.varied_factors(cfg.env)
    if tuple(sets.factors) != tuple(f.name for f in varied):
        raise ValueError(f"context set factors {list(sets.factors)} do not match "
                         f"{cfg.env!r}'s factors {[f.name for f in varied]}")
    for split in SPLITS:
        envs.validate_context_set(sets.split(split), varied, what=f"{split} context set")
    sizes = {s: len(sets.split(s)) for s in SPLITS}
    if len(set(sizes.values())) > 1:   # one evaluation batch of [3, N] contexts
        raise ValueError(f"the context sets must have one size (the evaluation runs the three "
                         f"splits as one [3, N] batch), got {sizes}")
    if env is None:  # MJX tasks compile a model per context: the run's sets (user ones too)
        env = envs.make_env(cfg.env, np.concatenate([sets.split(s) for s in SPLITS])
                            if envs.is_mjx(cfg.env) else None)
    method = cfg.method()
    T = env.episode_length
    A = env.action_dim
    n_factors = len(env.factors)
    shapes = MethodShapes(env.obs_dim, A, n_factors, cfg.context_size)
    agent = Agent(AgentConfig.from_config(cfg, sweep), method, shapes, env.action_low,
                  env.action_high)
    base_hp = HParams.from_config(cfg, A)
    # the contexts trained in (the method may narrow them: unaware_default); evaluation
    # always covers the three sets
    train_ctx = jnp.asarray(method.training_contexts(np.asarray(sets.train),
                                                     np.asarray(env.default_training_context)),
                            jnp.float32)
    n_ctx = train_ctx.shape[0]
    check_layout(cfg, n_ctx)
    n_envs = cfg.num_envs or n_ctx  # parallel envs: m per training context, context-major
    m = n_envs // n_ctx
    env_ctx = jnp.repeat(train_ctx, m, axis=0)  # [n_envs, F]
    n_segments = cfg.total_steps // cfg.eval_every + 1
    # a context's m envs share its capacity (buffer_size transitions per context)
    slots = rb.num_slots(cfg.buffer_size // m, cfg.total_steps, T)
    n_eval = sets.train.shape[0]
    # the train split is evaluated in the contexts trained in, as the authors' eval_train_envs
    # (unaware_default: its one context, tiled over the C rows; the mean is unchanged)
    stacked = sets.stacked().copy()  # [3, C, F]
    stacked[0] = np.resize(np.asarray(train_ctx), stacked[0].shape)
    eval_ctx = jnp.asarray(np.repeat(stacked.reshape(-1, n_factors),
                                     cfg.eval_episodes, axis=0))  # [3*C*E, F]

    return cfg, env, sets, agent, _Layout(n_ctx, n_envs, m, train_ctx, env_ctx, eval_ctx,
                                          n_eval, slots, n_segments, base_hp)


def make_program(config: Config, sets: envs.ContextSets | None = None,
                 sweep: tuple[str, ...] = (), env: envs.Env | None = None) -> Program:
    """Builds ``init``, ``segment`` and ``evaluate`` for ``config``.

    Args:
      config: a ``Config`` (validated here).
      sets: context sets to train and evaluate on; default ``hyperjax.context_sets(env)`` for a
        registered task, ``make_context_sets(env.varied)`` for an env instance.
      sweep: ``HParams`` names that vary per run (``Config.sweepable()``; ``lr`` for the
        four learning rates at once): each run takes them from ``init(key, hparams)``, so
        ``jax.vmap`` over ``(keys, hparams)`` is a sweep in one program.
      env: an env instance to train on (any ``hyperjax.envs.Env`` with ``varied`` factors;
        need not be registered; ``config.env`` is then its label).
    Raises:
      ValueError: invalid config, malformed context sets or an unsweepable name (names the
        field / factor).
    """
    sweep = sweep_names(sweep)
    cfg, env, sets, agent, lay = _setup(config, sets, sweep, env)
    T, A, K = env.episode_length, env.action_dim, agent.window_size
    L, E = cfg.learning_starts, cfg.eval_every
    n_ctx, n_envs, m = lay.n_ctx, lay.n_envs, lay.m
    train_ctx, env_ctx, eval_ctx = lay.train_ctx, lay.env_ctx, lay.eval_ctx
    low, high = env.action_low, env.action_high
    base_hp = lay.base_hp

    def segment_steps(k: int) -> tuple[int, int]:
        """Global steps ``[start, stop)`` of segment ``k`` (module doc)."""
        return (0 if k == 0 else L + 1 + (k - 1) * E), L + 1 + k * E

    def reset(key, contexts):
        return jax.vmap(env.reset)(jax.random.split(key, contexts.shape[0]), contexts)

    def init(key, hparams=None) -> TrainState:
        """A fresh ``TrainState`` from ``key`` (a raw ``uint32[2]`` or a typed threefry key,
        the same numbers either way: ``utils.raw_key``); ``hparams``: ``{name: float32[]}``
        for the swept names (``lr`` sets the four learning rates; a name not swept is refused:
        the program reads it from the config, so its value would be ignored)."""
        key = raw_key(key)
        hparams = expand_lr(hparams or {})
        extra = sorted(set(hparams) - set(sweep))
        if extra:
            raise ValueError(f"hparams {', '.join(extra)}: not swept by this program (swept: "
                             f"{', '.join(sweep) or 'none'}); name them in "
                             f"make_program(..., sweep=...) / make_train(..., sweep=...)")
        k_agent, k_reset, k_run = jax.random.split(key, 3)
        replay = rb.init(n_envs, lay.slots, K, T, env.obs_dim, A)
        env_state, ts = reset(k_reset, env_ctx)
        window = initial_window(ts.obs, K, A) if K else None
        hp = base_hp.replace(**hparams)
        return TrainState(agent.init(k_agent, hp), replay, k_run, env_state, ts.obs, window,
                          jnp.zeros(n_envs), jnp.zeros((), jnp.int32), jnp.zeros_like(key))

    def warmup(params, key, contexts, window, start):
        """DMA warm-up for a batch of envs from ``window`` and the reset ``start`` (``(state,
        timestep)``, batched): ``fill_context_window`` vmapped with deterministic actions and
        the encoder in eval mode (``compute_context(..., training=False)`` in the authors'
        `dmash/contexts/sac.py`)."""

        def one(key, context, window, start):
            def policy(k, obs, feats):
                return agent.act(params, obs[None], feats[None], context[None], k,
                                 deterministic=True, encoder_training=False)[0]
            return fill_context_window(env, key, context, policy, K, window, start)

        return jax.vmap(one)(jax.random.split(key, contexts.shape[0]), contexts, window,
                             start)

    def resets(key, contexts, n: int):
        """``n`` independent resets of every env in one batched call (one compiled reset per
        call site): a list of ``n`` ``(state, timestep)`` batches."""
        b = contexts.shape[0]
        out = reset(key, jnp.tile(contexts, (n, 1)))
        return [jax.tree.map(lambda x: x[i * b:(i + 1) * b], out) for i in range(n)]

    # --- training ------------------------------------------------------------------------
    def update_fn(agent_state, replay, key, s):
        k_sample, k_upd = jax.random.split(key)
        batch = rb.sample(replay, k_sample, cfg.per_context_batch(n_ctx), T, K,
                          n_ctx if m > 1 else None)
        return agent.update(agent_state, batch, train_ctx, k_upd,
                            s % cfg.policy_frequency == 0)

    def train_step(g, carry):
        st, acc = carry
        s = g - L
        key, k_ep, k_act, k_env, k_upd = jax.random.split(st.key, 5)

        def new_episode(st):
            k_r, k_w = jax.random.split(k_ep)
            if not K:
                env_state, ts = reset(k_r, env_ctx)
                return st.replace(env_state=env_state, obs=ts.obs)
            (env_state, ts), start = resets(k_r, env_ctx, 2)

            def warm(st):
                w = warmup(st.agent.params, k_w, env_ctx, st.window, start)
                return st.replace(env_state=env_state, obs=ts.obs, window=w.window)

            def plain(st):
                return st.replace(env_state=env_state, obs=ts.obs)

            return jax.lax.cond(s >= 0, warm, plain, st)

        episode_start = g % T == 0
        st = jax.lax.cond(episode_start & (g > 0), new_episode, lambda st: st, st)
        prefix = tuple(st.window) if K else ()
        replay = jax.lax.cond(episode_start, lambda r: rb.start_episode(r, *prefix),
                              lambda r: r, st.replay)
        ret = jnp.where(episode_start, 0.0, st.episode_return)

        def policy_action(_):
            feats = window_features(st.window) if K else None
            return agent.act(st.agent.params, st.obs, feats, env_ctx, k_act,
                             deterministic=False, encoder_training=True, hp=st.agent.hparams)

        def random_action(_):
            return jax.random.uniform(k_act, (n_envs, A), jnp.float32, low, high)

        action = jax.lax.cond(s < 0, random_action, policy_action, None)
        env_state, ts = jax.vmap(env.step)(jax.random.split(k_env, n_envs), st.env_state,
                                           action, env_ctx)
        replay = rb.add(replay, K, st.obs, action, ts.reward, ts.obs, ts.terminated,
                        ts.truncated)
        window = jax.vmap(push_window)(st.window, st.obs, action, ts.obs) if K else st.window
        ret = ret + ts.reward

        def no_update(agent_state, replay, key, s):
            shapes = jax.eval_shape(update_fn, agent_state, replay, key, s)[1]
            return agent_state, jax.tree.map(lambda x: jnp.full(x.shape, jnp.nan, x.dtype),
                                             shapes)

        agent_state, metrics = jax.lax.cond(s >= 0, update_fn, no_update, st.agent, replay,
                                            k_upd, s)
        episode_end = g % T == T - 1
        metrics["train_return"] = jnp.where(episode_end, jnp.mean(ret), jnp.nan)
        acc = {n: (tot + jnp.where(jnp.isnan(metrics[n]), 0.0, metrics[n]),
                   cnt + (~jnp.isnan(metrics[n])).astype(jnp.float32))
               for n, (tot, cnt) in acc.items()}
        st = st.replace(agent=agent_state, replay=replay, key=key, env_state=env_state,
                        obs=ts.obs, window=window, episode_return=ret)
        return st, acc

    def steps(state: TrainState, start, stop):
        """Training steps ``g in [start, stop)`` (``int32[]``, unbatched). Returns
        ``(state, metrics)``: every training metric's mean over the steps that have it
        (losses after learning starts; ``train_return`` over the episodes that ended), NaN
        where none did."""
        shapes = jax.eval_shape(update_fn, state.agent, state.replay, state.key, jnp.int32(0))[1]
        zero = jnp.zeros((), jnp.float32)
        acc = {n: (zero, zero) for n in [*shapes, "train_return"]}
        state, acc = jax.lax.fori_loop(start, stop, train_step, (state, acc))
        return state, {n: tot / cnt for n, (tot, cnt) in acc.items()}

    # --- evaluation ------------------------------------------------------------------------
    policy = make_policy(agent)
    baseline = random_policy(A, low, high)

    def rollout(params, key, contexts, record: bool = True, random_actions: bool = False):
        """Deterministic episodes, one per row of ``contexts`` ``float32[N, F]``, in one batch:
        ``hyperjax.evaluation.run_episodes`` with this agent's policy (the DMA warm-up, the
        encoder in eval mode; the authors' `dmash/contexts/sac.py`). Returns ``(returns float32[N],
        Trajectory)``;
        the trajectory's arrays are ``[N, P + T, ...]`` with the P = K warm-up transitions
        first (as in the replay), or None when ``record`` is False. ``random_actions``:
        uniform-random actions instead of the policy (no warm-up; ``params`` unused), the
        baseline every task's scores are compared with.
        """
        return run_episodes(baseline if random_actions else policy, params, env, contexts, key,
                            record)

    def evaluate(params, key, random_actions: bool = False):
        """Deterministic returns on all splits: ``float32[3, C, eval_episodes]`` (the authors'
        `dmash/contexts/sac.py`).

        Every context of train / eval-in / eval-out runs ``eval_episodes`` episodes in one
        batch (``rollout``), with the encoder in eval mode and the DMA warm-up before each.
        ``random_actions``: the uniform-random policy on the same episodes instead.
        """
        ret, _ = rollout(params, key, eval_ctx, record=False, random_actions=random_actions)
        return ret.reshape(len(SPLITS), lay.n_eval, cfg.eval_episodes)

    def segment(state: TrainState, seg_idx):
        """One evaluation interval: its training steps (``segment_steps``), then an evaluation.

        ``seg_idx`` (``int32[]``, unbatched) is the interval's index; returns ``(state,
        metrics)`` with scalar training metrics (means over the interval), ``step`` (the
        authors' s of the evaluation: ``seg_idx * eval_every``), ``eval_return``
        ``float32[3, C]`` (mean over episodes) and ``aer`` ``float32[3]``.
        """
        stop = L + 1 + seg_idx * E
        start = jnp.where(seg_idx == 0, 0, stop - E)
        state, metrics = steps(state, start, stop)
        key, k_eval = jax.random.split(state.key)
        returns = evaluate(state.agent.params, k_eval).mean(-1)
        metrics.update(step=seg_idx * E, eval_return=returns, aer=returns.mean(-1))
        return state.replace(key=key, segments_done=state.segments_done + 1,
                             eval_key=k_eval), metrics

    return Program(cfg, env, agent, sets, init, segment, evaluate, steps, rollout,
                   lay.n_segments, segment_steps)


def make_train(config: Config, sets: envs.ContextSets | None = None,
               env: envs.Env | None = None, sweep: tuple[str, ...] = ()):
    """``train(key, hparams=None) -> (TrainState, metrics)``: the whole run as one pure
    function. With ``sweep`` names (``make_program``'s), ``hparams`` ``{name: float32[]}``
    sets them per run: ``jax.jit(jax.vmap(train))(keys, {"lr": lrs})`` trains one run per
    (key, lr) pair in one program.

    ``metrics`` leaves have a leading axis ``[n_segments]`` (one row per evaluation):
    ``step``, ``aer`` ``[n, 3]`` (train, eval_in, eval_out), ``eval_return`` ``[n, 3, 20]``,
    ``train_return``, ``q_loss``, ``actor_loss``, ``alpha``, ... ``jax.jit(jax.vmap(train))``
    over a batch of keys is a seed sweep. ``key``: a raw ``uint32[2]`` key
    (``jax.random.PRNGKey``) or a typed threefry key (``jax.random.key``), the same run either
    way. ``sets`` and ``env`` as ``make_program`` (an env instance need not be registered).

    The trained agent's policy comes with it (brax's ``make_inference_fn``, rejax's
    ``make_act``): ``train.policy`` is ``make_policy(train.program.agent)``, pure and batched,
    for one run's parameters (``jax.tree.map(lambda x: x[i], state.agent.params)`` after a
    vmap over seeds); ``train.program`` is the ``Program`` (env, context sets, agent).

    Raises:
      ValueError: invalid config (see ``Config.resolved``) or context sets.
    """
    prog = make_program(config, sets, sweep, env=env)

    def train(key, hparams=None):
        state = prog.init(key, hparams)
        return jax.lax.scan(prog.segment, state, jnp.arange(prog.n_segments))

    train.program, train.policy = prog, make_policy(prog.agent)
    return train
