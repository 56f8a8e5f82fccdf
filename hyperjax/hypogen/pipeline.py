"""The HyPoGen pipeline as a library call: experts -> demonstrations -> behaviour cloning ->
zero-shot evaluation, each stage skipped when its output in the run directory was made with the
same settings (``run_pipeline``). ``python -m experiments.hypogen`` maps its flags onto a
:class:`PipelineConfig` and calls it; library code can do the same and get resume by stage,
the refusals of stale or damaged files, the non-finite guard and the report without the CLI::

    from hyperjax.hypogen.pipeline import PipelineConfig, run_pipeline
    cfg = PipelineConfig.for_task("lqr_di", algos=("hypogen", "cond"), epochs=200)
    out = run_pipeline(cfg, "runs/hypogen-lqr_di", progress_fn=lambda epoch, m: ...)

Run directory::

    RUN_DIR/experts.npz | experts/       the experts: closed-form LQR gains and P (lqr_di*),
                                         the TD3 experts' orbax checkpoint, or one brax-PPO
                                         checkpoint per spec (experts/spec_III, manipulation)
    RUN_DIR/dataset.npz                  demonstrations (format: hyperjax.hypogen.data)
    RUN_DIR/ALGO/seed_S/checkpoint/      orbax: last and selected parameters + record
    RUN_DIR/ALGO/seed_S/log.jsonl        one row per evaluation: epoch, losses, the return on
                                         the selection episodes
    RUN_DIR/ALGO/seed_S/result.json      held-out returns (last epoch; selected epoch), the
                                         train-spec returns, the split
    RUN_DIR/results.json, results.md     the table over algos and seeds, with the expert, the
                                         uniform-random floor and one row per spec

Model selection is unbiased: the "selected" parameters are chosen on episodes from other start
states than the reported ones (the paper chose on the reported test episodes); the last epoch,
on which nothing was chosen, is the headline. Seeds are the released runs' (123, 233, 666, 999,
789); the seed also picks the split (``split="faithful"``: 20 % train / 80 % test with the
released code's rounding).
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from typing import Callable

from hyperjax.checkpoint import config_diff
from hyperjax.guards import NonFiniteError
from hyperjax.rundir import lock_run_dir
from hyperjax.utils import save_npz_atomic, write_json_atomic, write_text_atomic

__all__ = ["MANIPULATION_DEFAULTS", "NonFiniteError", "PipelineConfig", "PipelineError",
           "report", "run_pipeline", "stage_experts_and_data", "train_one"]

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
      algos: models, in order: hypogen, hyperzero, cond, uvfa, meta (MAML), pearl.
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
        from hyperjax.hypogen import specs
        base = MANIPULATION_DEFAULTS if task in specs.MANIPULATION_TASKS else {}
        return cls(task=task, **{**base, **given})

    @property
    def is_manipulation(self) -> bool:
        from hyperjax.hypogen import specs
        return self.task in specs.MANIPULATION_TASKS

    @property
    def seed_list(self) -> tuple[int, ...]:
        from hyperjax.hypogen import specs
        return tuple(specs.PAPER_SEEDS[:self.seeds])

    def grid(self):
        """The task's grid, reduced to ``num_specs`` evenly spaced specs when given."""
        from hyperjax.hypogen import specs
        return specs.subset_grid(specs.make_grid(self.task), self.num_specs)

    def resolved(self) -> "PipelineConfig":
        """A copy with ``expert`` and ``epochs`` filled in, after checking every field.

        Raises:
          PipelineError: the first bad field, in one line (the CLI's flag names).
        """
        from hyperjax.hypogen import specs
        valid = all_algos()
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
        from hyperjax.hypogen.models import TargetNetConfig
        if algo == "hyperzero" and self.target_layers is None and self.target_act is None:
            return TargetNetConfig()
        manip = self.is_manipulation
        layers = self.target_layers if self.target_layers is not None else 3 if manip else 2
        act = self.target_act if self.target_act is not None else "tanh" if manip else "relu"
        return TargetNetConfig(layers, act, self.block_layers, self.block_width,
                               self.dl_din_way, self.dl_dw_way, self.update_layernorm)

    def ppo_config(self):
        """brax PPO settings: ``PPOConfig``'s defaults, the step budget and the ``ppo_*``
        fields; with fewer than 1024 envs (a CPU run) the batch shrinks with them."""
        from hyperjax.hypogen.ppo_experts import PPOConfig
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


def all_algos() -> tuple[str, ...]:
    """Every model the pipeline trains: HyPoGen, HyperZero, Cond, UVFA, then Meta and PEARL."""
    from hyperjax.hypogen import meta, models
    return models.ALGOS + meta.META_ALGOS


# A field a record lacks (written before the field existed) counts as its default.
_RECORD_DEFAULTS = {f.name: f.default for f in dataclasses.fields(PipelineConfig)}
_RECORD_DEFAULTS.update(ppo_hidden=",".join(map(str, PipelineConfig.ppo_hidden)),
                        target_layers=2, target_act="relu")   # the flags' defaults


def run_pipeline(cfg: PipelineConfig, run_dir: str, *, overwrite: bool = False,
                 log: Callable | None = print,
                 progress_fn: Callable | None = None) -> dict:
    """Runs (or resumes) the pipeline of ``cfg`` in ``run_dir``: the stages whose output is
    missing, then the report. A rerun with the same settings reads every stage back; a stage
    output made with other settings is refused, never silently reused.

    Args:
      cfg: the run (resolved here).
      run_dir: the run directory (created; layout in the module docstring).
      overwrite: delete ``run_dir``'s contents first (every stage is redone).
      log: called with each progress line (default ``print``; None: silent).
      progress_fn: ``progress_fn(epoch, metrics)`` after every evaluation of every model
        (brax's ``progress_fn``); ``metrics`` holds ``algo``, ``seed``, the losses and
        ``select_return``.
    Returns:
      what ``results.json`` holds: ``table`` (per algo: mean and std over seeds of the held-out
      return at the last and the selected epoch and of the train-spec return), the expert's and
      the random policy's returns, ``runs`` (per algo the seeds' ``result.json``).
    Raises:
      PipelineError: a bad setting, or a damaged / stale stage output (one line).
      NonFiniteError: a model's loss became non-finite (its log.jsonl keeps the rows).
    """
    log = log or (lambda *a, **k: None)
    cfg = cfg.resolved()
    if os.path.exists(run_dir) and not os.path.isdir(run_dir):
        raise PipelineError(f"--run_dir {run_dir} is a file, not a directory")
    try:   # one writer per run directory, as the AIB driver's (released at return)
        lock = lock_run_dir(run_dir, flag="--run_dir")
    except ValueError as e:
        raise PipelineError(str(e)) from None
    with lock:
        return _run_pipeline(cfg, run_dir, overwrite, log, progress_fn)


def _run_pipeline(cfg, run_dir, overwrite, log, progress_fn) -> dict:
    from hyperjax.hypogen import data as D
    if overwrite and os.path.isdir(run_dir):
        shutil.rmtree(run_dir)
    try:
        os.makedirs(run_dir, exist_ok=True)
    except OSError as e:
        raise PipelineError(f"--run_dir {run_dir}: cannot create it ({e.strerror})") from None
    log(f"hyperjax.hypogen: {','.join(cfg.algos)} on {cfg.task}, {cfg.seeds} seed(s), "
        f"{cfg.epochs} epochs; run dir {run_dir}")
    grid, env = stage_experts_and_data(cfg, run_dir, log)
    ds = D.load_dataset(run_dir)
    results = {a: [train_one(cfg, a, s, grid, env, ds, run_dir, log, progress_fn)
                   for s in cfg.seed_list] for a in cfg.algos}
    text_lines, summary = report(cfg, grid, ds, results)
    text = "\n".join(text_lines) + "\n"
    out = {**summary, "runs": results}
    write_json_atomic(os.path.join(run_dir, "results.json"), out, indent=1)
    write_text_atomic(os.path.join(run_dir, "results.md"), text)
    log(text)
    return out


def _stale(what: str, path: str, made: dict, want: dict) -> None:
    """Refuses to reuse ``path`` (made with ``made``) for a run that wants ``want``: one line
    naming the first field that differs. A field ``made`` lacks counts as its default."""
    k = config_diff(made, want, _RECORD_DEFAULTS, keys=want)
    if k is not None:
        raise PipelineError(f"{what} {path} was made with {k}={made.get(k)!r}, this run has "
                            f"{k}={want[k]!r}: pass --overwrite (or another --run_dir) to "
                            f"redo it")


def _restore_experts(cfg: PipelineConfig, path: str, abstract, what: str = "experts"):
    """``(state, record)`` of the experts' checkpoint ``path``, refused in one line when it
    does not restore or was made with other settings than this run's."""
    from hyperjax import checkpoint
    try:
        state, record = checkpoint.restore(path, abstract)
    except Exception as e:  # noqa: BLE001 - damaged or made for another task
        raise PipelineError(f"{what} {path} do not restore ({type(e).__name__}): pass "
                            f"--overwrite (or another --run_dir) to train them again") from None
    _stale(what, path, record, cfg.expert_record())
    return state, record


def stage_experts_and_data(cfg: PipelineConfig, run_dir: str, log: Callable = print):
    """Experts (closed-form LQR, TD3 for every spec in one program, or brax PPO per spec),
    then ``episodes_per_spec`` recorded deterministic episodes per spec and the uniform-random
    policy's returns, saved as the dataset; returns ``(grid, env)``. ``cfg`` is resolved."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from hyperjax import checkpoint
    from hyperjax.hypogen import data as D, experts as X, lqr, make_task_env
    grid = cfg.grid()
    env = make_task_env(cfg.task, grid)
    kind = cfg.expert
    spec_arr = jnp.asarray(grid.specs, jnp.float32)
    f_ds = os.path.join(run_dir, D.DATASET_FILE)
    if os.path.exists(f_ds):
        try:
            meta = D.load_dataset(f_ds).meta
        except ValueError as e:
            raise PipelineError(str(e)) from None
        _stale("dataset", f_ds, meta, cfg.data_record())
        log(f"dataset: {f_ds} exists, made with these settings: reused (experts not needed)")
        return grid, env
    t = time.time()
    if kind == "lqr":
        f_exp = os.path.join(run_dir, "experts.npz")
        if not os.path.exists(f_exp):
            ex = lqr.make_experts(grid.specs)
            save_npz_atomic(f_exp, spec=grid.specs, gain=np.asarray(ex.gain),
                             p=np.asarray(ex.p), task=np.array(cfg.task))
            log(f"experts: closed-form LQR for {len(grid)} specs ({time.time() - t:.1f} s)")
        else:
            log(f"experts: {f_exp} exists, reused")
        try:
            with np.load(f_exp, allow_pickle=False) as z:
                made_task = str(z["task"]) if "task" in z.files else None
                ok_specs = z["spec"].shape == np.shape(grid.specs) and np.allclose(
                    z["spec"], grid.specs)
                params = (jnp.asarray(z["gain"]), jnp.asarray(z["p"]))
        except Exception as e:  # noqa: BLE001 - BadZipFile, EOFError, a missing key, ...
            raise PipelineError(f"experts {f_exp} is damaged ({type(e).__name__}): delete it "
                                f"(or pass --overwrite) to make the experts again") from None
        _stale("experts", f_exp, {"task": made_task}, {"task": cfg.task})
        if not ok_specs:
            raise PipelineError(f"experts {f_exp} were made for other specs than "
                                f"{cfg.task!r}'s grid: pass --overwrite (or another --run_dir) "
                                f"to redo them")
        policy = lambda e, o, s: lqr.expert_action(e[0], o, s)
        value = lambda e, o, a, s: lqr.expert_q(e[0], e[1], o, a, s)
    elif kind == "ppo":
        params, policy, trained = ppo_experts(cfg, run_dir, grid, env, log)
        value = None
    else:
        td3 = X.td3_config(cfg.task, total_steps=cfg.expert_steps,
                           buffer_size=cfg.expert_buffer, std_steps=cfg.expert_std_steps)
        ckpt = os.path.join(run_dir, "experts")
        partial = os.path.join(run_dir, "experts_partial")
        init, _ = X.make_td3(env, td3)
        abstract = jax.eval_shape(jax.vmap(init), jax.random.split(jax.random.key(0), len(grid)),
                                  spec_arr)
        segments = 10 if cfg.expert_steps % 10 == 0 else 1
        if checkpoint.latest_step(ckpt) is not None:
            params, _ = _restore_experts(cfg, ckpt, abstract)
            log(f"experts: {ckpt} exists, made with these settings: reused")
        else:
            # Mid-run checkpoints (the whole TD3 state, replay included) after every segment:
            # a killed expert stage resumes at the last finished segment, bitwise.
            state0, start = None, 0
            if checkpoint.latest_step(partial) is not None:
                state0, record = _restore_experts(cfg, partial, abstract)
                start = int(record["segment"]) + 1
                log(f"experts: resuming TD3 after segment {start}/{segments} ({partial})")
            else:
                log(f"experts: TD3 for {len(grid)} specs x {cfg.expert_steps} steps")

            def on_segment(i, state):
                if i + 1 < segments:
                    checkpoint.save(partial, i + 1, state, {**cfg.expert_record(), "segment": i},
                                    keep=1)

            params = X.train_experts(env, spec_arr, td3, jax.random.key(0), segments=segments,
                                     state=state0, start_segment=start, on_segment=on_segment)
            checkpoint.save(ckpt, cfg.expert_steps, params, cfg.expert_record(), keep=1)
            shutil.rmtree(partial, ignore_errors=True)
            log(f"experts: trained ({time.time() - t:.0f} s)")
        policy, value = X.expert_policy(env.action_dim), X.expert_value()
    t = time.time()
    out = jax.jit(lambda k: D.rollout(env, policy, value, params, spec_arr, k,
                                      cfg.episodes_per_spec))(jax.random.key(0))
    if value is None:  # PPO experts: no Q to record (the manipulation runs train BC only)
        out = {**out, "value": jnp.zeros_like(out["reward"])}
    t_data = time.time() - t
    t = time.time()
    rand = np.asarray(jax.jit(lambda k: D.random_returns(env, spec_arr, k, cfg.eval_episodes))(
        jax.random.key(1)))
    meta = {**cfg.data_record(), "factors": list(grid.factors),
            "episode_length": env.episode_length, "random_return": rand.mean(-1).tolist()}
    body = cfg.task.partition("_")[0]
    if "speed" in grid.factors:
        from hyperjax.hypogen import dmc
        meta["expert_speed"] = dmc.achieved_speed(body, out["obs"]).mean(-1).tolist()
    if cfg.is_manipulation:
        ok, length = D.episode_outcomes(out["discount"])
        meta["expert_success"] = ok.mean(-1).tolist()
        meta["expert_length"] = length.mean(-1).tolist()
    if kind == "ppo":
        meta["expert_trained"] = trained.tolist()
    D.save_dataset(run_dir, grid.specs, out, meta)
    log(f"dataset: {len(grid)} specs x {cfg.episodes_per_spec} episodes x "
        f"{env.episode_length} steps ({t_data:.1f} s); uniform-random policy "
        f"{cfg.eval_episodes} episodes per spec ({time.time() - t:.1f} s)")
    return grid, env


def ppo_experts(cfg: PipelineConfig, run_dir: str, grid, env, log: Callable = print):
    """brax PPO experts, one ``train`` call per spec (``hyperjax.hypogen.ppo_experts``), each
    saved as ``experts/spec_III`` when done (a rerun resumes at the first missing spec), its
    evaluations appended to ``experts_log.jsonl``. Returns (stacked params, policy)."""
    import jax
    import numpy as np

    from hyperjax import checkpoint
    from hyperjax.hypogen import ppo_experts as P
    from hyperjax.hypogen import specs as S
    ppo = cfg.ppo_config()
    abstract = jax.eval_shape(lambda k: P.init_params(env, ppo, k), jax.random.key(0))
    start = None
    if cfg.ppo_init:
        try:
            start = P.load_params_npz(cfg.ppo_init, abstract)
        except ValueError as e:
            raise PipelineError(f"--ppo_init: {e}") from None
    log_path = os.path.join(run_dir, "experts_log.jsonl")
    params = []
    trained = np.ones(len(grid), bool)
    if cfg.expert_specs == "train":
        trained[:] = False
        for seed in S.PAPER_SEEDS[:cfg.seeds]:
            trained[S.split_specs(grid, seed, cfg.split, cfg.test_fraction).train] = True
    for i, spec in enumerate(grid.specs):
        if not trained[i]:
            params.append(None)
            continue
        ckpt = os.path.join(run_dir, "experts", f"spec_{i:03d}")
        want = {**cfg.expert_record(), "spec": float(spec[0])}
        if checkpoint.latest_step(ckpt) is not None:
            try:
                p, record = checkpoint.restore(ckpt, abstract)
            except Exception as e:  # noqa: BLE001 - damaged or made for another task
                raise PipelineError(f"expert {ckpt} does not restore ({type(e).__name__}): "
                                    f"pass --overwrite (or another --run_dir) to train it "
                                    f"again") from None
            _stale("expert", ckpt, record, want)
            log(f"experts: spec {spec[0]:g} exists, made with these settings: reused")
        else:
            t = time.time()
            log(f"experts: brax PPO, spec {spec[0]:g} ({i + 1}/{len(grid)}), "
                f"{cfg.expert_steps} steps, {ppo.num_envs} envs")

            def progress(step, row, spec=float(spec[0])):
                log(f"  step {step:9d}  eval return {row['reward']:8.2f}  success "
                    f"{row['success']:.2f}  [{row['wall_s']:5.0f} s]")
                with open(log_path, "a") as f:
                    f.write(json.dumps({"spec": spec, **row}) + "\n")

            p, _ = P.train_expert(env, spec, ppo, seed=i, progress=progress,
                                  restore_params=start)
            checkpoint.save(ckpt, cfg.expert_steps, p, want, keep=1)
            log(f"experts: spec {spec[0]:g} trained ({time.time() - t:.0f} s)")
        params.append(p)
    # Specs without an expert (``--expert_specs=train``) roll out the first trained one as a
    # placeholder; their rows are marked untrained and never used for training or reported.
    first = next(p for p in params if p is not None)
    params = [first if p is None else p for p in params]
    return P.stack(params), P.expert_policy(env, ppo), trained


def train_one(cfg: PipelineConfig, algo: str, seed: int, grid, env, ds, run_dir: str,
              log: Callable = print, progress_fn: Callable | None = None) -> dict:
    """Trains one (algo, seed) of a resolved ``cfg`` on dataset ``ds`` and evaluates it;
    returns its ``result.json`` (read back when it exists with the same settings)."""
    import jax
    import numpy as np

    from hyperjax import checkpoint
    from hyperjax.hypogen import data as D, meta, models, specs, train as T
    out_dir = os.path.join(run_dir, algo, f"seed_{seed}")
    f_res = os.path.join(out_dir, "result.json")
    epochs = cfg.epochs
    want = {"algo": algo, "seed": seed, **cfg.fit_record(),
            **dict(zip(TARGET_FIELDS, cfg.target_config(algo)))}   # the net this algo builds
    if algo not in meta.META_ALGOS:
        want.pop("meta_finetune")
    if os.path.exists(f_res):
        try:
            with open(f_res) as f:
                result = json.load(f)
        except (OSError, ValueError):
            raise PipelineError(f"{f_res} is damaged: delete it (or pass --overwrite) to train "
                                f"{algo} seed {seed} again") from None
        _stale("result", f_res, result.get("config", {}), want)
        log(f"{algo} seed {seed}: finished earlier with these settings, read back")
        return result
    split = specs.split_specs(grid, seed, cfg.split, cfg.test_fraction)
    has_expert = np.asarray(ds.meta.get("expert_trained", [True] * len(grid)))
    if not has_expert[split.train].all():
        raise PipelineError(f"{algo} seed {seed}: training specs without an expert in the "
                            f"dataset (--expert_specs=train for other seeds or split): pass "
                            f"--overwrite")
    fit_cfg = T.FitConfig(algo=algo, epochs=epochs, batch_size=cfg.batch_size,
                          learning_rate=cfg.learning_rate, bc_only=cfg.bc_only,
                          deep_supervision=cfg.deep_supervision, num_blocks=cfg.num_blocks,
                          eval_every=cfg.eval_every, eval_episodes=cfg.eval_episodes,
                          target=cfg.target_config(algo))
    make = meta.make_meta_fit if algo in meta.META_ALGOS else T.make_fit
    fit = make(fit_cfg, env, D.flatten(ds, split.train), grid.specs[split.test])
    os.makedirs(out_dir, exist_ok=True)
    t0 = time.time()
    state = fit.init(jax.random.key(seed))
    n_params = models.count_params(state.params)
    log(f"{algo} seed {seed}: {n_params:,} parameters "
        f"{models.param_breakdown(state.params)}; {len(split.train)} train / "
        f"{len(split.test)} test specs; {fit.steps_per_epoch} steps/epoch")
    t_compile = None
    with open(os.path.join(out_dir, "log.jsonl"), "w") as log_file:
        for _ in range(epochs // cfg.eval_every):
            t = time.time()
            state, m = fit.segment(state)
            m = {k: float(np.asarray(v).reshape(-1)[-1]) for k, v in m.items()}
            if t_compile is None:
                t_compile = time.time() - t
            row = {"epoch": int(state.epoch), **m}
            log_file.write(json.dumps(row) + "\n")
            log_file.flush()
            if not np.isfinite(m["loss"]):
                raise NonFiniteError(f"{algo} seed {seed}: non-finite loss at epoch "
                                     f"{row['epoch']}")
            log(f"  epoch {row['epoch']:5d}  loss {m['loss']:.5f}  bc {m['bc']:.5f}  "
                f"selection-episode return {m['select_return']:9.3f}  "
                f"[{time.time() - t0:6.0f} s]")
            if progress_fn is not None:
                progress_fn(row["epoch"], {"algo": algo, "seed": seed, **m})
    wall = time.time() - t0
    outcomes = {}

    def returns(params, tag, specs_=None):
        """Mean return per spec; on manipulation tasks from the recorded episodes, whose
        discounts also give success and length (one program for both)."""
        if not cfg.is_manipulation:
            return np.asarray(fit.evaluate(params, specs=specs_)).mean(-1)
        out = fit.evaluate(params, specs=specs_, record=True)
        outcomes[tag] = D.episode_outcomes(np.asarray(out["discount"]))
        return np.asarray(out["reward"]).sum(-1).mean(-1)

    last = returns(state.params, "last")
    best = returns(state.best_params, "selected")
    train_last = returns(state.params, "train", grid.specs[split.train])
    result = {"algo": algo, "seed": seed, "n_params": n_params, "epochs": epochs,
              "train_ids": split.train.tolist(), "test_ids": split.test.tolist(),
              "train_specs": grid.specs[split.train].tolist(),
              "test_specs": grid.specs[split.test].tolist(),
              "test_return_last": float(last.mean()),
              "test_return_selected": float(best.mean()),
              "train_return_last": float(train_last.mean()),
              "per_spec_last": last.tolist(), "per_spec_selected": best.tolist(),
              "per_train_spec_last": train_last.tolist(),
              "wall_s": wall, "first_segment_s": t_compile,
              "steps": epochs * fit.steps_per_epoch, "config": want}
    if cfg.is_manipulation:  # Table 2: success rate and episode length on the same episodes
        names = {"last": ("test", "last", "per_spec"), "selected": ("test", "selected",
                 "per_spec"), "train": ("train", "last", "per_train_spec")}
        for tag, (ok, length) in outcomes.items():
            where, when, per = names[tag]
            result[f"{where}_success_{when}"] = float(ok.mean())
            result[f"{where}_length_{when}"] = float(length.mean())
            result[f"{per}_success_{when}"] = ok.mean(-1).tolist()
        log(f"{algo} seed {seed}: held-out success last {result['test_success_last']:.1%} "
            f"(mean episode length {result['test_length_last']:.1f}), selected "
            f"{result['test_success_selected']:.1%}")
    if algo in meta.META_ALGOS and cfg.meta_finetune:
        tuned = meta.finetune(fit, state.params, D.flatten(ds, split.test))
        ft = np.asarray(meta.evaluate_finetuned(fit, env, tuned, grid.specs[split.test],
                                                cfg.eval_episodes, jax.random.key(3)))
        result["test_return_finetuned"] = float(ft.mean(-1).mean())
        result["per_spec_finetuned"] = ft.mean(-1).tolist()
        log(f"{algo} seed {seed}: after test-time fine-tuning on each test spec's expert "
            f"episodes (not zero-shot): {result['test_return_finetuned']:.3f}")
    checkpoint.save(os.path.join(out_dir, "checkpoint"), epochs,
                    {"last": state.params, "best": state.best_params}, {"result": result})
    write_json_atomic(f_res, result, indent=1)
    log(f"{algo} seed {seed}: held-out return last {result['test_return_last']:.3f}, "
        f"selected {result['test_return_selected']:.3f}; train specs "
        f"{result['train_return_last']:.3f} ({wall:.0f} s)")
    return result


def report(cfg: PipelineConfig, grid, ds, results: dict) -> tuple[list[str], dict]:
    """The results table (markdown lines) and its numbers: per method the held-out return at
    the last epoch (the headline: nothing was chosen on it), at the epoch chosen on separate
    selection episodes, and on the training specs (BC check); the expert's and the
    uniform-random policy's returns on the same specs; then one row per spec (first seed)."""
    import numpy as np

    from hyperjax.hypogen import specs
    seeds, epochs = cfg.seed_list, cfg.epochs
    splits = [specs.split_specs(grid, s, cfg.split, cfg.test_fraction) for s in seeds]
    rand = np.asarray(ds.meta.get("random_return", [np.nan] * len(grid)))
    has_expert = np.asarray(ds.meta.get("expert_trained", [True] * len(grid)))
    ex = np.where(has_expert, ds.returns().mean(-1), np.nan)
    on = lambda v, key: float(np.mean([v[getattr(sp, key)].mean() for sp in splits]))
    keys = ("test_return_last", "test_return_selected", "train_return_last")
    table = {a: {k: (float(np.mean([r[k] for r in rs])), float(np.std([r[k] for r in rs])))
                 for k in keys} for a, rs in results.items()}
    fmt = lambda v: f"{v[0]:.2f} ± {v[1]:.2f}"
    lines = [f"# {cfg.task}: zero-shot return on held-out specs", "",
             f"{len(grid)} specs ({len(splits[0].train)} train / {len(splits[0].test)} test, "
             f"split {cfg.split}"
             + ("" if cfg.split in ("fig4", "maniskill") else
                f", test fraction {cfg.test_fraction}") + f"), {len(seeds)} seed(s), "
             f"{epochs} epochs; mean ± std over seeds. Reported episodes are never used to "
             f"choose anything: 'selected' is the epoch chosen on other episodes (other start "
             f"states) of the same test specs.", "",
             "| method | held-out, last epoch | held-out, selected epoch | train specs, last "
             "epoch | train specs, normalised |", "|---|---|---|---|---|"]
    ex_train, ex_test = on(ex, "train"), on(ex, "test")
    rand_train = on(rand, "train")
    for a, v in table.items():
        norm = (v["train_return_last"][0] - rand_train) / (ex_train - rand_train)
        lines.append(f"| {a} | {fmt(v['test_return_last'])} | {fmt(v['test_return_selected'])}"
                     f" | {fmt(v['train_return_last'])} | {norm:.0%} |")
    num = lambda v, f: "–" if np.isnan(v) else format(v, f)  # no expert (--expert_specs)
    lines.append(f"| expert (recorded episodes) | {num(ex_test, '.2f')} | | "
                 f"{num(ex_train, '.2f')} | |")
    lines.append(f"| uniform random | {on(rand, 'test'):.2f} | | {on(rand, 'train'):.2f} | |")
    summary = {"table": table, "expert_test": ex_test, "expert_train": ex_train,
               "random_test": on(rand, "test"), "random_train": on(rand, "train"),
               "expert_per_spec": ex.tolist(), "random_per_spec": rand.tolist(),
               "specs": grid.specs.tolist()}
    sp = splits[0]
    role = {int(i): "train" for i in sp.train} | {int(i): "test" for i in sp.test}
    speed = ds.meta.get("expert_speed")
    head = "| spec | role | random | expert |" + (" expert speed |" if speed else "")
    head += "".join(f" {a} |" for a in results)
    lines += ["", f"Per spec (seed {seeds[0]}; models at the last epoch):", "", head,
              "|" + "---|" * (head.count("|") - 1)]
    per = {a: {} for a in results}
    for a, rs in results.items():
        r0 = rs[0]
        per[a].update(zip(r0["test_ids"], r0["per_spec_last"]))
        per[a].update(zip(r0["train_ids"], r0["per_train_spec_last"]))
    for i in range(len(grid)):
        row = (f"| {specs.spec_string(grid.specs[i])} | {role.get(i, 'unused')} | "
               f"{rand[i]:.1f} | {num(ex[i], '.1f')} |")
        if speed:
            row += f" {speed[i]:.2f} |"
        row += "".join(f" {per[a][i]:.1f} |" if i in per[a] else " |" for a in results)
        lines.append(row)
    learned = ex > rand + 0.1 * np.abs(rand)
    summary["expert_beats_random"] = learned.tolist()
    lines += ["", f"Experts clearly above the uniform-random policy (by more than 10 %): "
              f"{int(learned.sum())} of {int(has_expert.sum())} specs with an expert"
              + ("" if learned[has_expert].all() else " (not: " + ", ".join(
                  specs.spec_string(grid.specs[i])
                  for i in np.flatnonzero(~learned & has_expert)) + ")")
              + "."]
    if speed:
        target = grid.specs[:, list(grid.factors).index("speed")]
        speed = np.asarray(speed)
        r = float(np.corrcoef(target, speed)[0, 1])
        summary["speed_correlation"] = r
        lines += ["", f"Pearson correlation of target speed and the experts' achieved mean "
                  f"speed: {r:.3f} over the {len(grid)} specs"]
        if 2 < learned.sum() < len(grid):
            r2 = float(np.corrcoef(target[learned], speed[learned])[0, 1])
            summary["speed_correlation_learned"] = r2
            lines[-1] += f", {r2:.3f} over the {int(learned.sum())} whose expert learned"
        lines[-1] += "."
    if "expert_success" in ds.meta:
        ex_ok = np.where(has_expert, ds.meta["expert_success"], np.nan)
        ex_len = np.where(has_expert, ds.meta["expert_length"], np.nan)
        lines += ["", "Success rate and mean episode length on the held-out specs (paper Table 2; "
                  f"{env_cap()}-step cap, success ends the episode):", "",
                  "| method | success, last epoch | length, last epoch | success, selected epoch |",
                  "|---|---|---|---|"]
        summary["success"] = {}
        for a, rs in results.items():
            v = {k: float(np.mean([r[k] for r in rs])) for k in
                 ("test_success_last", "test_length_last", "test_success_selected")}
            summary["success"][a] = v
            lines.append(f"| {a} | {v['test_success_last']:.1%} | {v['test_length_last']:.1f} | "
                         f"{v['test_success_selected']:.1%} |")
        summary["expert_success_test"] = on(ex_ok, "test")
        summary["expert_success_train"] = on(ex_ok, "train")
        lines.append(f"| expert (recorded episodes) | {num(on(ex_ok, 'test'), '.1%')} | "
                     f"{num(on(ex_len, 'test'), '.1f')} | |")
        lines += ["", "Expert success per spec: " + ", ".join(
            f"{specs.spec_string(grid.specs[i])}: "
            + (f"{ex_ok[i]:.0%}" if has_expert[i] else "no expert (--expert_specs=train)")
            for i in range(len(grid))) + "."]
    ft = {a: [r["test_return_finetuned"] for r in rs if "test_return_finetuned" in r]
          for a, rs in results.items()}
    for a, v in ft.items():
        if v:
            summary.setdefault("finetuned", {})[a] = float(np.mean(v))
            lines += ["", f"{a} after test-time fine-tuning on each test spec's recorded expert "
                      f"episodes (not zero-shot): {np.mean(v):.2f}."]
    lines += ["", "Normalised = (model − random) / (expert − random) on the training specs: the "
              "share of the expert's margin over chance that behaviour cloning recovered. The "
              "expert column averages its recorded demonstration episodes; the models and the "
              "random policy run their own episodes (same start-state distribution)."]
    return lines, summary


def env_cap() -> int:
    from hyperjax.envs.manipulation import EPISODE_LENGTH
    return EPISODE_LENGTH


