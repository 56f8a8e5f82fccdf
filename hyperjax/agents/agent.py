"""The method family as one agent: context source x merge (notes §3-4, architecture card).

``Agent`` holds the Flax modules (no state); parameters and optimizer states live in an
``AgentState`` pytree, so everything is pure and vmappable over seeds.

Gradient routing (notes §3.5):
* encoder phi, hypernetwork eta and dynamics model theta: the dynamics loss only;
* actor xi: the actor loss only; critics zeta: the critic loss only; log alpha: its own loss.
z and the generated omega enter the RL losses through ``jax.lax.stop_gradient``, so the RL
losses' gradients w.r.t. phi and eta are exactly zero (a test checks it).

Hyperparameter sweeps: the names in ``SWEEPABLE`` that an ``Agent`` is built to sweep are read
from ``params["hparams"]`` (``float32[]`` leaves, so ``jax.vmap`` over runs gives each run its
own value) instead of the ``Config``; learning rates live in the optimizer state
(``optax.inject_hyperparams``). Without a sweep ``params["hparams"]`` is ``{}`` and the program
is the one with constants.
"""
from __future__ import annotations


import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import optax

from hyperjax.agents import sac
from hyperjax.agents.replay import Batch
from hyperjax.config import Config
from hyperjax.envs.core import Env
from hyperjax.nets.encoder import ContextEncoder
from hyperjax.nets.networks import Actor, Cond, DynamicsModel, TwinCritic


class WorldModel(nn.Module):
    """Encoder g_phi plus dynamics model f_{theta, omega} (and h_eta for DMA*-SH)."""

    cfg_encoder: dict
    obs_dim: int
    merge: str  # "own" (hypernetwork adapter, DMA*-SH) or "concat"

    def setup(self):
        self.encoder = ContextEncoder(**self.cfg_encoder)
        self.dynamics = DynamicsModel(self.obs_dim, merge=self.merge)

    def encode(self, window, key, training, mask_rate=None):
        return self.encoder(window, key, training, mask_rate)

    def omega(self, z):
        return self.dynamics.omega(z)

    def __call__(self, obs, action, window, key, training=True, mask_rate=None):
        out = self.encoder(window, key, training, mask_rate)
        return self.dynamics(obs, action, out.z), out


# Hyperparameters that change no shape, so runs with different values can share one program.
SWEEPABLE = ("q_lr", "actor_lr", "alpha_lr", "model_lr", "tau", "gamma", "target_entropy",
             "mask_rate")
_OPT_LR = dict(actor="actor_lr", critic="q_lr", alpha="alpha_lr", model="model_lr")


@flax.struct.dataclass
class AgentState:
    params: dict      # actor, critic, target_critic, log_alpha, model
    opt_state: dict   # actor, critic, alpha, model


class Agent:
    """SAC with the method's context source and merge. See ``Config`` for the fields."""

    def __init__(self, cfg: Config, env: Env, swept: tuple[str, ...] = ()):
        """``swept``: names from ``SWEEPABLE`` read per run from ``params["hparams"]``.

        Raises:
          ValueError: an unknown name, or ``mask_rate`` for a method without an encoder.
        """
        for name in swept:
            if name not in SWEEPABLE:
                raise ValueError(f"cannot sweep {name!r}; sweepable: {', '.join(SWEEPABLE)}")
        if "mask_rate" in swept and not cfg.inferred:
            raise ValueError(f"cannot sweep mask_rate: {cfg.algo!r} has no context encoder")
        self.swept = tuple(swept)
        self.cfg = cfg
        self.env = env
        self.low, self.high = float(env.action_low), float(env.action_high)
        self.actor = Actor(env.action_dim, merge=cfg.merge)
        self.critic = TwinCritic(merge=cfg.merge)
        self.model = None
        if cfg.inferred:
            enc = dict(obs_dim=env.obs_dim, action_dim=env.action_dim,
                       context_size=cfg.context_size, mask_rate=cfg.mask_rate,
                       input_norm=cfg.input_norm, output_norm=cfg.output_norm, pearl=cfg.pearl)
            self.model = WorldModel(enc, env.obs_dim,
                                    "own" if cfg.merge == "shared" else "concat")
        self.target_entropy = -float(env.action_dim)
        self.opt = {}
        for group, lr_name in _OPT_LR.items():
            lr = getattr(cfg, lr_name)
            self.opt[group] = (optax.inject_hyperparams(optax.adam)(learning_rate=lr)
                               if lr_name in self.swept else optax.adam(lr))

    # --- hyperparameters -------------------------------------------------------------------
    def default_hparams(self) -> dict:
        """The swept names' values from the config: ``{name: float32[]}``."""
        return {n: jnp.float32(self.target_entropy if n == "target_entropy"
                               else getattr(self.cfg, n)) for n in self.swept}

    def hp(self, params, name: str):
        """Hyperparameter ``name``: the run's ``float32[]`` if swept, else the config's float."""
        if name in self.swept:
            return params["hparams"][name]
        return self.target_entropy if name == "target_entropy" else getattr(self.cfg, name)

    def _mask_rate(self, params):
        return params["hparams"]["mask_rate"] if "mask_rate" in self.swept else None

    # --- shapes ----------------------------------------------------------------------------
    @property
    def window_shape(self) -> tuple[int, int]:
        """``(K, 2*obs_dim + act_dim)``, or ``(0, 0)`` without an encoder."""
        if not self.cfg.inferred:
            return (0, 0)
        return (self.cfg.context_size, 2 * self.env.obs_dim + self.env.action_dim)

    # --- init ------------------------------------------------------------------------------
    def init(self, key, n_factors: int, hparams: dict | None = None) -> AgentState:
        """Initial parameters (PyTorch-default init) and Adam states. log alpha = 0.

        ``hparams``: ``{name: float32[]}`` for the swept names (default: the config's values).

        Raises:
          ValueError: ``hparams`` keys differ from the swept names.
        """
        hparams = self.default_hparams() if hparams is None else dict(hparams)
        if set(hparams) != set(self.swept):
            raise ValueError(f"hparams {sorted(hparams)} do not match the swept names "
                             f"{sorted(self.swept)}")
        hparams = {k: jnp.asarray(v, jnp.float32) for k, v in hparams.items()}
        k_a, k_c, k_m, k_e = jax.random.split(key, 4)
        obs = jnp.zeros((1, self.env.obs_dim))
        act = jnp.zeros((1, self.env.action_dim))
        window = jnp.zeros((1, *self.window_shape))
        model = {}
        if self.model is not None:
            model = self.model.init(k_m, obs, act, window, k_e)
        cond = self._dummy_cond(model, window, jnp.zeros((1, n_factors)))
        actor = self.actor.init(k_a, obs, cond)
        critic = self.critic.init(k_c, obs, act, cond)
        params = dict(actor=actor, critic=critic, target_critic=critic,
                      log_alpha=jnp.zeros((), jnp.float32), model=model, hparams=hparams)
        opt_state = dict(actor=self.opt["actor"].init(actor),
                         critic=self.opt["critic"].init(critic),
                         alpha=self.opt["alpha"].init(params["log_alpha"]),
                         model=self.opt["model"].init(model))
        for group, lr_name in _OPT_LR.items():
            if lr_name in self.swept:
                o = opt_state[group]
                opt_state[group] = o._replace(
                    hyperparams={**o.hyperparams, "learning_rate": hparams[lr_name]})
        return AgentState(params, opt_state)

    def _dummy_cond(self, model, window, context):
        return self.condition(model, window, context, jax.random.PRNGKey(0), training=False)

    # --- conditioning ------------------------------------------------------------------------
    def condition(self, model_params, window, context, key, training: bool,
                  mask_rate=None) -> Cond:
        """The RL networks' conditioning, with z and omega as constants (notes §3.5).

        Args:
          model_params: world-model parameters (``{}`` without an encoder).
          window: ``float32[B, K, 2*obs_dim+act_dim]`` (ignored without an encoder).
          context: ``float32[B, n_factors]`` true context (used by Concat and DA only).
          key: PRNG key for the encoder's shuffle/mask/subset (fresh per loss, notes §9.3).
          training: encoder mode.
          mask_rate: a swept ``float32[]`` mask rate (None: the config's).
        """
        src = self.cfg.source
        if src == "none":
            return Cond()
        if src == "true":
            return Cond(vec=context)
        z = self.encode(model_params, window, key, training, mask_rate)
        return self.cond_from_z(model_params, z, stop_gradient=True)

    def encode(self, model_params, window, key, training: bool, mask_rate=None):
        """z = g_phi(window): ``float32[B, d_z]`` (inferred methods only; notes §3.1)."""
        return self.model.apply(model_params, window, key, training, mask_rate,
                                method=WorldModel.encode).z

    def cond_from_z(self, model_params, z, stop_gradient: bool = True) -> Cond:
        """The RL networks' conditioning from an inferred ``z`` ``float32[B, d_z]``.

        ``stop_gradient=True`` is the method (z and omega = h_eta(z) are constants to the RL
        losses, notes §3.5); ``False`` lifts it, only to measure shadow gradients (notes §5).
        """
        sg = jax.lax.stop_gradient if stop_gradient else (lambda x: x)
        z = sg(z)
        if self.cfg.merge == "shared":
            return Cond(omega=sg(self.model.apply(model_params, z, method=WorldModel.omega)))
        return Cond(vec=z)

    # --- acting ------------------------------------------------------------------------------
    def act(self, params, obs, window, context, key, deterministic: bool,
            encoder_training: bool):
        """Actions ``float32[B, act_dim]`` for ``obs: float32[B, obs_dim]``."""
        k_c, k_pi = jax.random.split(key)
        cond = self.condition(params["model"], window, context, k_c, encoder_training,
                              self._mask_rate(params))
        mean, log_std = self.actor.apply(params["actor"], obs, cond)
        if deterministic:
            return sac.deterministic_action(mean, self.low, self.high)
        return sac.sample_and_log_prob(mean, log_std, k_pi, self.low, self.high,
                                       self.cfg.exact_tanh_logprob)[0]

    def _pi(self, actor_params, obs, cond, key):
        mean, log_std = self.actor.apply(actor_params, obs, cond)
        return sac.sample_and_log_prob(mean, log_std, key, self.low, self.high,
                                       self.cfg.exact_tanh_logprob)

    # --- losses ------------------------------------------------------------------------------
    def model_loss(self, model_params, batch: Batch, key, mask_rate=None):
        """Dynamics loss (notes §3.2, Eq. 1/2): ``mean((f(s, a; z) - (s' - s))^2)``.

        DMA-Pearl multiplies it by ``1 + beta * KL`` (notes §4), where KL is the mean over the
        batch and the d_z dimensions of KL(N(mu, var) || N(0, 1)), computed by a second forward
        pass of the encoder with its own shuffle and subset, as the authors' ``get_kl``
        (``dmash/contexts/util.py`` ``compute_losses``, ``sac.py``). Returns ``(loss, mse)``.
        """
        if self.cfg.pearl:
            key, k_kl = jax.random.split(key)
        pred, _ = self.model.apply(model_params, batch.obs, batch.action, batch.window, key,
                                   True, mask_rate)
        mse = jnp.mean((pred - (batch.next_obs - batch.obs)) ** 2)
        if self.cfg.pearl:
            kl = self.model.apply(model_params, batch.window, k_kl, True, mask_rate,
                                  method=WorldModel.encode).kl
            return mse * (1.0 + self.cfg.pearl_beta * jnp.mean(kl)), mse
        return mse, mse

    def critic_loss(self, params, batch: Batch, context, key, cond: Cond | None = None):
        """Twin-critic TD loss; differentiable in ``params["critic"]`` only (module doc).

        ``cond`` replaces the conditioning computed from ``params["model"]`` (as in
        ``actor_loss``); the TD target is a constant either way.
        """
        k_c, k_pi = jax.random.split(key)
        if cond is None:
            cond = self.condition(params["model"], batch.window, context, k_c, training=True,
                                  mask_rate=self._mask_rate(params))
        alpha = jnp.exp(jax.lax.stop_gradient(params["log_alpha"]))
        next_action, next_logp = self._pi(jax.lax.stop_gradient(params["actor"]),
                                          batch.next_obs, cond, k_pi)
        next_q = self.critic.apply(jax.lax.stop_gradient(params["target_critic"]),
                                   batch.next_obs, next_action, cond)
        done = batch.terminated if self.cfg.bootstrap_truncation else (
            batch.terminated | batch.truncated)
        y = sac.td_target(batch.reward, done.astype(jnp.float32), jnp.min(next_q, axis=0),
                          next_logp, alpha, self.hp(params, "gamma"))
        y = jax.lax.stop_gradient(y)
        q = self.critic.apply(params["critic"], batch.obs, batch.action, cond)
        loss = jnp.sum(jnp.mean((q - y) ** 2, axis=-1))
        return loss, jnp.mean(q)

    def actor_loss(self, params, batch: Batch, context, key, cond: Cond | None = None):
        """Actor loss; differentiable in ``params["actor"]`` only. Returns ``(loss, log pi)``."""
        k_c, k_pi = jax.random.split(key)
        if cond is None:
            cond = self.condition(params["model"], batch.window, context, k_c, training=True,
                                  mask_rate=self._mask_rate(params))
        alpha = jnp.exp(jax.lax.stop_gradient(params["log_alpha"]))
        action, logp = self._pi(params["actor"], batch.obs, cond, k_pi)
        q = self.critic.apply(jax.lax.stop_gradient(params["critic"]), batch.obs, action, cond)
        return jnp.mean(alpha * logp - jnp.min(q, axis=0)), logp

    # --- one gradient step ---------------------------------------------------------------
    def update(self, state: AgentState, batch: Batch, contexts, key, do_actor) -> tuple:
        """Dynamics model, then critics, then (every ``policy_frequency``-th step, twice) actor
        and alpha, then the target critics (notes §3.6 order).

        Args:
          state: ``AgentState``.
          batch: ``Batch`` of B rows.
          contexts: ``float32[C, n_factors]`` training contexts (``batch.context_id`` rows).
          key: PRNG key.
          do_actor: ``bool[]`` (unbatched under seed-vmap) whether this is an actor step.
        Returns:
          ``(state, metrics)`` with scalar metrics.
        """
        cfg = self.cfg
        params, opt = dict(state.params), dict(state.opt_state)
        k_m, k_q, k_pi = jax.random.split(key, 3)
        context = contexts[batch.context_id]
        metrics = {}

        def step(name, grads, sub):
            upd, opt[sub] = self.opt[sub].update(grads, opt[sub], params[name])
            params[name] = optax.apply_updates(params[name], upd)

        if self.model is not None:
            (_, mse), g = jax.value_and_grad(self.model_loss, has_aux=True)(
                params["model"], batch, k_m, self._mask_rate(params))
            step("model", g, "model")
            metrics["model_loss"] = mse

        def q_loss(critic_params):
            return self.critic_loss({**params, "critic": critic_params}, batch, context, k_q)

        (ql, q_mean), g = jax.value_and_grad(q_loss, has_aux=True)(params["critic"])
        step("critic", g, "critic")
        metrics.update(q_loss=ql, q_mean=q_mean)

        def actor_phase(carry):
            p, o = carry

            def one(carry, k):
                p, o = carry
                k_c, k_l, k_a = jax.random.split(k, 3)
                cond = self.condition(p["model"], batch.window, context, k_c, training=True,
                                      mask_rate=self._mask_rate(p))
                loss_fn = lambda ap: self.actor_loss({**p, "actor": ap}, batch, context, k_l,
                                                     cond)
                (al, _), g = jax.value_and_grad(loss_fn, has_aux=True)(p["actor"])
                upd, o_actor = self.opt["actor"].update(g, o["actor"], p["actor"])
                p = {**p, "actor": optax.apply_updates(p["actor"], upd)}
                # CleanRL: alpha uses a fresh sample from the updated actor.
                _, logp = self._pi(p["actor"], batch.obs, cond, k_a)
                logp = jax.lax.stop_gradient(logp)
                target = self.hp(p, "target_entropy")
                alpha_loss = lambda la: jnp.mean(-jnp.exp(la) * (logp + target))
                g_a = jax.grad(alpha_loss)(p["log_alpha"])
                upd, o_alpha = self.opt["alpha"].update(g_a, o["alpha"], p["log_alpha"])
                p = {**p, "log_alpha": optax.apply_updates(p["log_alpha"], upd)}
                return (p, {**o, "actor": o_actor, "alpha": o_alpha}), (al, -jnp.mean(logp))

            (p, o), (al, ent) = jax.lax.scan(one, (p, o),
                                             jax.random.split(k_pi, cfg.policy_frequency))
            return (p, o), (jnp.mean(al), jnp.mean(ent))

        def skip(carry):
            return carry, (jnp.float32(jnp.nan), jnp.float32(jnp.nan))

        (params, opt), (al, ent) = jax.lax.cond(do_actor, actor_phase, skip, (params, opt))
        params["target_critic"] = sac.polyak(params["target_critic"], params["critic"],
                                              self.hp(params, "tau"))
        metrics.update(actor_loss=al, entropy=ent, alpha=jnp.exp(params["log_alpha"]))
        return AgentState(params, opt), metrics
