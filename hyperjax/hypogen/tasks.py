"""The env of a HyPoGen spec task: one factory over the LQR, DMC and manipulation tasks."""
from __future__ import annotations

from hyperjax.envs import manipulation
from hyperjax.hypogen import dmc, lqr
from hyperjax.hypogen.specs import MANIPULATION_TASKS

__all__ = ["make_task_env"]


def make_task_env(task: str, grid=None):
    """The env of spec task ``task``: the LQR double integrator (``lqr_di``, ``lqr_di_goal``),
    a manipulation task (``{lift_cube,pick_cube}_{cube,stiffness,damping,length}``) or the
    DMC spec task, with a compiled model for each of ``grid``'s rows (default: the paper's
    grid). Raises ``ValueError`` for an unknown task."""
    if task.startswith("lqr_di"):
        return lqr.make_lqr_task(task)
    if task in MANIPULATION_TASKS:
        return manipulation.make_manipulation_task(task, None if grid is None else grid.specs[:, 0])
    return dmc.make_spec_task(task, grid)
