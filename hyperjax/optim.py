"""The optimizer helpers every training loop of hyperjax shares (SAC, HyPoGen's TD3 experts,
its BC fit and MAML): one optimizer step and the Polyak target update. Ground layer: it imports
only JAX and optax."""
from __future__ import annotations

import jax
import optax


def polyak(target, online, tau: float):
    """``target <- tau * online + (1 - tau) * target`` leaf by leaf."""
    return jax.tree.map(lambda t, o: tau * o + (1.0 - tau) * t, target, online)


def apply_gradients(tx, grads, opt_state, params, lr=None):
    """One optimizer step: ``tx.update`` then, when ``lr`` is given, ``-lr * update`` (``lr``
    a float or a ``float32[]`` hyperparameter leaf; ``tx = optax.scale_by_adam()`` with it is
    ``optax.adam(lr)``). Returns ``(params, opt_state)``. The one helper every training loop
    of hyperjax steps its optimizers with (SAC, the TD3 experts, HyPoGen)."""
    updates, opt_state = tx.update(grads, opt_state, params)
    if lr is not None:
        updates = jax.tree.map(lambda u: -lr * u, updates)
    return optax.apply_updates(params, updates), opt_state
