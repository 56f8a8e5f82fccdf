"""The HyPoGen pipeline's run description: :class:`PipelineConfig` (one field per CLI flag),
what each stage's output depends on (the records compared before reusing it) and the refusals
(:class:`PipelineError`). The stages are in ``hyperjax.hypogen.stages``, the driver in
``hyperjax.hypogen.pipeline``.
"""
from __future__ import annotations

import dataclasses
import os

from hyperjax.checkpoint import config_diff
from hyperjax.hypogen import algos, specs
from hyperjax.hypogen.models import TargetNetConfig
from hyperjax.hypogen.ppo_experts import PPOConfig

__all__ = ["CPU_EPOCHS", "EXPERTS", "MANIPULATION_DEFAULTS", "PipelineConfig", "PipelineError",
           "RECORD_DEFAULTS", "TARGET_FIELDS", "stale"]

# The released ManiSkill settings (maniskill_exp.yaml @b286e2f; HyPoGen's
# `approximators/rl_solution.py`, `utils/dataset.py`, ppo.py / ppo_rollout.py) that differ from
# the DMC defaults: `PipelineConfig.for_task` applies them to manipulation tasks unless given.
# (The generated net's 3-layer tanh default is `PipelineConfig.target_config`'s.)
MANIPULATION_DEFAULTS = {"split": "maniskill", "bc_only": True, "expert_steps": 4_000_000,
                         "episodes_per_spec": 1000, "eval_episodes": 100}
CPU_EPOCHS = {"lqr_di": 200, "lqr_di_goal": 200}
TARGET_FIELDS = ("target_layers", "target_act", "block_layers", "block_width", "dl_din_way",
                 "dl_dw_way", "update_layernorm")
EXPERTS = ("lqr", "td3", "ppo")



class PipelineError(ValueError):
    """A run the pipeline refuses before or between stages, in one line naming what is wrong:
    a bad setting, or a stage output in the run directory that is damaged or was made with
    other settings (the message names the first field that differs). The CLI exits 2."""


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """One HyPoGen pipeline run (the CLI's flags, one field each; defaults = the released DMC
    configs). ``None`` fields take the task's default in :meth:`resolved`.

    Fields:
      task: spec task (``hyperjax.hypogen.specs``): ``lqr_di`` (the CPU default),
        ``lqr_di_goal``, ``{cheetah,walker,finger}_{speed,length,speed_length}``,
        ``{lift_cube,pick_cube}_{cube,stiffness,damping,length}``.
      algos: models, in order: names registered in ``hyperjax.hypogen.algos`` (hypogen,
        hyperzero, cond, uvfa, meta (MAML), pearl, and any registered since).
      expert: lqr (closed form, lqr_di*), td3 (one per spec, one vmapped program) or ppo
        (brax PPO per spec, manipulation); None: lqr / ppo / td3 by task.
      expert_steps: env steps per expert (TD3: the paper's 1M; PPO: the released 4M).
      expert_specs: ``all`` or ``train`` (PPO only: experts for the seeds' training specs).
      ppo_num_envs, ppo_preset, ppo_init, ppo_hidden: brax PPO's envs, update shape (``gpu``
        or ``cpu`` = ``PPOConfig.cpu_expert``), warm start (a params.npz) and hidden widths.
      expert_buffer, expert_std_steps: TD3 replay capacity and exploration-decay steps.
      num_specs: evenly spaced specs of the paper's grid (0 = all).
      test_fraction: held-out share (paper 0.8; Table 19: 0.5).
      seeds: the first N of the released seeds (<= 5).
      epochs: training epochs (paper 2000; None: 200 on lqr_di*, else 2000).
      eval_every: epochs per compiled segment and evaluation; must divide epochs.
      batch_size, learning_rate (None: 5e-4 HyPoGen, 1e-4 the others), bc_only,
        deep_supervision, num_blocks: the fit (``hyperjax.hypogen.train.FitConfig``).
      target_layers, target_act (None: 2 / relu on DMC, 3 / tanh on manipulation),
        block_layers, block_width, dl_din_way, dl_dw_way, update_layernorm: the generated
        networks and HyPoGen's blocks (``TargetNetConfig``; paper Tables 18, 21, 22).
      split: faithful, clean, fig4 or maniskill (``specs.split_specs``).
      episodes_per_spec: expert episodes recorded per spec.
      eval_episodes: deterministic test episodes per spec.
      meta_finetune: meta / pearl also report test-time fine-tuning (not zero-shot).
    """
    task: str = "lqr_di"
    algos: tuple[str, ...] = ("hypogen",)
    expert: str | None = None
    expert_steps: int = 1_000_000
    expert_specs: str = "all"
    ppo_num_envs: int = 1024
    ppo_preset: str = "gpu"
    ppo_init: str | None = None
    ppo_hidden: tuple[int, ...] = (256, 256, 256, 256)
    expert_buffer: int = 1_000_000
    expert_std_steps: int = 100_000
    num_specs: int = 0
    test_fraction: float = 0.8
    seeds: int = 1
    epochs: int | None = None
    eval_every: int = 20
    batch_size: int = 512
    learning_rate: float | None = None
    bc_only: bool = False
    deep_supervision: bool = True
    num_blocks: int = 8
    target_layers: int | None = None
    target_act: str | None = None
    block_layers: int = 2
    block_width: int = 128
    dl_din_way: str = "slice"
    update_layernorm: bool = True
    dl_dw_way: str = "direct"
    split: str = "faithful"
    episodes_per_spec: int = 10
    eval_episodes: int = 10
    meta_finetune: bool = False

    @classmethod
    def for_task(cls, task: str, **given) -> "PipelineConfig":
        """The config of ``task`` with ``given`` fields; a manipulation task takes
        :data:`MANIPULATION_DEFAULTS` for the fields not given. Raises ``TypeError`` for an
        unknown field."""
        base = MANIPULATION_DEFAULTS if task in specs.MANIPULATION_TASKS else {}
        return cls(task=task, **{**base, **given})

    @property
    def is_manipulation(self) -> bool:
        return self.task in specs.MANIPULATION_TASKS

    @property
    def is_dmc(self) -> bool:
        """A DMC locomotion spec task (paper Table 1): the paper's failure rule applies."""
        return self.task in specs.DMC_TASKS

    @property
    def seed_list(self) -> tuple[int, ...]:
        return tuple(specs.PAPER_SEEDS[:self.seeds])

    def grid(self):
        """The task's grid, reduced to ``num_specs`` evenly spaced specs when given."""
        return specs.subset_grid(specs.make_grid(self.task), self.num_specs)

    def resolved(self) -> "PipelineConfig":
        """A copy with ``expert`` and ``epochs`` filled in, after checking every field.

        Raises:
          PipelineError: the first bad field, in one line (the CLI's flag names).
        """
        valid = algos.names()
        if not self.algos:
            raise PipelineError("--algo is empty")
        for a in self.algos:
            if a not in valid:
                raise PipelineError(f"unknown algo {a!r}; valid: {', '.join(valid)}, or all")
        try:
            specs.split_specs(self.grid(), specs.PAPER_SEEDS[0], self.split, self.test_fraction)
        except ValueError as e:
            raise PipelineError(str(e)) from None
        expert = self.expert or ("lqr" if self.task.startswith("lqr_di") else
                                 "ppo" if self.is_manipulation else "td3")
        if expert not in EXPERTS:
            raise PipelineError(f"--expert must be one of {', '.join(EXPERTS)}, got {expert!r}")
        if expert == "lqr" and not self.task.startswith("lqr_di"):
            raise PipelineError(f"--expert=lqr needs --task=lqr_di or lqr_di_goal (closed-form "
                                f"experts), got {self.task!r}")
        if expert == "ppo" and not self.is_manipulation:
            raise PipelineError(f"--expert=ppo needs a manipulation task, got {self.task!r}")
        if not self.ppo_hidden or min(self.ppo_hidden) < 1:
            raise PipelineError(f"--ppo_hidden must be comma-separated positive widths, got "
                                f"{','.join(map(str, self.ppo_hidden))!r}")
        if self.ppo_num_envs < 1:
            raise PipelineError(f"--ppo_num_envs must be >= 1, got {self.ppo_num_envs}")
        if self.ppo_init and not os.path.isfile(self.ppo_init):
            raise PipelineError(f"--ppo_init={self.ppo_init!r} is not a file")
        epochs = CPU_EPOCHS.get(self.task, 2000) if self.epochs is None else self.epochs
        for name, v, lo in (("seeds", self.seeds, 1), ("epochs", epochs, 1),
                            ("eval_every", self.eval_every, 1),
                            ("batch_size", self.batch_size, 1),
                            ("episodes_per_spec", self.episodes_per_spec, 1),
                            ("eval_episodes", self.eval_episodes, 1),
                            ("num_blocks", self.num_blocks, 1),
                            ("target_layers", self.target_layers or 1, 1),
                            ("block_layers", self.block_layers, 1),
                            ("block_width", self.block_width, 1),
                            ("expert_steps", self.expert_steps, 10),
                            ("expert_std_steps", self.expert_std_steps, 1),
                            ("expert_buffer", self.expert_buffer, 1)):
            if v < lo:
                raise PipelineError(f"--{name} must be >= {lo}, got {v}")
        if self.seeds > 5:
            raise PipelineError(f"--seeds must be <= 5 (the released seeds), got {self.seeds}")
        if epochs % self.eval_every:
            raise PipelineError(f"--eval_every={self.eval_every} must divide --epochs={epochs}")
        if self.learning_rate is not None and not self.learning_rate > 0:
            raise PipelineError(f"--learning_rate must be > 0, got {self.learning_rate}")
        return dataclasses.replace(self, expert=expert, epochs=epochs,
                                   algos=tuple(dict.fromkeys(self.algos)))

    def target_config(self, algo: str = "hypogen"):
        """The generated networks of ``algo`` (``TargetNetConfig``). HyperZero's is the released
        fixed 2-layer ReLU (``DoubleHeadedHyperNetwork`` reads neither ``target_layers_num``
        nor ``mid_act``, on DMC and ManiSkill alike) unless ``target_layers`` or ``target_act``
        is set (Table 18's depth ablation); unset, HyPoGen's is 2-layer ReLU on DMC and 3-layer
        tanh on manipulation (maniskill_exp.yaml)."""
        if algos.get(algo).fixed_target and self.target_layers is None \
                and self.target_act is None:
            return TargetNetConfig()
        manip = self.is_manipulation
        layers = self.target_layers if self.target_layers is not None else 3 if manip else 2
        act = self.target_act if self.target_act is not None else "tanh" if manip else "relu"
        return TargetNetConfig(layers, act, self.block_layers, self.block_width,
                               self.dl_din_way, self.dl_dw_way, self.update_layernorm)

    def ppo_config(self):
        """brax PPO settings: ``PPOConfig``'s defaults, the step budget and the ``ppo_*``
        fields; with fewer than 1024 envs (a CPU run) the batch shrinks with them."""
        if self.ppo_preset == "cpu":
            return PPOConfig.cpu_expert(self.expert_steps)
        return PPOConfig.sized(self.expert_steps, self.ppo_num_envs, self.ppo_hidden)

    # What each stage's output depends on; saved with it, compared before reusing it.
    def expert_record(self) -> dict:
        """What the experts stage depends on (needs :meth:`resolved`)."""
        out = {"task": self.task, "expert": self.expert, "num_specs": self.num_specs}
        if self.expert == "td3":
            out.update(expert_steps=self.expert_steps, expert_buffer=self.expert_buffer,
                       expert_std_steps=self.expert_std_steps)
        if self.expert == "ppo":
            out.update(expert_steps=self.expert_steps, ppo_num_envs=self.ppo_num_envs,
                       ppo_hidden=",".join(map(str, self.ppo_hidden)),
                       expert_specs=self.expert_specs)
            if self.ppo_preset != "gpu" or self.ppo_init:   # (older records lack these keys)
                out.update(ppo_preset=self.ppo_preset, ppo_init=self.ppo_init)
            if self.expert_specs == "train":
                out.update(seeds=self.seeds, split=self.split,
                           test_fraction=self.test_fraction)
        return out

    def data_record(self) -> dict:
        """What the dataset depends on (its ``meta``)."""
        return {**self.expert_record(), "episodes_per_spec": self.episodes_per_spec}

    def fit_record(self) -> dict:
        """What one model's result depends on beyond the dataset (the target net's fields are
        the algo's, added by ``train_one``)."""
        return {"task": self.task, "epochs": self.epochs, "batch_size": self.batch_size,
                "learning_rate": self.learning_rate, "bc_only": self.bc_only,
                "deep_supervision": self.deep_supervision, "num_blocks": self.num_blocks,
                "split": self.split, "test_fraction": self.test_fraction,
                "eval_every": self.eval_every, "meta_finetune": self.meta_finetune,
                "eval_episodes": self.eval_episodes, **self.data_record()}


# A field a record lacks (written before the field existed) counts as its default.
RECORD_DEFAULTS = {f.name: f.default for f in dataclasses.fields(PipelineConfig)}
RECORD_DEFAULTS.update(ppo_hidden=",".join(map(str, PipelineConfig.ppo_hidden)),
                        target_layers=2, target_act="relu")   # the flags' defaults


def stale(what: str, path: str, made: dict, want: dict) -> None:
    """Refuses to reuse ``path`` (made with ``made``) for a run that wants ``want``: one line
    naming the first field that differs. A field ``made`` lacks counts as its default."""
    k = config_diff(made, want, RECORD_DEFAULTS, keys=want)
    if k is not None:
        raise PipelineError(f"{what} {path} was made with {k}={made.get(k)!r}, this run has "
                            f"{k}={want[k]!r}: pass --overwrite (or another --run_dir) to "
                            f"redo it")
