"""HyPoGen and its baselines (HyperZero, Cond Policy, UVFA, Meta Policy, PEARL): policies generated from a task
specification, trained by behaviour cloning on demonstrations that hyperjax produces.

Modules: ``specs`` (the paper's grids and split), ``lqr`` (the CPU default task and its
closed-form experts), ``dmc`` (cheetah / walker / finger spec tasks on MJX), ``experts`` (TD3
for every spec in one vmapped program), ``data`` (recording and the dataset format),
``models`` (the four behaviour-cloning models and the knobs of :class:`TargetNetConfig`),
``train`` (the loss, the compiled training segments, zero-shot evaluation), ``meta`` (the MAML
and PEARL baselines, same ``Fit`` interface), ``pipeline`` (the run driver: ``PipelineConfig``,
``run_pipeline``). The CLI ``python -m experiments.hypogen`` maps its flags onto ``pipeline``.
"""
from hyperjax.hypogen.data import Dataset, load_dataset, rollout, save_dataset
from hyperjax.hypogen.meta import META_ALGOS, make_meta_fit
from hyperjax.hypogen.models import ALGOS, TargetNetConfig, make_model
from hyperjax.hypogen.specs import make_grid, split_specs
from hyperjax.hypogen.train import FitConfig, make_fit

__all__ = ["ALGOS", "META_ALGOS", "Dataset", "FitConfig", "TargetNetConfig", "load_dataset",
           "make_fit", "make_grid", "make_meta_fit", "make_model", "make_task_env", "rollout",
           "save_dataset", "split_specs"]


def make_task_env(task: str, grid=None):
    """The env of spec task ``task``: the LQR double integrator (``lqr_di``, ``lqr_di_goal``),
    a manipulation task (``{lift_cube,pick_cube}_{cube,stiffness,damping,length}``) or the
    DMC spec task, with a compiled model for each of ``grid``'s rows (default: the paper's
    grid). Raises ``ValueError`` for an unknown task."""
    if task.startswith("lqr_di"):
        from hyperjax.hypogen import lqr
        return lqr.make_task(task)
    from hyperjax.hypogen.specs import MANIPULATION_TASKS
    if task in MANIPULATION_TASKS:
        from hyperjax.envs import manipulation
        return manipulation.make_task(task, None if grid is None else grid.specs[:, 0])
    from hyperjax.hypogen import dmc
    return dmc.make_spec_task(task, grid)
