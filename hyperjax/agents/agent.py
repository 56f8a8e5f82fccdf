"""SAC with a context method plugged in (the authors' ``dmash/contexts/sac.py`` and ``config.py``).

``Agent(config, method, shapes)`` holds the networks (no state); parameters, optimizer states and
hyperparameters live in an ``AgentState`` pytree of named dataclasses, so everything is pure
and vmappable over seeds and hyperparameter points alike.

* ``AgentConfig``: the static choices (batch, policy frequency, the numerics flags), with
  ``Config``'s defaults.
* ``HParams``: ``Config``'s fields marked ``sweep=True`` (learning rates, tau, gamma, target
  entropy, mask rate), every one a pytree leaf: ``jax.vmap`` over an ``AgentState`` whose
  ``hparams`` differ per run is a sweep (rejax's ``pytree_node=True`` fields). A new sweepable
  hyperparameter is one ``Config`` field and the code that reads it.
* The method (``hyperjax.methods``) gives each network its conditioning and says which
  parameter groups each loss may move; SAC's losses (``hyperjax.agents.sac.make_losses``)
  know nothing about contexts.

Gradient routing (the authors' `dmash/contexts/sac.py`) for the paper's methods: encoder phi,
hypernetwork eta and
dynamics model theta learn from the dynamics loss only; the actor xi from the actor loss, the
critics zeta from the critic loss, log alpha from its own loss. z and omega = h_eta(z) enter
the RL losses through ``stop_gradient`` (tests check the exact zeros for every preset).
"""
from __future__ import annotations

import dataclasses
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

from hyperjax.agents import sac
from hyperjax.agents.replay import Batch
from hyperjax.config import Config
from hyperjax.methods import ContextMethod, MethodShapes
from hyperjax.nets.networks import Actor, TwinCritic
from hyperjax.optim import apply_gradients, polyak


class _HParamsMethods:
    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_config(cls, cfg: Config, action_dim: int) -> "HParams":
        """A resolved ``Config``'s values (``target_entropy`` None: ``-action_dim``)."""
        hp = cls(**{n: getattr(cfg, n) for n in cls.names()})
        return hp.replace(target_entropy=-float(action_dim)) if hp.target_entropy is None \
            else hp

    def as_arrays(self) -> "HParams":
        return jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), self)


@flax.struct.dataclass
class HParams(_HParamsMethods):
    """Hyperparameters that change no shape: ``Config.sweepable()``'s fields, in its order, as
    pytree leaves (floats, or ``float32[]`` after ``as_arrays``; a sweep stacks them to
    ``float32[R]``). Defaults are the authors' (``dmash/contexts/sac.py``, as ``Config``'s);
    ``target_entropy`` -1 and ``mask_rate`` 0 stand until ``Agent.default_hparams`` or
    ``from_config`` fill the agent's (-|A|, the preset's rate). A new sweepable ``Config`` field
    is one more field here (``tests/test_methods.py`` checks the two lists are equal)."""

    q_lr: Any = Config.q_lr
    actor_lr: Any = Config.actor_lr
    alpha_lr: Any = Config.alpha_lr
    model_lr: Any = Config.model_lr
    tau: Any = Config.tau
    gamma: Any = Config.gamma
    target_entropy: Any = -1.0
    mask_rate: Any = 0.0


@dataclasses.dataclass(frozen=True)
class AgentConfig:
    """The agent's static choices (shapes and flags; no budget, no evaluation, no output).

    Attributes:
      batch_size: stratified batch (``batch_size / n_contexts`` per context).
      policy_frequency: actor and alpha updated this many times every this many steps.
      bootstrap_truncation: False = the authors' ``done = terminated or truncated``.
      exact_tanh_logprob: distrax's exact tanh log-determinant instead of CleanRL's.
      swept: hyperparameter names that vary per run (the encoder reads ``HParams.mask_rate``
        only when it is swept; otherwise its preset rate is a compile-time constant).
    Defaults are ``Config``'s (one place).
    """

    batch_size: int = Config.batch_size
    policy_frequency: int = Config.policy_frequency
    bootstrap_truncation: bool = Config.bootstrap_truncation
    exact_tanh_logprob: bool = Config.exact_tanh_logprob
    swept: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, cfg: Config, swept: tuple[str, ...] = ()) -> "AgentConfig":
        """The static choices of a ``Config``."""
        names = [f.name for f in dataclasses.fields(cls) if f.name != "swept"]
        return cls(**{n: getattr(cfg, n) for n in names}, swept=tuple(swept))


@flax.struct.dataclass
class AgentParams:
    actor: Any
    critic: Any
    target_critic: Any
    log_alpha: jax.Array
    method: dict   # {group: params}; {} for methods without parameters


@flax.struct.dataclass
class OptStates:
    actor: Any
    critic: Any
    alpha: Any
    method: dict   # {group: Adam state}


@flax.struct.dataclass
class AgentState:
    params: AgentParams
    opt_state: OptStates
    hparams: HParams


ADAM = optax.scale_by_adam()  # every optimizer of the agent: Adam, its lr from HParams
GROUPS = ("actor", "critic", "target_critic", "log_alpha", "method")


class Agent:
    """SAC (CleanRL numerics) with ``method``'s conditioning (module doc).

    Args:
      config: ``AgentConfig``.
      method: a ``ContextMethod`` (``hyperjax.methods.get(name)``).
      shapes: ``MethodShapes`` (obs/action sizes, number of context factors, K).
      low, high: scalar action bounds.
    """

    # Detached inferred methods encode every actor iteration's z in one batched call before the
    # actor loop (same values as encoding inside each iteration; a test compares both)
    hoist_encoder = True
    # True only to count FLOPs (XLA's cost analysis counts a loop body once); unrolling
    # changes float rounding, so training keeps the loop
    unroll_actor_loop = False

    def __init__(self, config: AgentConfig, method: ContextMethod, shapes: MethodShapes,
                 low: float = -1.0, high: float = 1.0):
        for name in config.swept:
            if name not in HParams.names():
                raise ValueError(f"cannot sweep {name!r}; sweepable: "
                                 f"{', '.join(HParams.names())}")
        if "mask_rate" in config.swept and not method.inferred:
            raise ValueError(f"cannot sweep mask_rate: {method.name!r} has no context encoder")
        self.config, self.method, self.shapes = config, method, shapes
        self.low, self.high = float(low), float(high)
        self.actor = Actor(shapes.action_dim, merge=method.policy_merge)
        self.critic = TwinCritic(merge=method.q_merge)
        self.losses = sac.make_losses(self.actor, self.critic, self.low, self.high,
                                      config.exact_tanh_logprob, config.bootstrap_truncation)

    # --- shapes and defaults ---------------------------------------------------------------
    @property
    def window_size(self) -> int:
        """K when the method reads a window, else 0."""
        return self.method.window_size(self.shapes)

    @property
    def window_shape(self) -> tuple[int, int]:
        """``(K, 2*obs_dim + act_dim)``, or ``(0, 0)`` without an encoder."""
        K = self.window_size
        return (K, 2 * self.shapes.obs_dim + self.shapes.action_dim) if K else (0, 0)

    def default_hparams(self, **values) -> HParams:
        """The HParams of this agent: the authors' values, target entropy ``-|A|``, the method's
        mask rate, overridden by ``values``."""
        hp = HParams(target_entropy=-float(self.shapes.action_dim),
                     mask_rate=float(self.method.mask_rate))
        return hp.replace(**values)

    def _mask(self, hp):
        return hp.mask_rate if "mask_rate" in self.config.swept else None

    # --- init ------------------------------------------------------------------------------
    def init(self, key, hparams: HParams | None = None) -> AgentState:
        """Initial parameters (PyTorch-default init), Adam states, log alpha = 0.

        ``hparams``: the run's ``HParams`` (default: ``default_hparams()``); stored as
        ``float32[]`` leaves.
        """
        hp = (self.default_hparams() if hparams is None else hparams).as_arrays()
        k_a, k_c, k_m, _ = jax.random.split(key, 4)
        shapes = self.shapes
        obs = jnp.zeros((1, shapes.obs_dim))
        act = jnp.zeros((1, shapes.action_dim))
        window = jnp.zeros((1, *self.window_shape))
        ctx = jnp.zeros((1, shapes.n_factors))
        method = self.method.init(k_m, shapes)
        params = AgentParams(None, None, None, jnp.zeros((), jnp.float32), method)
        cond_a, cond_q = self.condition(params, window, ctx, jax.random.PRNGKey(0), False,
                                        None)
        params = params.replace(actor=self.actor.init(k_a, obs, cond_a))
        if self.method.reads_actor:  # the critics' adapter weights come from the actor's
            _, cond_q = self.condition(params, window, ctx, jax.random.PRNGKey(0), False, None)
        critic = self.critic.init(k_c, obs, act, cond_q)
        params = params.replace(critic=critic, target_critic=critic)
        opt = OptStates(ADAM.init(params.actor), ADAM.init(critic),
                        ADAM.init(params.log_alpha),
                        {g: ADAM.init(v) for g, v in method.items()})
        return AgentState(params, opt, hp)

    # --- conditioning ----------------------------------------------------------------------
    def condition(self, params: AgentParams, window, context, key, training: bool, hp):
        """``(actor Cond, critic Cond)`` (the method's; its stop-gradients applied).

        Args:
          params: ``AgentParams``.
          window: ``float32[B, K, 2*obs_dim+act_dim]`` (ignored without an encoder).
          context: ``float32[B, n_factors]`` true contexts (used by aware methods only).
          key: PRNG key for the encoder's shuffle / mask / subset (fresh per loss, as the
              authors draw it).
          training: encoder mode.
          hp: ``HParams``.
        """
        hp = None if hp is None else hp.replace(mask_rate=self._mask(hp))
        return self.method.condition(self.shapes, params, window, context, key, training, hp)

    def encode(self, params: AgentParams, window, key, training: bool, hp=None):
        """z = g_phi(window): ``float32[B, d_z]`` (inferred methods only; the authors'
        `dmash/contexts/encoder.py`)."""
        mask = None if hp is None else self._mask(hp)
        return self.method.encode_out(self.shapes, params.method, window, key, training,
                                      mask).z

    def cond_from_z(self, params: AgentParams, z, stop_gradient: bool = True):
        """``(actor Cond, critic Cond)`` from a given z; ``stop_gradient=False`` lifts the
        method's stop-gradients, only to measure shadow gradients (the authors'
        `dmash/informativeness/metrics.py`)."""
        return self.method.conds_from(self.shapes, params, z, stop_gradient)

    # --- acting ------------------------------------------------------------------------------
    def act(self, params: AgentParams, obs, window, context, key, deterministic: bool,
            encoder_training: bool, hp=None):
        """Actions ``float32[B, act_dim]`` for ``obs: float32[B, obs_dim]``."""
        k_c, k_pi = jax.random.split(key)
        cond, _ = self.condition(params, window, context, k_c, encoder_training, hp)
        mean, log_std = self.actor.apply(params.actor, obs, cond)
        if deterministic:
            return sac.deterministic_action(mean, self.low, self.high)
        return sac.sample_and_log_prob(mean, log_std, k_pi, self.low, self.high,
                                       self.config.exact_tanh_logprob)[0]

    # --- losses of the full parameters (the update differentiates subsets of them) --------
    def aux_loss(self, method_params, batch: Batch, key, hp):
        """The method's own loss: ``(loss, mse)`` (the dynamics model; the authors'
        `dmash/contexts/model.py`)."""
        return self.method.aux_loss(self.shapes, method_params, batch, key,
                                    hp.replace(mask_rate=self._mask(hp)))

    def critic_loss(self, params: AgentParams, batch: Batch, context, key, hp, conds=None):
        """Twin-critic TD loss with the method's conditioning: ``(loss, mean Q)``.

        ``key`` splits into the encoder's and the next action's; ``conds`` replaces the
        conditioning (shadow gradients)."""
        k_c, k_pi = jax.random.split(key)
        if conds is None:
            conds = self.condition(params, batch.window, context, k_c, True, hp)
        return self.losses.critic(params.actor, params.critic, params.target_critic,
                                  params.log_alpha, batch, conds, k_pi, hp.gamma)

    def actor_loss(self, params: AgentParams, batch: Batch, context, key, hp, conds=None):
        """Actor loss ``(loss, log pi)``; ``key`` as the authors' draws (module doc of sac)."""
        k_c, k_pi = jax.random.split(key)
        if conds is None:
            conds = self.condition(params, batch.window, context, k_c, True, hp)
        return self.losses.actor(params.actor, params.critic, params.log_alpha, batch.obs,
                                 conds, k_pi)

    # --- one gradient step -------------------------------------------------------------------
    def update(self, state: AgentState, batch: Batch, contexts, key, do_actor) -> tuple:
        """Method loss, then critics, then (every ``policy_frequency``-th step, that many
        times) actor and alpha, then the target critics (the authors' `dmash/contexts/sac.py`
        order). A loss that the
        method routes into its parameters (``rl_losses``) steps the Adams of its
        ``rl_groups`` too, as the authors step ``dce_optimizer`` (the encoder) after every
        loss; the other groups keep values and moments (torch skips None gradients).

        Args:
          state: ``AgentState``.
          batch: ``Batch`` of B rows.
          contexts: ``float32[C, n_factors]`` training contexts (``batch.context_id`` rows).
          key: PRNG key.
          do_actor: ``bool[]`` (unbatched under seed-vmap) whether this is an actor step.
        Returns:
          ``(state, metrics)`` with scalar metrics.
        """
        p, o, hp = state.params, state.opt_state, state.hparams
        rl = self.method.rl_losses
        k_m, k_q, k_pi = jax.random.split(key, 3)
        context = contexts[batch.context_id]
        metrics = {}

        if self.method.has_aux():
            (_, mse), g = jax.value_and_grad(self.aux_loss, has_aux=True)(p.method, batch,
                                                                          k_m, hp)
            method, o_m = _step_groups(p.method, o.method, g, hp.model_lr)
            p, o = p.replace(method=method), o.replace(method=o_m)
            metrics["model_loss"] = mse

        if "critic" in rl:
            def q_loss(cm):
                return self.critic_loss(p.replace(critic=cm[0], method=cm[1]), batch, context,
                                        k_q, hp)
            (ql, q_mean), (g, g_m) = jax.value_and_grad(q_loss, has_aux=True)(
                (p.critic, p.method))
            method, o_m = _step_groups(p.method, o.method, g_m, hp.model_lr,
                                       self.method.rl_groups)
            p, o = p.replace(method=method), o.replace(method=o_m)
        else:
            (ql, q_mean), g = jax.value_and_grad(
                lambda c: self.critic_loss(p.replace(critic=c), batch, context, k_q, hp),
                has_aux=True)(p.critic)
        critic, o_c = apply_gradients(ADAM, g, o.critic, p.critic, hp.q_lr)
        p, o = p.replace(critic=critic), o.replace(critic=o_c)
        metrics.update(q_loss=ql, q_mean=q_mean)

        # The actor phase carries only what it changes (the actor, log alpha, their Adam
        # states, and the method's groups when an RL loss reaches them); the critics and a
        # detached method are read from the closure, not copied through the loop and branch.
        fixed_p, fixed_o = p, o

        def moving(p, o):
            return (p.actor, p.log_alpha, o.actor, o.alpha) + ((p.method, o.method) if rl
                                                               else ())

        def full(m):
            p = fixed_p.replace(actor=m[0], log_alpha=m[1])
            o = fixed_o.replace(actor=m[2], alpha=m[3])
            return (p.replace(method=m[4]), o.replace(method=m[5])) if rl else (p, o)

        # Detached inferred methods: the encoder is fixed for the rest of the update, so every
        # iteration's z (its own key: re-encoded per loss, the authors' `dmash/contexts/sac.py`)
        # comes from one batched
        # encoder call before the loop; omega = h_eta(z) is generated inside each iteration.
        hoist = (self.hoist_encoder and self.method.inferred and not rl
                 and not self.method.reads_actor)

        def actor_phase(m):
            # each actor iteration draws its keys as the authors' loop does: encoder, policy
            # sample, alpha's fresh sample
            keys = jax.vmap(lambda k: jax.random.split(k, 3))(
                jax.random.split(k_pi, self.config.policy_frequency))  # [pf, 3, 2]
            zs = (jax.vmap(lambda k: self.encode(fixed_p, batch.window, k, True, hp))(
                keys[:, 0]) if hoist else None)

            def one(m, inp):
                p, o = full(m)
                (k_c, k_l, k_a), z = inp
                if rl:  # RL gradients reach the method: condition inside the loss
                    def loss_fn(am):
                        pp = p.replace(actor=am[0], method=am[1])
                        conds = self.condition(pp, batch.window, context, k_c, True, hp)
                        return self.actor_loss(pp, batch, context, k_l, hp, conds)
                    (al, _), (g, g_m) = jax.value_and_grad(loss_fn, has_aux=True)(
                        (p.actor, p.method))
                    method, o_m = _step_groups(p.method, o.method, g_m, hp.model_lr,
                                               self.method.rl_groups)
                    p, o = p.replace(method=method), o.replace(method=o_m)
                    conds = self.condition(p, batch.window, context, k_c, True, hp)
                else:
                    conds = (self.cond_from_z(p, z) if hoist else
                             self.condition(p, batch.window, context, k_c, True, hp))
                    (al, _), g = jax.value_and_grad(
                        lambda a: self.actor_loss(p.replace(actor=a), batch, context, k_l,
                                                  hp, conds), has_aux=True)(p.actor)
                actor, o_a = apply_gradients(ADAM, g, o.actor, p.actor, hp.actor_lr)
                p, o = p.replace(actor=actor), o.replace(actor=o_a)
                # CleanRL: alpha uses a fresh sample from the updated actor, the same z
                logp = jax.lax.stop_gradient(self.losses.log_prob(p.actor, batch.obs,
                                                                  conds[0], k_a))
                g_a = jax.grad(self.losses.alpha)(p.log_alpha, logp, hp.target_entropy)
                log_alpha, o_al = apply_gradients(ADAM, g_a, o.alpha, p.log_alpha,
                                                      hp.alpha_lr)
                p, o = p.replace(log_alpha=log_alpha), o.replace(alpha=o_al)
                return moving(p, o), (al, -jnp.mean(logp))

            m, (al, ent) = jax.lax.scan(one, m, (tuple(keys.transpose(1, 0, 2)), zs),
                                        unroll=self.unroll_actor_loop)
            return m, (jnp.mean(al), jnp.mean(ent))

        def skip(m):
            return m, (jnp.float32(jnp.nan), jnp.float32(jnp.nan))

        m, (al, ent) = jax.lax.cond(do_actor, actor_phase, skip, moving(p, o))
        p, o = full(m)
        p = p.replace(target_critic=polyak(p.target_critic, p.critic, hp.tau))
        metrics.update(actor_loss=al, entropy=ent, alpha=jnp.exp(p.log_alpha))
        return AgentState(p, o, hp), metrics


def _step_groups(params: dict, opt: dict, grads: dict, lr, only=None):
    """One Adam step of every method group (each its own state), or of the groups in ``only``
    (the others keep their values and Adam states: torch skips parameters whose gradient is
    None)."""
    new_p, new_o = dict(params), dict(opt)
    for name in params:
        if only is not None and name not in only:
            continue
        new_p[name], new_o[name] = apply_gradients(ADAM, grads[name], opt[name],
                                                       params[name], lr)
    return new_p, new_o
