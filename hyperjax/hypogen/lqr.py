"""``lqr_di``: a spec-conditioned double integrator with a dense quadratic cost, and its
closed-form LQR experts. The CPU-sized default task of the HyPoGen pipeline (issue 5).

Dynamics (per axis, dt = 0.1 s, no clipping of the state, so the system is exactly linear)::

    pos' = pos + dt * vel
    vel' = vel + dt * F_MAX * clip(a, -1, 1) / mass              (F_MAX = 4 N)

Spec: ``lqr_di`` ``float32[1] = (mass [kg],)`` with the goal at the origin; ``lqr_di_goal``
``float32[2] = (mass [kg], goal [m])`` with the goal point ``(goal, goal)``. Reset: position
uniform on ``[-1, 1]^2``, velocity 0. Observation ``float32[4] = [x, y, vx, vy]`` (absolute, so a
policy must read the goal from the spec). Reward, with ``e = obs - (goal, goal, 0, 0)``::

    r = -(e_pos·e_pos + 0.1 e_vel·e_vel + 0.1 a·a)                (a after clipping)

100-step episodes, never terminated.

The expert of a spec is the discounted (γ = 0.99) infinite-horizon LQR controller of that
system, saturated to the action bounds: ``a* = clip(-K e, -1, 1)``, ``K = γ (R + γ BᵀPB)⁻¹ BᵀPA``
with ``P`` the fixed point of the discounted Riccati equation. Its critic is the exact
action-value of the unconstrained problem, ``Q*(e, a) = -(eᵀQe + aᵀRa) - γ (Ae + Ba)ᵀ P (Ae + Ba)``;
it is exact wherever the expert does not saturate (the first few steps from far starts do).
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from hyperjax.envs.core import Env

DT = 0.1
F_MAX = 4.0
POS_COST = 1.0
VEL_COST = 0.1
ACTION_COST = 0.1
GAMMA = 0.99


class LQRPhysics(NamedTuple):
    pos: jax.Array  # float32[2] (m)
    vel: jax.Array  # float32[2] (m/s)


class LQRDoubleIntegrator(Env):
    """The spec-conditioned double integrator (module docstring). ``context`` = the spec."""

    obs_dim = 4
    action_dim = 2
    episode_length = 100

    def __init__(self, factors: tuple[str, ...] = ("mass",)):
        if factors not in (("mass",), ("mass", "goal")):
            raise ValueError(f"lqr_di factors must be ('mass',) or ('mass', 'goal'), got {factors}")
        self.factors = factors
        self.name = "lqr_di" if len(factors) == 1 else "lqr_di_goal"
        self._default_context = (1.0, 0.0)[:len(factors)]

    def _reset(self, key, spec):
        pos = jax.random.uniform(key, (2,), jnp.float32, -1.0, 1.0)
        return LQRPhysics(pos, jnp.zeros(2, jnp.float32))

    def _step(self, key, p: LQRPhysics, action, spec):
        mass, goal = spec[0], _goal(spec)
        a = jnp.clip(action, -1.0, 1.0)
        pos = p.pos + DT * p.vel
        vel = p.vel + DT * F_MAX * a / mass
        e_pos, e_vel = p.pos - goal, p.vel
        reward = -(POS_COST * e_pos @ e_pos + VEL_COST * e_vel @ e_vel + ACTION_COST * a @ a)
        return LQRPhysics(pos, vel), reward, jnp.zeros((), bool)

    def _obs(self, p: LQRPhysics):
        return jnp.concatenate([p.pos, p.vel])


def _goal(spec):
    """The goal coordinate: ``spec[1]`` for ``(mass, goal)`` specs, else 0 (float32[])."""
    return spec[1] if spec.shape[-1] > 1 else jnp.zeros((), spec.dtype)


def make_lqr_task(name: str) -> LQRDoubleIntegrator:
    """``lqr_di`` (spec = mass) or ``lqr_di_goal`` (spec = mass, goal)."""
    if name not in ("lqr_di", "lqr_di_goal"):
        raise ValueError(f"unknown LQR task {name!r}; valid: lqr_di, lqr_di_goal")
    return LQRDoubleIntegrator(("mass",) if name == "lqr_di" else ("mass", "goal"))


def _system(mass: float):
    """Per-axis ``(A [2,2], B [2,1], Q [2,2], R [1,1])`` in error coordinates (pos-goal, vel)."""
    a = np.array([[1.0, DT], [0.0, 1.0]])
    b = np.array([[0.0], [DT * F_MAX / mass]])
    return a, b, np.diag([POS_COST, VEL_COST]), np.array([[ACTION_COST]])


def lqr_solution(mass: float, gamma: float = GAMMA, tol: float = 1e-12,
                 max_iter: int = 100_000) -> tuple[np.ndarray, np.ndarray]:
    """Discounted LQR of one axis by value iteration on the Riccati equation (float64).

    The reward above charges the cost at the state *before* the step, so with ``e`` the error
    and ``a`` the action, ``V(e) = -eᵀPe`` and ``a* = -K e``.

    Returns ``(P float64[2, 2], K float64[1, 2])``. Raises ``RuntimeError`` if the iteration
    does not converge.
    """
    a, b, q, r = _system(mass)
    p = q.copy()
    for _ in range(max_iter):
        s = r + gamma * b.T @ p @ b
        k = gamma * np.linalg.solve(s, b.T @ p @ a)
        p_new = q + gamma * a.T @ p @ a - gamma * a.T @ p @ b @ k
        if np.max(np.abs(p_new - p)) < tol:
            return p_new, k
        p = p_new
    raise RuntimeError(f"Riccati iteration did not converge for mass {mass}")


class LQRExpert(NamedTuple):
    """Closed-form experts for a set of specs: ``gain float32[S, 1, 2]``, ``p float32[S, 2, 2]``."""

    gain: jax.Array
    p: jax.Array


def make_experts(specs: np.ndarray, gamma: float = GAMMA) -> LQRExpert:
    """Experts for ``specs float[S, d]`` (column 0 = mass). Returns stacked per-axis gains and P."""
    sols = [lqr_solution(float(m), gamma) for m in np.asarray(specs)[:, 0]]
    return LQRExpert(gain=jnp.asarray(np.stack([k for _, k in sols]), jnp.float32),
                     p=jnp.asarray(np.stack([p for p, _ in sols]), jnp.float32))


def _errors(obs, spec):
    """Per-axis error states ``float32[..., 2 axes, 2]`` = ((x-g, vx), (y-g, vy))."""
    pos = obs[..., :2] - _goal(spec)
    return jnp.stack([pos, obs[..., 2:4]], axis=-1)


def expert_action(gain, obs, spec):
    """``a* = clip(-K e, -1, 1)``: ``gain float32[1, 2]``, ``obs float32[4]`` → ``float32[2]``."""
    e = _errors(obs, spec)                    # [2 axes, 2]
    return jnp.clip(-(e @ gain[0]), -1.0, 1.0)


def expert_q(gain, p, obs, action, spec, gamma: float = GAMMA):
    """Closed-form ``Q*(obs, action)`` of the unconstrained LQR (module docstring), float32[]."""
    mass = spec[0]
    a_mat = jnp.array([[1.0, DT], [0.0, 1.0]], jnp.float32)
    b_vec = jnp.array([0.0, DT * F_MAX], jnp.float32) / mass
    e = _errors(obs, spec)                    # [2 axes, 2]
    cost = (POS_COST * jnp.sum(e[:, 0] ** 2) + VEL_COST * jnp.sum(e[:, 1] ** 2)
            + ACTION_COST * jnp.sum(action ** 2))
    e_next = e @ a_mat.T + action[:, None] * b_vec[None, :]
    return -(cost + gamma * jnp.einsum("ai,ij,aj->", e_next, p, e_next))
