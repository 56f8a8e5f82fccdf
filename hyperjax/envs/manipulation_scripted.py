"""A scripted grasp-and-lift on the manipulation tasks (the physics check of
``tests/test_manipulation.py`` against C MuJoCo, and a floor for learned policies): a
hand-written ``pd_ee_delta_pose`` policy, one function for ``jax.numpy`` and ``numpy``, and
its episodes on every spec in one program."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from hyperjax.envs.core import per_spec_episodes
from hyperjax.envs.manipulation import POS_SCALE, ROT_SCALE, ManipulationTask

__all__ = ["SCRIPT_PHASES", "scripted_action", "scripted_episodes", "scripted_goal",
           "yaw_error"]

SCRIPT_PHASES = (20, 40, 50)   # control steps: above the cube | down to it | close | carry


def scripted_action(tcp, tcp_mat, cube, goal, yaw_err, t, xp=jnp):
    """A hand-written pd_ee_delta_pose policy: over the cube (0.06 m above) while turning the
    fingers square to its faces, down to its centre, close the fingers, then carry the cube to
    ``goal`` at half speed (LiftCube: 0.4 m above the table at the TCP's xy). ``tcp``,
    ``cube``, ``goal`` ``float[3]`` (m), ``tcp_mat`` ``float[3, 3]`` the TCP's rotation (the
    world-axis move and yaw are expressed in the TCP frame, as the controller reads them),
    ``yaw_err`` (rad, :func:`yaw_error`), ``t`` the control step; ``xp`` ``jax.numpy`` or
    ``numpy`` (the C MuJoCo reference runs the same code). Returns ``float[7]``."""
    p1, p2, p3 = SCRIPT_PHASES
    above = cube + xp.asarray([0.0, 0.0, 0.06])
    target = xp.where(t < p1, above, xp.where(t < p2, cube, xp.where(t < p3, tcp, goal)))
    move = xp.clip((target - tcp) / POS_SCALE, -1.0, 1.0) * xp.where(t < p3, 1.0, 0.5)
    turn = xp.where(t < p2, xp.clip(yaw_err / ROT_SCALE, -1.0, 1.0), 0.0)
    grip = xp.where(t < p2, 1.0, -1.0)
    world_rot = xp.concatenate([xp.zeros(2), xp.reshape(turn, (1,))])
    move, rot = xp.clip(tcp_mat.T @ move, -1.0, 1.0), tcp_mat.T @ world_rot
    return xp.concatenate([move, rot, xp.reshape(grip, (1,))])


def yaw_error(tcp_mat, cube_mat, xp=jnp):
    """Yaw (rad, in [−π/4, π/4]) that turns the fingers' closing axis (the TCP frame's y axis)
    onto the nearest face normal of the cube (a cube is symmetric under quarter turns)."""
    grip = xp.arctan2(tcp_mat[1, 1], tcp_mat[0, 1])
    cube = xp.arctan2(cube_mat[1, 0], cube_mat[0, 0])
    q = xp.pi / 2
    return xp.mod(cube - grip + q / 2, q) - q / 2


def scripted_goal(task: str, tcp, goal, xp=jnp):
    """Where ``scripted_action`` carries the cube: PickCube's goal; LiftCube: (tcp xy, 0.4)."""
    if task == "lift_cube":
        return xp.concatenate([tcp[:2], xp.asarray([0.4])])
    return goal


def scripted_episodes(env: ManipulationTask, specs, key, episodes: int, steps: int = 100):
    """Runs ``scripted_action`` on every spec (``float32[S, 1]``) for ``episodes`` episodes.
    Returns ``(success bool[S, E], first_success_step int32[S, E], cube_z float32[S, E, T])``
    (first_success_step = ``steps`` when it never succeeds). Pure and jit-able."""
    be = env.backend

    def episode(spec, k):
        state, ts = env.reset(k, spec)

        def f(carry, t):
            state, done = carry
            data = state.physics.state.data
            tcp, cube = data.site_xpos[be._tcp], data.xpos[be._cube_body]
            goal = scripted_goal(be.task, tcp, state.physics.state.info["goal"])
            yaw = yaw_error(data.site_xmat[be._tcp].reshape(3, 3),
                            data.xmat[be._cube_body].reshape(3, 3))
            tcp_mat = data.site_xmat[be._tcp].reshape(3, 3)
            state, ts = env.step(k, state, scripted_action(tcp, tcp_mat, cube, goal, yaw, t),
                                 spec)
            return (state, done | ts.terminated), (ts.terminated & ~done,
                                                   state.physics.state.data.xpos[be._cube_body, 2])

        _, (first, z) = jax.lax.scan(f, (state, jnp.zeros((), bool)), jnp.arange(steps))
        step = jnp.where(first.any(), jnp.argmax(first), steps).astype(jnp.int32)
        return first.any(), step, z

    return per_spec_episodes(episode, jnp.asarray(specs, jnp.float32), key, episodes)
