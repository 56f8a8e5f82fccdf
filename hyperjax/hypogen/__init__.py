"""HyPoGen and its baselines (HyperZero, Cond Policy, UVFA, Meta Policy, PEARL): policies generated from a task
specification, trained by behaviour cloning on demonstrations that hyperjax produces.

Modules: ``specs`` (the paper's grids and split), ``lqr`` (the CPU default task and its
closed-form experts), ``dmc`` (cheetah / walker / finger spec tasks on MJX), ``experts`` (TD3
for every spec in one vmapped program), ``data`` (recording and the dataset format),
``models`` (the four behaviour-cloning models and the knobs of :class:`TargetNetConfig`),
``train`` (the loss, the compiled training segments, zero-shot evaluation), ``meta`` (the MAML
and PEARL baselines, same ``Fit`` interface), ``algos`` (the registry: every per-model fact in
one ``Algo`` record; a new baseline is one ``algos.register``), ``tasks`` (``make_task_env``),
and the run driver: ``config`` (``PipelineConfig``), ``stages``, ``report``, ``pipeline``
(``run_pipeline``). The CLI ``python -m experiments.hypogen`` maps its flags onto
``pipeline``.
"""
from hyperjax.hypogen.data import Dataset, load_dataset, rollout, save_dataset
from hyperjax.hypogen import algos
from hyperjax.hypogen.meta import META_ALGOS, make_meta_fit
from hyperjax.hypogen.models import ALGOS, TargetNetConfig, make_model
from hyperjax.hypogen.specs import make_grid, split_specs
from hyperjax.hypogen.tasks import make_task_env
from hyperjax.hypogen.train import FitConfig, make_fit

__all__ = ["ALGOS", "META_ALGOS", "Dataset", "FitConfig", "TargetNetConfig", "algos",
           "load_dataset", "make_fit", "make_grid", "make_meta_fit", "make_model",
           "make_task_env", "rollout", "save_dataset", "split_specs"]
