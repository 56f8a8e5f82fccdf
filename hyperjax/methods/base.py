"""The context-method protocol: what a method gives each network and which parameters each loss
may move (the authors' grid, ``modify_groups`` in ``dmash/contexts/config.py``).

A context method is a plug-in of the SAC agent (``hyperjax.agents.agent``). SAC knows nothing
about contexts: its networks take a ``Cond`` (a vector to concatenate and/or generated adapter
weights), and its losses take whatever conditioning the method returns. A method says:

* ``policy_merge`` / ``q_merge``: how the actor and the critics take their ``Cond`` (``none``,
  ``concat``, ``own``: a hypernetwork of their own fed with ``Cond.vec``, ``shared``: adapter
  weights ``Cond.omega`` generated elsewhere; ``hyperjax.nets.networks.Torso``);
* ``init(key, shapes)``: its own parameters, ``{group: pytree}`` (``{}`` for none); every group
  gets its own Adam (learning rate ``HParams.model_lr``); ``rl_groups`` names the groups a
  loss in ``rl_losses`` steps (default: all);
* ``condition(params, window, context, key, training, hp, loss)``: the ``(actor Cond, critic
  Cond)`` for ``loss`` in ``"act"`` (acting), ``"critic"`` or ``"actor"``, with the method's
  stop-gradients applied: RL losses reach the method's parameters only for the losses in
  ``rl_losses``;
* ``aux_loss(method_params, batch, context, key, hp)``: its own loss (the dynamics model of
  the DMA family), ``(loss, metrics)``, differentiated w.r.t. every group; or None;
* ``training_contexts(train, default)``: the contexts it trains in (``unaware_default``
  trains in the default context only).

``MethodShapes`` carries the shapes a method needs. A new method is one class (or one instance
of ``GridMethod``) and one ``register`` call; tests check every preset's gradient routing with
exact zeros.
"""
from __future__ import annotations

import dataclasses

from hyperjax.nets.networks import Cond


@dataclasses.dataclass(frozen=True)
class MethodShapes:
    """Shapes a method is built for.

    Attributes:
      obs_dim, action_dim: the env's sizes.
      n_factors: context factors F (the true context ``float32[F]``).
      context_size: K, the encoder window (the task's default unless overridden).
    """

    obs_dim: int
    action_dim: int
    n_factors: int
    context_size: int


class ContextMethod:
    """Base class of context methods (module doc). The defaults are DR's: no parameters, no
    conditioning, no auxiliary loss. ``hp`` is the run's ``HParams`` with ``mask_rate`` None
    unless it is swept (then the encoder reads it instead of its preset rate)."""

    name: str = "base"
    label: str = ""            # the paper's label, if it has one
    policy_merge: str = "none"
    q_merge: str = "none"
    rl_losses: tuple[str, ...] = ()   # networks whose conditioning is not detached
    # the parameter groups a loss in ``rl_losses`` steps (None: every group); the others keep
    # their values and Adam states, as torch's Adam skips parameters without a gradient
    rl_groups: tuple[str, ...] | None = None
    inferred: bool = False     # has an encoder (a window of K transitions)
    reads_actor: bool = False  # its conditioning reads the actor's parameters
    mask_rate: float = 0.0     # the encoder's input mask rate

    def describe(self) -> tuple[str, ...]:
        """The README preset table's cells: name, paper label, context, encoder, dynamics
        model, policy, Q, what trains the encoder."""
        return (f"`{self.name}`", self.label or "–", "–", "–", "–", self.policy_merge,
                self.q_merge, "–")

    def window_size(self, shapes: MethodShapes) -> int:
        """K when the method reads a window of transitions, else 0."""
        return shapes.context_size if self.inferred else 0

    def init(self, key, shapes: MethodShapes) -> dict:
        """The method's parameters ``{group: pytree}`` (``{}``: none)."""
        return {}

    def condition(self, shapes: MethodShapes, params, window, context, key, training: bool, hp):
        """``(actor Cond, critic Cond)`` with the method's stop-gradients (module doc).

        Args: ``params`` the agent's ``AgentParams``; ``window`` ``float32[B, K, D]``;
        ``context`` ``float32[B, F]``; ``key`` for the encoder; ``training`` its mode.
        """
        return Cond(), Cond()

    def has_aux(self) -> bool:
        return False

    def aux_loss(self, shapes: MethodShapes, method_params: dict, batch, key, hp):
        """The method's own loss ``(loss, metric)``, differentiated w.r.t. every group."""
        raise NotImplementedError

    def training_contexts(self, train, default):
        """The contexts the method trains in (``float32[C, F]``), given the run's and the
        task's default (``float32[F]``)."""
        return train

    def with_knobs(self, **knobs) -> "ContextMethod":
        """A copy with the given method knobs (``Config``'s ``pearl_beta``) set where the
        method has them; knobs it does not have are ignored (they change nothing)."""
        have = {k: v for k, v in knobs.items() if hasattr(self, k) and getattr(self, k) != v}
        return dataclasses.replace(self, **have) if have else self

    def with_mask_rate(self, mask_rate: float) -> "ContextMethod":
        """A copy with another encoder mask rate (``--mask_rate``); methods without an encoder
        refuse it."""
        raise ValueError(f"{self.name!r} has no context encoder: mask_rate does not apply")

    # diagnostics (inferred methods): z, and the conditioning from a given z
    def encode_out(self, shapes, method_params, window, key, training: bool, mask_rate=None):
        raise ValueError(f"{self.name!r} infers no z")

    def conds_from(self, shapes, params, z, stop_gradient: bool = True):
        raise ValueError(f"{self.name!r} infers no z")
