"""The HyPoGen pipeline's stages: experts and demonstrations (:func:`stage_experts_and_data`,
:func:`ppo_experts`), then one model per (algo, seed) (:func:`train_one`). Each reads its output
back when the run directory holds it with the same settings (``config.stale`` refuses other
settings in one line); ``hyperjax.hypogen.pipeline`` runs them in order.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from hyperjax import checkpoint
from hyperjax.guards import NonFiniteError
from hyperjax.hypogen import (algos, data as D, dmc, experts as X, lqr, meta, models,
                              ppo_experts as P, specs, train as T)
from hyperjax.hypogen.config import TARGET_FIELDS, PipelineConfig, PipelineError, stale
from hyperjax.hypogen.tasks import make_task_env
from hyperjax.utils import save_npz_atomic, write_json_atomic

__all__ = ["ppo_experts", "stage_experts_and_data", "train_one"]


def _restore_experts(cfg: PipelineConfig, path: str, abstract, what: str = "experts"):
    """``(state, record)`` of the experts' checkpoint ``path``, refused in one line when it
    does not restore or was made with other settings than this run's."""
    try:
        state, record = checkpoint.restore(path, abstract)
    except Exception as e:  # noqa: BLE001 - damaged or made for another task
        raise PipelineError(f"{what} {path} do not restore ({type(e).__name__}): pass "
                            f"--overwrite (or another --run_dir) to train them again") from None
    stale(what, path, record, cfg.expert_record())
    return state, record


def stage_experts_and_data(cfg: PipelineConfig, run_dir: str, log: Callable = print):
    """Experts (closed-form LQR, TD3 for every spec in one program, or brax PPO per spec),
    then ``episodes_per_spec`` recorded deterministic episodes per spec and the uniform-random
    policy's returns, saved as the dataset; returns ``(grid, env)``. ``cfg`` is resolved."""
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
        stale("dataset", f_ds, meta, cfg.data_record())
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
        stale("experts", f_exp, {"task": made_task}, {"task": cfg.task})
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
    meta = {**cfg.data_record(), "factors": list(grid.factors),
            "episode_length": env.episode_length}
    body = cfg.task.partition("_")[0]
    if "speed" in grid.factors:
        meta["expert_speed"] = dmc.achieved_speed(body, out["obs"]).mean(-1).tolist()
    if cfg.is_manipulation:
        ok, length = D.episode_outcomes(out["discount"])
        meta["expert_success"] = ok.mean(-1).tolist()
        meta["expert_length"] = length.mean(-1).tolist()
    if kind == "ppo":
        meta["expert_trained"] = trained.tolist()
    D.save_dataset(run_dir, grid.specs, out, meta)
    log(f"dataset: {len(grid)} specs x {cfg.episodes_per_spec} episodes x "
        f"{env.episode_length} steps ({t_data:.1f} s)")
    return grid, env


RANDOM_FILE = "random_floor.json"


def stage_random_floor(cfg: PipelineConfig, run_dir: str, grid, env,
                       log: Callable = print) -> np.ndarray:
    """The uniform-random policy's mean return per spec, ``float[S]`` over ``eval_episodes``
    episodes (key 1): the report's floor. Read back from ``random_floor.json`` when it was made
    with this run's dataset record and ``eval_episodes``, else measured and written (it was
    part of the dataset, whose record has no ``eval_episodes``: a changed ``--eval_episodes``
    reused a floor measured over another number of episodes)."""
    want = {**cfg.data_record(), "eval_episodes": cfg.eval_episodes}
    path = os.path.join(run_dir, RANDOM_FILE)
    if os.path.exists(path):
        try:
            with open(path) as f:
                made = json.load(f)
            if checkpoint.config_diff(made["record"], want) is None:
                return np.asarray(made["random_return"], np.float64)
        except (ValueError, KeyError, TypeError, AttributeError):   # damaged: measured again
            pass
    t = time.time()
    spec_arr = jnp.asarray(grid.specs, jnp.float32)
    rand = np.asarray(jax.jit(lambda k: D.random_returns(env, spec_arr, k, cfg.eval_episodes))(
        jax.random.key(1))).mean(-1)
    write_json_atomic(path, {"record": want, "random_return": rand.tolist()})
    log(f"uniform-random policy: {cfg.eval_episodes} episodes per spec "
        f"({time.time() - t:.1f} s)")
    return rand


def ppo_experts(cfg: PipelineConfig, run_dir: str, grid, env, log: Callable = print):
    """brax PPO experts, one ``train`` call per spec (``hyperjax.hypogen.ppo_experts``), each
    saved as ``experts/spec_III`` when done (a rerun resumes at the first missing spec), its
    evaluations appended to ``experts_log.jsonl``. Returns (stacked params, policy)."""
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
        for seed in specs.PAPER_SEEDS[:cfg.seeds]:
            trained[specs.split_specs(grid, seed, cfg.split, cfg.test_fraction).train] = True
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
            stale("expert", ckpt, record, want)
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
    out_dir = os.path.join(run_dir, algo, f"seed_{seed}")
    f_res = os.path.join(out_dir, "result.json")
    epochs = cfg.epochs
    want = {"algo": algo, "seed": seed, **cfg.fit_record(),
            **dict(zip(TARGET_FIELDS, cfg.target_config(algo)))}   # the net this algo builds
    if not algos.get(algo).meta:
        want.pop("meta_finetune")
    if os.path.exists(f_res):
        try:
            with open(f_res) as f:
                result = json.load(f)
        except (OSError, ValueError):
            raise PipelineError(f"{f_res} is damaged: delete it (or pass --overwrite) to train "
                                f"{algo} seed {seed} again") from None
        stale("result", f_res, result.get("config", {}), want)
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
    make = meta.make_meta_fit if algos.get(algo).meta else T.make_fit
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

    episodes = {}

    def returns(params, tag, specs_=None):
        """Mean return per spec, keeping every episode's return (``episodes``); on the
        manipulation and DMC tasks from the recorded episodes: their discounts give success
        and length (manipulation), their rewards the paper's failure rule (DMC, App. C.6)."""
        if cfg.is_manipulation or cfg.is_dmc:
            out = fit.evaluate(params, specs=specs_, record=True)
            reward = np.asarray(out["reward"])
            outcomes[tag] = (D.episode_outcomes(np.asarray(out["discount"])) if
                             cfg.is_manipulation else (~D.mujoco_failed(reward), None))
            episodes[tag] = reward.sum(-1)
        else:
            episodes[tag] = np.asarray(fit.evaluate(params, specs=specs_))
        return episodes[tag].mean(-1)

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
    # the breakdowns of the report (Tables 24-29): every held-out episode of the last epoch
    result["episode_returns_last"] = episodes["last"].tolist()
    if "last" in outcomes:
        ok, length = outcomes["last"]
        result["episode_success_last"] = ok.tolist()
        if length is not None:
            result["episode_length_last"] = length.tolist()
    if algo == "hypogen" and cfg.deep_supervision:   # Table 4: BC loss after each block
        result["blockwise_bc"] = T.blockwise_bc(fit.model, state.params,
                                                D.flatten(ds, split.train)).tolist()
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
    if algos.get(algo).meta and cfg.meta_finetune:
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
