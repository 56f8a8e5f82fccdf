"""TD3 experts, one per spec, all specs of a grid trained in one vmapped, compiled program
(HyPoGen's `agents/td3.py`: the released ``agents/td3.py`` and ``cfgs/agent/td3.yaml``).

Per spec: actor ``obs → 256 → 256 → act`` (ReLU, tanh), twin critics ``[obs, act] → 256 → 256
→ 1``, orthogonal weights and zero biases; Adam 1e-4; batch 256; τ = 0.01; actor and target
networks updated every 2 critic steps; γ = 0.99; 1-step returns. Exploration: uniform random
actions for the first ``random_steps`` (2000), updates from ``seed_steps`` (4000) on, then
Gaussian noise with std ``linear(1.0 → 0.1 over 100k steps)``, clipped actions; target-policy
smoothing noise with the same std, clipped at 0.3. The paper trains 1M steps per expert (a GPU
budget); every count is a field of ``TD3Config``.

``train_experts(env, specs, cfg, key)`` returns the stacked per-spec ``TD3State``;
``expert_policy`` / ``expert_value`` plug into :func:`hyperjax.hypogen.data.rollout` (value =
critic Q1, as the released rollouts).
"""
from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from hyperjax.envs.core import Env
from hyperjax.optim import apply_gradients, polyak


@dataclasses.dataclass(frozen=True)
class TD3Config:
    total_steps: int = 1_000_000
    random_steps: int = 2000
    seed_steps: int = 4000
    batch_size: int = 256
    buffer_size: int = 1_000_000
    lr: float = 1e-4
    tau: float = 0.01
    gamma: float = 0.99
    update_every: int = 2          # actor + target delay
    std_start: float = 1.0
    std_end: float = 0.1
    std_steps: int = 100_000
    stddev_clip: float = 0.3
    hidden: int = 256

    def std(self, step):
        frac = jnp.clip(step / self.std_steps, 0.0, 1.0)
        return self.std_start + frac * (self.std_end - self.std_start)


def _dense(n):
    return nn.Dense(n, kernel_init=nn.initializers.orthogonal(),
                    bias_init=nn.initializers.zeros)


class TD3Actor(nn.Module):
    act_dim: int
    hidden: int = 256

    @nn.compact
    def __call__(self, obs):
        h = nn.relu(_dense(self.hidden)(nn.relu(_dense(self.hidden)(obs))))
        return jnp.tanh(_dense(self.act_dim)(h))


class TD3Critic(nn.Module):
    hidden: int = 256

    @nn.compact
    def __call__(self, obs, action):
        x = jnp.concatenate([obs, action], -1)
        qs = [_dense(1)(nn.relu(_dense(self.hidden)(nn.relu(_dense(self.hidden)(x)))))[..., 0]
              for _ in range(2)]
        return qs[0], qs[1]


class TD3Replay(NamedTuple):
    obs: jax.Array        # float32[C, obs]
    action: jax.Array     # float32[C, act]
    reward: jax.Array     # float32[C]
    next_obs: jax.Array   # float32[C, obs]
    discount: jax.Array   # float32[C]: 0 on termination
    size: jax.Array       # int32[]
    ptr: jax.Array        # int32[]


class TD3State(NamedTuple):
    """One expert's state (a leading spec axis when vmapped)."""

    actor: Any
    critic: Any
    target_actor: Any
    target_critic: Any
    actor_opt: Any
    critic_opt: Any
    replay: TD3Replay
    env_state: Any
    obs: jax.Array
    key: jax.Array
    step: jax.Array
    episode_return: jax.Array   # float32[]: running return of the current episode
    last_return: jax.Array      # float32[]: return of the last finished episode


def make_td3(env: Env, cfg: TD3Config):
    """Returns ``(init, step)`` for a stack of experts, one per spec:

    - ``init(key, spec) -> TD3State`` for one spec (vmap it over specs);
    - ``step(state, specs) -> (state, metrics)`` for the whole stack: ``state`` a ``TD3State``
      with a leading spec axis ``S``, ``specs float32[S, d]``; metrics ``float32[S]`` each.

    ``step`` is batched on purpose. Every spec's step count is the same (the experts are
    created and stepped together), so the warm-up and actor-delay predicates are read once,
    unbatched (``state.step[0]``), and stay real branches: under ``vmap`` a ``lax.cond`` on a
    batched predicate becomes a select that runs both branches, i.e. an actor update on every
    step and critic updates through the seed steps, computed and thrown away. Likewise the
    envs reset only at a step where some episode ended (``lax.cond`` on ``any(done)``), not on
    every step under a ``where``: a reset can cost far more than a step (Playground's Cheetah
    settles for 200 physics steps). The numbers are those of the per-spec step, float rounding
    aside.
    """
    actor, critic = TD3Actor(env.action_dim, cfg.hidden), TD3Critic(cfg.hidden)
    tx = optax.adam(cfg.lr)
    cap = min(cfg.buffer_size, cfg.total_steps)

    def init(key, spec) -> TD3State:
        ka, kc, ke, kr = jax.random.split(key, 4)
        obs0 = jnp.zeros((env.obs_dim,))
        pa = actor.init(ka, obs0)
        pc = critic.init(kc, obs0, jnp.zeros((env.action_dim,)))
        env_state, ts = env.reset(ke, spec)
        z = lambda *s: jnp.zeros(s, jnp.float32)
        replay = TD3Replay(z(cap, env.obs_dim), z(cap, env.action_dim), z(cap),
                        z(cap, env.obs_dim), z(cap), jnp.zeros((), jnp.int32),
                        jnp.zeros((), jnp.int32))
        return TD3State(pa, pc, pa, pc, tx.init(pa), tx.init(pc), replay, env_state, ts.obs,
                        kr, jnp.zeros((), jnp.int32), jnp.zeros(()), jnp.zeros(()))

    def update(s: TD3State, key, t):
        kb, kn = jax.random.split(key)
        idx = jax.random.randint(kb, (cfg.batch_size,), 0, jnp.maximum(s.replay.size, 1))
        b = jax.tree_util.tree_map(lambda x: x[idx], s.replay[:5])
        std = cfg.std(s.step)
        noise = jnp.clip(std * jax.random.normal(kn, b[1].shape), -cfg.stddev_clip,
                         cfg.stddev_clip)
        a_next = jnp.clip(actor.apply(s.target_actor, b[3]) + noise, -1.0, 1.0)
        tq1, tq2 = critic.apply(s.target_critic, b[3], a_next)
        target = b[2] + cfg.gamma * b[4] * jnp.minimum(tq1, tq2)

        def critic_loss(pc):
            q1, q2 = critic.apply(pc, b[0], b[1])
            return jnp.mean((q1 - target) ** 2) + jnp.mean((q2 - target) ** 2)

        c_loss, g = jax.value_and_grad(critic_loss)(s.critic)
        pc, c_opt = apply_gradients(tx, g, s.critic_opt, s.critic)

        def actor_loss(pa):
            return -jnp.mean(critic.apply(pc, b[0], actor.apply(pa, b[0]))[0])

        def do_actor(_):
            a_loss, ga = jax.value_and_grad(actor_loss)(s.actor)
            pa, a_opt = apply_gradients(tx, ga, s.actor_opt, s.actor)
            return (pa, a_opt, polyak(s.target_actor, pa, cfg.tau),
                    polyak(s.target_critic, pc, cfg.tau), a_loss)

        def skip(_):
            return s.actor, s.actor_opt, s.target_actor, s.target_critic, jnp.zeros(())

        pa, a_opt, ta, tc, a_loss = jax.lax.cond(t % cfg.update_every == 0, do_actor, skip,
                                                 None)
        return s._replace(actor=pa, critic=pc, target_actor=ta, target_critic=tc,
                          actor_opt=a_opt, critic_opt=c_opt), c_loss, a_loss

    def act(s: TD3State, spec):
        """One env step of one spec, its transition stored; the env state is the stepped one
        (the batched ``step`` resets it where the episode ended)."""
        key, k_rand, k_noise, k_env, k_upd, k_reset = jax.random.split(s.key, 6)
        a_pi = actor.apply(s.actor, s.obs)
        a_pi = jnp.clip(a_pi + cfg.std(s.step) * jax.random.normal(k_noise, a_pi.shape),
                        -1.0, 1.0)
        a_rand = jax.random.uniform(k_rand, a_pi.shape, jnp.float32, -1.0, 1.0)
        action = jnp.where(s.step < cfg.random_steps, a_rand, a_pi)
        env_state, ts = env.step(k_env, s.env_state, action, spec)
        r = s.replay
        i = r.ptr
        replay = TD3Replay(r.obs.at[i].set(s.obs), r.action.at[i].set(action),
                        r.reward.at[i].set(ts.reward), r.next_obs.at[i].set(ts.obs),
                        r.discount.at[i].set(1.0 - ts.terminated.astype(jnp.float32)),
                        jnp.minimum(r.size + 1, cap), (i + 1) % cap)
        ep_ret = s.episode_return + ts.reward
        done = ts.terminated | ts.truncated
        s = s._replace(replay=replay, env_state=env_state, obs=ts.obs, key=key,
                       episode_return=jnp.where(done, 0.0, ep_ret),
                       last_return=jnp.where(done, ep_ret, s.last_return))
        return s, done, k_reset, k_upd

    def step(s: TD3State, specs):
        t = s.step[0]                       # every spec's count: one unbatched predicate
        s, done, k_reset, k_upd = jax.vmap(act)(s, specs)

        def with_reset(s):
            env_state, ts = jax.vmap(env.reset)(k_reset, specs)
            pick = lambda new, old: jax.vmap(jnp.where)(done, new, old)
            return s._replace(env_state=jax.tree_util.tree_map(pick, env_state, s.env_state),
                              obs=pick(ts.obs, s.obs))

        s = jax.lax.cond(jnp.any(done), with_reset, lambda s: s, s)
        s, c_loss, a_loss = jax.lax.cond(
            t >= cfg.seed_steps, lambda x: jax.vmap(update, (0, 0, None))(x, k_upd, t),
            lambda x: (x, jnp.zeros(done.shape), jnp.zeros(done.shape)), s)
        return s._replace(step=s.step + 1), {"critic_loss": c_loss, "actor_loss": a_loss,
                                             "last_return": s.last_return}

    return init, step


# The released per-task TD3 batch (cfgs/task/walker_walk.yaml: batch_size 512; the others
# keep td3.yaml's 256).
TASK_BATCH = {"walker": 512}


def td3_config(task: str, **kw) -> TD3Config:
    """``TD3Config`` for spec task ``task`` (``{cheetah,walker,finger}_…``): the released
    per-body batch (walker 512), then ``kw``."""
    body = task.partition("_")[0]
    return TD3Config(**{"batch_size": TASK_BATCH.get(body, TD3Config.batch_size), **kw})


def train_experts(env: Env, specs, cfg: TD3Config, key, segments: int = 10, log=print,
                  state=None, start_segment: int = 0, on_segment=None):
    """Trains one TD3 expert per row of ``specs float32[S, d]``, all at once (vmapped over
    specs; ``segments`` compiled ``lax.scan`` chunks of ``total_steps / segments`` steps, with a
    progress line after each). Returns the stacked ``TD3State``.

    Resuming: ``on_segment(i, state)`` runs after segment ``i`` (0-based; a place to
    checkpoint the whole state, replay included); ``state`` with ``start_segment = i + 1``
    continues from such a checkpoint. The state carries its own PRNG key, so a resumed run is
    bitwise the uninterrupted one.

    Raises ``ValueError`` if ``segments`` does not divide ``total_steps`` or ``start_segment``
    is outside ``[0, segments]``.
    """
    if cfg.total_steps % segments:
        raise ValueError(f"segments={segments} must divide total_steps={cfg.total_steps}")
    if not 0 <= start_segment <= segments:
        raise ValueError(f"start_segment={start_segment} must be in [0, {segments}]")
    init, step = make_td3(env, cfg)
    specs = jnp.asarray(specs, jnp.float32)
    n = cfg.total_steps // segments
    if state is None:
        keys = jax.random.split(key, specs.shape[0])
        state = jax.jit(jax.vmap(init))(keys, specs)

    @jax.jit
    def segment(state):
        def body(s, _):
            return step(s, specs)
        state, m = jax.lax.scan(body, state, None, n)
        return state, jax.tree_util.tree_map(lambda x: x[-1], m)

    for i in range(start_segment, segments):
        state, m = segment(state)
        log(f"  experts: step {(i + 1) * n:8d}/{cfg.total_steps}  last episode return "
            f"mean {float(m['last_return'].mean()):8.2f}  min {float(m['last_return'].min()):8.2f}")
        if on_segment is not None:
            on_segment(i, state)
    return state


def expert_policy(env_act_dim: int, hidden: int = 256):
    """``policy(state_s, obs, spec)``: the deterministic actor (for ``data.rollout``)."""
    actor = TD3Actor(env_act_dim, hidden)
    return lambda s, obs, spec: actor.apply(s.actor, obs)


def expert_value(hidden: int = 256):
    """``value(state_s, obs, action, spec)``: critic Q1 (the released rollouts' ``value``)."""
    critic = TD3Critic(hidden)
    return lambda s, obs, action, spec: critic.apply(s.critic, obs, action)[0]
