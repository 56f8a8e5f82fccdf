"""Soft actor-critic losses (CleanRL ``sac_continuous_action`` numerics, the authors'
`dmash/contexts/sac.py`).

SAC knows nothing about contexts: every loss takes a ``Cond`` that already carries the method's
conditioning (z, c or generated adapter weights omega), with stop-gradients applied by the
method (``hyperjax.agents.agent``). Equations (Haarnoja et al. 2018, CleanRL):

* critic: ``y = r + (1 - done) * gamma * (min_j Qbar_j(s', a') - alpha * log pi(a'|s'))``,
  ``a' ~ pi(.|s')``; loss ``sum_j mean((Q_j(s, a) - y)^2)``;
* actor: ``mean(alpha * log pi(a|s) - min_j Q_j(s, a))``, ``a ~ pi(.|s)`` reparameterised;
* temperature: ``mean(-exp(log_alpha) * (log pi(a|s) + target_entropy))``, target ``-|A|``.

The policy's log-probability is CleanRL's (the authors' ``Actor.get_action``, ``dmash/contexts/
model.py``): ``log N(x; mu, sigma) - log(scale * (1 - tanh(x)^2) + 1e-6)`` summed over the action
dimensions. The ``1e-6`` caps the tanh correction (and zeroes its gradient) once ``|x|`` is
large; ``exact=True`` gives distrax's exact log-determinant instead (``--exact_tanh_logprob``).
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import distrax
import jax
import jax.numpy as jnp


def tanh_gaussian(mean: jax.Array, log_std: jax.Array, low: float, high: float):
    """``distrax`` tanh-squashed diagonal Gaussian rescaled to ``[low, high]``.

    Args: ``mean``, ``log_std``: ``float32[B, act_dim]``. Returns a distribution over
    ``float32[B, act_dim]`` actions whose ``log_prob`` is ``float32[B]``.
    """
    scale, shift = (high - low) / 2.0, (high + low) / 2.0
    base = distrax.MultivariateNormalDiag(mean, jnp.exp(log_std))
    bij = distrax.Chain([distrax.ScalarAffine(shift, scale), distrax.Tanh()])
    return distrax.Transformed(base, distrax.Block(bij, ndims=1))


def sample_and_log_prob(mean: jax.Array, log_std: jax.Array, key, low: float, high: float,
                        exact: bool = False):
    """A reparameterised tanh-Gaussian action and its log-probability (module doc).

    Args:
      mean, log_std: ``float32[B, act_dim]``.
      key: PRNG key for the Gaussian noise.
      low, high: scalar action bounds.
      exact: distrax's exact log-determinant instead of CleanRL's ``+ 1e-6`` form.
    Returns:
      ``(action float32[B, act_dim] in [low, high], log_prob float32[B])``.
    """
    if exact:
        return tanh_gaussian(mean, log_std, low, high).sample_and_log_prob(seed=key)
    scale, shift = (high - low) / 2.0, (high + low) / 2.0
    std = jnp.exp(log_std)
    x = mean + std * jax.random.normal(key, mean.shape, mean.dtype)
    y = jnp.tanh(x)
    log_normal = -0.5 * ((x - mean) / std) ** 2 - log_std - 0.5 * jnp.log(2.0 * jnp.pi)
    log_prob = log_normal - jnp.log(scale * (1.0 - y * y) + 1e-6)
    return y * scale + shift, jnp.sum(log_prob, axis=-1)


def deterministic_action(mean: jax.Array, low: float, high: float) -> jax.Array:
    """The evaluation action ``tanh(mean)`` rescaled to the bounds (``float32[B, act_dim]``)."""
    return jnp.tanh(mean) * (high - low) / 2.0 + (high + low) / 2.0


def td_target(reward, done, next_q_min, next_log_prob, alpha, gamma):
    """``r + (1 - done) * gamma * (min Qbar(s', a') - alpha * log pi(a'|s'))`` (all ``[B]``)."""
    return reward + (1.0 - done) * gamma * (next_q_min - alpha * next_log_prob)


class Losses(NamedTuple):
    """SAC's pure losses over already-conditioned networks (``make_losses``)."""

    critic: Callable
    actor: Callable
    alpha: Callable
    log_prob: Callable


def make_losses(actor, critic, low: float, high: float, exact_tanh_logprob: bool = False,
                bootstrap_truncation: bool = False) -> Losses:
    """SAC's losses for flax ``actor`` (``(mean, log_std)``) and ``critic`` (``float32[2, B]``)
    modules that take a conditioning argument (brax ``sac/losses.py`` ``make_losses`` style).

    * ``critic(actor_p, critic_p, target_p, log_alpha, batch, (cond_a, cond_q), key, gamma)
      -> (loss, mean Q)``: the module doc's TD loss; the next action and the target are
      constants;
    * ``actor(actor_p, critic_p, log_alpha, obs, (cond_a, cond_q), key) -> (loss, log pi)``;
    * ``alpha(log_alpha, log_pi, target_entropy) -> loss``;
    * ``log_prob(actor_p, obs, cond_a, key) -> log pi`` of a fresh sample.
    """
    sg = jax.lax.stop_gradient

    def pi(actor_params, obs, cond, key):
        mean, log_std = actor.apply(actor_params, obs, cond)
        return sample_and_log_prob(mean, log_std, key, low, high, exact_tanh_logprob)

    def critic_loss(actor_params, critic_params, target_params, log_alpha, batch, conds, key,
                    gamma):
        cond_a, cond_q = conds
        alpha = jnp.exp(sg(log_alpha))
        next_action, next_logp = pi(sg(actor_params), batch.next_obs, cond_a, key)
        next_q = critic.apply(sg(target_params), batch.next_obs, next_action, cond_q)
        done = batch.terminated if bootstrap_truncation else (batch.terminated |
                                                              batch.truncated)
        y = sg(td_target(batch.reward, done.astype(jnp.float32), jnp.min(next_q, axis=0),
                         next_logp, alpha, gamma))
        q = critic.apply(critic_params, batch.obs, batch.action, cond_q)
        return jnp.sum(jnp.mean((q - y) ** 2, axis=-1)), jnp.mean(q)

    def actor_loss(actor_params, critic_params, log_alpha, obs, conds, key):
        cond_a, cond_q = conds
        alpha = jnp.exp(sg(log_alpha))
        action, logp = pi(actor_params, obs, cond_a, key)
        q = critic.apply(sg(critic_params), obs, action, cond_q)
        return jnp.mean(alpha * logp - jnp.min(q, axis=0)), logp

    def alpha_loss(log_alpha, logp, target_entropy):
        return jnp.mean(-jnp.exp(log_alpha) * (logp + target_entropy))

    def log_prob(actor_params, obs, cond, key):
        return pi(actor_params, obs, cond, key)[1]

    return Losses(critic_loss, actor_loss, alpha_loss, log_prob)
