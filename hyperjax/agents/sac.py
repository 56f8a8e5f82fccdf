"""Soft actor-critic losses (CleanRL ``sac_continuous_action`` numerics, notes §3.6).

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


def polyak(target, online, tau: float):
    """``target <- tau * online + (1 - tau) * target`` leaf by leaf."""
    return jax.tree.map(lambda t, o: tau * o + (1.0 - tau) * t, target, online)
