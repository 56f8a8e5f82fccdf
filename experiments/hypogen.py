"""HyPoGen pipeline: experts → demonstrations → training → zero-shot evaluation.

``python -m experiments.hypogen --algo=hypogen --task=lqr_di`` (the CPU default). ``--algo``
takes one name, a comma list, or ``all`` (hypogen, hyperzero, cond, uvfa, meta, pearl). Each
stage is skipped when its output exists in the run directory, so a rerun only does what is
missing::

    RUN_DIR/experts.npz | experts/       the experts: closed-form LQR gains and P (lqr_di*),
                                         or the TD3 experts' orbax checkpoint
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
on which nothing was chosen, is the headline.

Seeds are the released runs' (123, 233, 666, 999, 789); the seed also picks the split (paper
protocol, ``--split=faithful``: 20 % train / 80 % test with the released code's rounding).
"""
from __future__ import annotations

import json
import os
import shutil
import time

# XLA's C++ warnings (one per cache hit: "Assume version compatibility...") stay quiet unless
# asked for (TF_CPP_MIN_LOG_LEVEL=0); errors still print. Read when jax loads: set it first.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags, logging

from hyperjax.utils import absl_flags_parser, fail as _fail

FLAGS = flags.FLAGS
flags.DEFINE_string("algo", "hypogen", "Model(s), comma-separated, or 'all': hypogen, "
                    "hyperzero, cond, uvfa, meta (MAML), pearl.")
flags.DEFINE_string("task", "lqr_di", "Spec task: lqr_di (spec = mass; the CPU default), "
                    "lqr_di_goal (spec = mass, goal), "
                    "{cheetah,walker,finger}_{speed,length,speed_length} (MJX) or "
                    "{lift_cube,pick_cube}_{cube,stiffness,damping,length} (MJX manipulation).")
flags.DEFINE_enum("expert", None, ["lqr", "td3", "ppo"], "Experts: lqr (closed form; lqr_di "
                  "only), td3 (one per spec, all specs in one vmapped program) or ppo (brax's "
                  "PPO, one program per spec; manipulation only). Default: lqr for lqr_di, ppo "
                  "for manipulation, td3 otherwise.")
flags.DEFINE_integer("expert_steps", 1_000_000, "Env steps per expert (TD3: the paper's 1M, one "
                     "update per step; manipulation tasks default to the released PPO's 4M).")
flags.DEFINE_enum("expert_specs", "all", ["all", "train"], "ppo: train experts for every spec "
                  "(all) or only for the training specs of the --seeds splits (train: saves one "
                  "compiled program per held-out spec; the expert row is then missing on them).")
flags.DEFINE_integer("ppo_num_envs", 1024, "brax PPO: parallel envs per expert (manipulation).")
flags.DEFINE_enum("ppo_preset", "gpu", ["gpu", "cpu"], "brax PPO update shape: gpu = "
                  "--ppo_num_envs envs, 10-step unrolls, --ppo_hidden networks; cpu = "
                  "PPOConfig.cpu_expert (128 envs x 25-step unrolls, SB3's 3200-step updates "
                  "in minibatches of 400, 8 passes, 256x256; --ppo_num_envs/--ppo_hidden "
                  "unused).")
flags.DEFINE_string("ppo_init", None, "brax PPO: start every expert from these parameters (a "
                    "params.npz of results/cpu_manipulation/ppo_expert.py; brax's "
                    "restore_params: the optimiser starts afresh). Default: from scratch.")
flags.DEFINE_string("ppo_hidden", "256,256,256,256", "brax PPO: hidden widths of the policy and "
                    "value networks (the released SB3 experts: 3200 x 4).")
flags.DEFINE_integer("expert_buffer", 1_000_000, "TD3 replay capacity per expert.")
flags.DEFINE_integer("expert_std_steps", 100_000, "TD3 exploration std decays 1.0 -> 0.1 over "
                     "this many steps (the released 100k of a 1M budget).")
flags.DEFINE_integer("num_specs", 0, "Reduced grid: this many evenly spaced specs of the "
                     "paper's grid (0 = the whole grid).")
flags.DEFINE_float("test_fraction", 0.8, "Held-out fraction of the specs (paper: 0.8; Table "
                   "19 holds out 0.5).")
flags.DEFINE_string("run_dir", None, "Output directory (default runs/hypogen-TASK).")
flags.DEFINE_integer("seeds", 1, "Number of seeds (the first N of 123, 233, 666, 999, 789).")
flags.DEFINE_integer("epochs", None, "Training epochs (paper: 2000; lqr_di CPU default: 200).")
flags.DEFINE_integer("eval_every", 20, "Epochs between test evaluations (best-on-test).")
flags.DEFINE_integer("batch_size", 512, "Batch size.")
flags.DEFINE_float("learning_rate", None, "Adam learning rate (default: 5e-4 HyPoGen, 1e-4 "
                   "the others).")
flags.DEFINE_bool("bc_only", False, "BC loss only (no value / TD auxiliaries).")
flags.DEFINE_bool("deep_supervision", True, "HyPoGen: supervise all K blocks (newer code); "
                  "false: the final block only.")
flags.DEFINE_integer("num_blocks", 8, "HyPoGen blocks K.")
flags.DEFINE_integer("target_layers", 2, "Layers of the generated policy and Q networks "
                     "(HyPoGen, HyperZero; paper Table 18: 2 for DMC, 3 for manipulation).")
flags.DEFINE_enum("target_act", "relu", ["relu", "tanh"], "Activation between the generated "
                  "networks' layers (relu for DMC, tanh for manipulation).")
flags.DEFINE_integer("block_layers", 2, "Layers of HyPoGen's block MLPs (Table 21).")
flags.DEFINE_integer("block_width", 128, "Width of HyPoGen's block MLPs (Table 22).")
flags.DEFINE_enum("dl_din_way", "slice", ["direct", "slice", "full"], "HyPoGen chain rule: "
                  "how dL/dout is carried to the layer's input (released default slice).")
flags.DEFINE_bool("update_layernorm", True, "HyPoGen: LayerNorm each decoded weight update over "
                  "the whole tensor (released); false keeps its magnitude (a diagnostic).")
flags.DEFINE_enum("dl_dw_way", "direct", ["direct", "slice", "full"], "HyPoGen chain rule: "
                  "how dL/dout gives the latent weight gradient (released default direct).")
flags.DEFINE_enum("split", "faithful", ["faithful", "clean", "fig4", "maniskill"], "Split: "
                  "the released code's rounding (one spec unused), clean (all non-test specs "
                  "train), fig4 (train on speeds 1 and the largest, test on the whole numbers "
                  "between) or maniskill (RoboArmDataset's evenly spaced rule; the "
                  "manipulation default).")
flags.DEFINE_integer("episodes_per_spec", 10, "Expert episodes recorded per spec (manipulation "
                     "default: the released ppo_rollout.py's 1000, each cut at success).")
flags.DEFINE_integer("eval_episodes", 10, "Deterministic test episodes per spec (manipulation "
                     "default: the released 100).")
flags.DEFINE_bool("meta_finetune", False, "meta / pearl: also report the return after "
                  "test-time fine-tuning on each test spec's recorded expert episodes (the "
                  "older eval_regressor.py; not zero-shot).")
flags.DEFINE_bool("overwrite", False, "Delete --run_dir's contents first (every stage is "
                  "redone).")


CPU_EPOCHS = {"lqr_di": 200, "lqr_di_goal": 200}
# The released ManiSkill settings (maniskill_exp.yaml @b286e2f, `PolicyTargetNet` in HyPoGen's
# `models/hypogen_core.py`; HyPoGen's `approximators/rl_solution.py` and released configs;
# HyPoGen's `utils/dataset.py`) that
# differ from the DMC defaults; applied to manipulation tasks unless the flag is given.
MANIPULATION_DEFAULTS = {"split": "maniskill", "target_layers": 3, "target_act": "tanh",
                         "bc_only": True, "expert_steps": 4_000_000,
                         "episodes_per_spec": 1000, "eval_episodes": 100}
TARGET_FLAGS = ("target_layers", "target_act", "block_layers", "block_width", "dl_din_way",
                "dl_dw_way", "update_layernorm")


def all_algos() -> tuple[str, ...]:
    from hyperjax.hypogen import meta, models
    return models.ALGOS + meta.META_ALGOS


def target_config(algo: str = "hypogen"):
    """The generated networks of ``algo``. HyperZero's is the released fixed 2-layer ReLU
    (``DoubleHeadedHyperNetwork`` reads neither ``target_layers_num`` nor ``mid_act``, on DMC
    and ManiSkill alike) unless ``--target_layers`` / ``--target_act`` are given explicitly
    (Table 18's depth ablation); the manipulation defaults shape HyPoGen's only."""
    from hyperjax.hypogen.models import TargetNetConfig
    if algo == "hyperzero" and not (FLAGS["target_layers"].present
                                    or FLAGS["target_act"].present):
        return TargetNetConfig()
    return TargetNetConfig(FLAGS.target_layers, FLAGS.target_act, FLAGS.block_layers,
                           FLAGS.block_width, FLAGS.dl_din_way, FLAGS.dl_dw_way,
                           FLAGS.update_layernorm)


def is_manipulation() -> bool:
    from hyperjax.hypogen import specs
    return FLAGS.task in specs.MANIPULATION_TASKS


def validate():
    """Checks the flags; returns (algos, epochs). Calls ``_fail`` with a one-line message.
    Manipulation tasks take ``MANIPULATION_DEFAULTS`` for the flags not given."""
    from hyperjax.utils import parse_names
    from hyperjax.hypogen import models, specs
    if is_manipulation():
        for name, value in MANIPULATION_DEFAULTS.items():
            if not FLAGS[name].present:
                FLAGS[name].value = value
    try:
        algos = parse_names(FLAGS.algo, all_algos(), "algo", allow_all=True)
        grid = make_grid()
        specs.split_specs(grid, specs.PAPER_SEEDS[0], FLAGS.split, FLAGS.test_fraction)
    except ValueError as e:
        _fail(str(e))
    if FLAGS.expert == "lqr" and not FLAGS.task.startswith("lqr_di"):
        _fail(f"--expert=lqr needs --task=lqr_di or lqr_di_goal (closed-form experts), got "
              f"{FLAGS.task!r}")
    if _expert_kind() == "ppo" and not is_manipulation():
        _fail(f"--expert=ppo needs a manipulation task, got {FLAGS.task!r}")
    try:
        hidden = ppo_hidden()
    except ValueError:
        hidden = ()
    if not hidden or min(hidden) < 1:
        _fail(f"--ppo_hidden must be comma-separated positive widths, got {FLAGS.ppo_hidden!r}")
    if FLAGS.ppo_num_envs < 1:
        _fail(f"--ppo_num_envs must be >= 1, got {FLAGS.ppo_num_envs}")
    if FLAGS.ppo_init and not os.path.isfile(FLAGS.ppo_init):
        _fail(f"--ppo_init={FLAGS.ppo_init!r} is not a file")
    epochs = CPU_EPOCHS.get(FLAGS.task, 2000) if FLAGS.epochs is None else FLAGS.epochs
    for name, v, lo in (("seeds", FLAGS.seeds, 1), ("epochs", epochs, 1),
                        ("eval_every", FLAGS.eval_every, 1), ("batch_size", FLAGS.batch_size, 1),
                        ("episodes_per_spec", FLAGS.episodes_per_spec, 1),
                        ("eval_episodes", FLAGS.eval_episodes, 1),
                        ("num_blocks", FLAGS.num_blocks, 1),
                        ("target_layers", FLAGS.target_layers, 1),
                        ("block_layers", FLAGS.block_layers, 1),
                        ("block_width", FLAGS.block_width, 1),
                        ("expert_steps", FLAGS.expert_steps, 10),
                        ("expert_std_steps", FLAGS.expert_std_steps, 1),
                        ("expert_buffer", FLAGS.expert_buffer, 1)):
        if v < lo:
            _fail(f"--{name} must be >= {lo}, got {v}")
    if FLAGS.seeds > 5:
        _fail(f"--seeds must be <= 5 (the released seeds), got {FLAGS.seeds}")
    if epochs % FLAGS.eval_every:
        _fail(f"--eval_every={FLAGS.eval_every} must divide --epochs={epochs}")
    if FLAGS.learning_rate is not None and not FLAGS.learning_rate > 0:
        _fail(f"--learning_rate must be > 0, got {FLAGS.learning_rate}")
    return algos, epochs


def _stale(what: str, path: str, made: dict, want: dict) -> None:
    """Refuses to reuse ``path`` (made with ``made``) for a run that wants ``want``: one line
    naming the first field that differs (``_fail``, exit 2). A field ``made`` lacks (written
    before the flag existed) counts as the flag's default."""
    for k in sorted(want):
        have = made.get(k, FLAGS[k].default if k in FLAGS else None)
        if have != want[k]:
            _fail(f"{what} {path} was made with {k}={made.get(k)!r}, this run has "
                  f"{k}={want[k]!r}: pass --overwrite (or another --run_dir) to redo it")


def _restore_experts(path: str, abstract, what: str = "experts"):
    """``(state, record)`` of the experts' checkpoint ``path``, refused in one line (exit 2)
    when it does not restore or was made with other settings than this run's."""
    from hyperjax import checkpoint
    try:
        state, record = checkpoint.restore(path, abstract)
    except Exception as e:  # noqa: BLE001 - damaged or made for another task
        _fail(f"{what} {path} do not restore ({type(e).__name__}): pass --overwrite (or "
              f"another --run_dir) to train them again")
    _stale(what, path, record, expert_config())
    return state, record


def _expert_kind() -> str:
    if FLAGS.expert:
        return FLAGS.expert
    return "lqr" if FLAGS.task.startswith("lqr_di") else "ppo" if is_manipulation() else "td3"


def ppo_hidden() -> tuple:
    return tuple(int(w) for w in FLAGS.ppo_hidden.split(","))


def ppo_config():
    """brax PPO settings: ``PPOConfig``'s defaults, the step budget and ``--ppo_*``; with
    fewer than 1024 envs (a CPU run) the batch shrinks with them."""
    from hyperjax.hypogen.ppo_experts import PPOConfig
    if FLAGS.ppo_preset == "cpu":
        return PPOConfig.cpu_expert(FLAGS.expert_steps)
    return PPOConfig.sized(FLAGS.expert_steps, FLAGS.ppo_num_envs, ppo_hidden())


def expert_config() -> dict:
    """What the experts stage depends on."""
    out = {"task": FLAGS.task, "expert": _expert_kind(), "num_specs": FLAGS.num_specs}
    if out["expert"] == "td3":
        out.update(expert_steps=FLAGS.expert_steps, expert_buffer=FLAGS.expert_buffer,
                   expert_std_steps=FLAGS.expert_std_steps)
    if out["expert"] == "ppo":
        out.update(expert_steps=FLAGS.expert_steps, ppo_num_envs=FLAGS.ppo_num_envs,
                   ppo_hidden=FLAGS.ppo_hidden, expert_specs=FLAGS.expert_specs)
        if FLAGS.ppo_preset != "gpu" or FLAGS.ppo_init:   # (older records lack these keys)
            out.update(ppo_preset=FLAGS.ppo_preset, ppo_init=FLAGS.ppo_init)
        if FLAGS.expert_specs == "train":
            out.update(seeds=FLAGS.seeds, split=FLAGS.split, test_fraction=FLAGS.test_fraction)
    return out


def data_config() -> dict:
    """What the dataset depends on (its ``meta``)."""
    return {**expert_config(), "episodes_per_spec": FLAGS.episodes_per_spec}


def fit_config(epochs: int) -> dict:
    """What one model's result depends on (beyond the dataset)."""
    return {"task": FLAGS.task, "epochs": epochs, "batch_size": FLAGS.batch_size,
            "learning_rate": FLAGS.learning_rate, "bc_only": FLAGS.bc_only,
            "deep_supervision": FLAGS.deep_supervision, "num_blocks": FLAGS.num_blocks,
            **{k: FLAGS[k].value for k in TARGET_FLAGS},
            "split": FLAGS.split, "test_fraction": FLAGS.test_fraction,
            "eval_every": FLAGS.eval_every, "meta_finetune": FLAGS.meta_finetune,
            "eval_episodes": FLAGS.eval_episodes, **data_config()}


def _save_npz_atomic(path: str, **arrays) -> None:
    import numpy as np
    tmp = path + ".tmp.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def make_grid():
    """The task's grid, reduced to ``--num_specs`` evenly spaced specs when given."""
    from hyperjax.hypogen import specs
    return specs.subset_grid(specs.make_grid(FLAGS.task), FLAGS.num_specs)


def make_task_env(grid):
    from hyperjax.hypogen import make_task_env as make
    return make(FLAGS.task, grid)


def stage_experts_and_data(run_dir: str):
    """Experts (closed-form LQR, or TD3 for every spec in one program), then
    ``episodes_per_spec`` recorded deterministic episodes per spec."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from hyperjax import checkpoint
    from hyperjax.hypogen import data as D, experts as X, lqr
    grid = make_grid()
    env = make_task_env(grid)
    kind = _expert_kind()
    spec_arr = jnp.asarray(grid.specs, jnp.float32)
    f_ds = os.path.join(run_dir, D.DATASET_FILE)
    if os.path.exists(f_ds):
        try:
            meta = D.load_dataset(f_ds).meta
        except ValueError as e:
            _fail(str(e))
        _stale("dataset", f_ds, meta, data_config())
        print(f"dataset: {f_ds} exists, made with these settings: reused (experts not needed)")
        return grid, env
    t = time.time()
    if kind == "lqr":
        f_exp = os.path.join(run_dir, "experts.npz")
        if not os.path.exists(f_exp):
            ex = lqr.make_experts(grid.specs)
            _save_npz_atomic(f_exp, spec=grid.specs, gain=np.asarray(ex.gain),
                             p=np.asarray(ex.p), task=np.array(FLAGS.task))
            print(f"experts: closed-form LQR for {len(grid)} specs ({time.time() - t:.1f} s)")
        else:
            print(f"experts: {f_exp} exists, reused")
        try:
            with np.load(f_exp, allow_pickle=False) as z:
                made_task = str(z["task"]) if "task" in z.files else None
                ok_specs = z["spec"].shape == np.shape(grid.specs) and np.allclose(
                    z["spec"], grid.specs)
                params = (jnp.asarray(z["gain"]), jnp.asarray(z["p"]))
        except Exception as e:  # noqa: BLE001 - BadZipFile, EOFError, a missing key, ...
            _fail(f"experts {f_exp} is damaged ({type(e).__name__}): delete it (or pass "
                  f"--overwrite) to make the experts again")
        _stale("experts", f_exp, {"task": made_task}, {"task": FLAGS.task})
        if not ok_specs:
            _fail(f"experts {f_exp} were made for other specs than {FLAGS.task!r}'s grid: pass "
                  f"--overwrite (or another --run_dir) to redo them")
        policy = lambda e, o, s: lqr.expert_action(e[0], o, s)
        value = lambda e, o, a, s: lqr.expert_q(e[0], e[1], o, a, s)
    elif kind == "ppo":
        params, policy, trained = ppo_experts(run_dir, grid, env)
        value = None
    else:
        cfg = X.td3_config(FLAGS.task, total_steps=FLAGS.expert_steps,
                           buffer_size=FLAGS.expert_buffer, std_steps=FLAGS.expert_std_steps)
        ckpt = os.path.join(run_dir, "experts")
        partial = os.path.join(run_dir, "experts_partial")
        init, _ = X.make_td3(env, cfg)
        abstract = jax.eval_shape(jax.vmap(init), jax.random.split(jax.random.key(0), len(grid)),
                                  spec_arr)
        segments = 10 if FLAGS.expert_steps % 10 == 0 else 1
        if checkpoint.latest_step(ckpt) is not None:
            params, _ = _restore_experts(ckpt, abstract)
            print(f"experts: {ckpt} exists, made with these settings: reused")
        else:
            # Mid-run checkpoints (the whole TD3 state, replay included) after every segment:
            # a killed expert stage resumes at the last finished segment, bitwise.
            state0, start = None, 0
            if checkpoint.latest_step(partial) is not None:
                state0, record = _restore_experts(partial, abstract)
                start = int(record["segment"]) + 1
                print(f"experts: resuming TD3 after segment {start}/{segments} ({partial})")
            else:
                print(f"experts: TD3 for {len(grid)} specs x {FLAGS.expert_steps} steps")

            def on_segment(i, state):
                if i + 1 < segments:
                    checkpoint.save(partial, i + 1, state, {**expert_config(), "segment": i},
                                    keep=1)

            params = X.train_experts(env, spec_arr, cfg, jax.random.key(0), segments=segments,
                                     state=state0, start_segment=start, on_segment=on_segment)
            checkpoint.save(ckpt, FLAGS.expert_steps, params, expert_config(), keep=1)
            shutil.rmtree(partial, ignore_errors=True)
            print(f"experts: trained ({time.time() - t:.0f} s)")
        policy, value = X.expert_policy(env.action_dim), X.expert_value()
    t = time.time()
    out = jax.jit(lambda k: D.rollout(env, policy, value, params, spec_arr, k,
                                      FLAGS.episodes_per_spec))(jax.random.key(0))
    if value is None:  # PPO experts: no Q to record (the manipulation runs train BC only)
        out = {**out, "value": jnp.zeros_like(out["reward"])}
    t_data = time.time() - t
    t = time.time()
    rand = np.asarray(jax.jit(lambda k: D.random_returns(env, spec_arr, k, FLAGS.eval_episodes))(
        jax.random.key(1)))
    meta = {**data_config(), "factors": list(grid.factors), "episode_length": env.episode_length,
            "random_return": rand.mean(-1).tolist()}
    body = FLAGS.task.partition("_")[0]
    if "speed" in grid.factors:
        from hyperjax.hypogen import dmc
        meta["expert_speed"] = dmc.achieved_speed(body, out["obs"]).mean(-1).tolist()
    if is_manipulation():
        ok, length = D.episode_outcomes(out["discount"])
        meta["expert_success"] = ok.mean(-1).tolist()
        meta["expert_length"] = length.mean(-1).tolist()
    if kind == "ppo":
        meta["expert_trained"] = trained.tolist()
    D.save_dataset(run_dir, grid.specs, out, meta)
    print(f"dataset: {len(grid)} specs x {FLAGS.episodes_per_spec} episodes x "
          f"{env.episode_length} steps ({t_data:.1f} s); uniform-random policy "
          f"{FLAGS.eval_episodes} episodes per spec ({time.time() - t:.1f} s)")
    return grid, env


def ppo_experts(run_dir: str, grid, env):
    """brax PPO experts, one ``train`` call per spec (``hyperjax.hypogen.ppo_experts``), each
    saved as ``experts/spec_III`` when done (a rerun resumes at the first missing spec), its
    evaluations appended to ``experts_log.jsonl``. Returns (stacked params, policy)."""
    import jax
    import numpy as np

    from hyperjax import checkpoint
    from hyperjax.hypogen import ppo_experts as P
    from hyperjax.hypogen import specs as S
    cfg = ppo_config()
    abstract = jax.eval_shape(lambda k: P.init_params(env, cfg, k), jax.random.key(0))
    start = None
    if FLAGS.ppo_init:
        try:
            start = P.load_params_npz(FLAGS.ppo_init, abstract)
        except ValueError as e:
            _fail(f"--ppo_init: {e}")
    log_path = os.path.join(run_dir, "experts_log.jsonl")
    params = []
    trained = np.ones(len(grid), bool)
    if FLAGS.expert_specs == "train":
        trained[:] = False
        for seed in S.PAPER_SEEDS[:FLAGS.seeds]:
            trained[S.split_specs(grid, seed, FLAGS.split, FLAGS.test_fraction).train] = True
    for i, spec in enumerate(grid.specs):
        if not trained[i]:
            params.append(None)
            continue
        ckpt = os.path.join(run_dir, "experts", f"spec_{i:03d}")
        want = {**expert_config(), "spec": float(spec[0])}
        if checkpoint.latest_step(ckpt) is not None:
            try:
                p, record = checkpoint.restore(ckpt, abstract)
            except Exception as e:  # noqa: BLE001 - damaged or made for another task
                _fail(f"expert {ckpt} does not restore ({type(e).__name__}): pass --overwrite "
                      f"(or another --run_dir) to train it again")
            _stale("expert", ckpt, record, want)
            print(f"experts: spec {spec[0]:g} exists, made with these settings: reused")
        else:
            t = time.time()
            print(f"experts: brax PPO, spec {spec[0]:g} ({i + 1}/{len(grid)}), "
                  f"{FLAGS.expert_steps} steps, {cfg.num_envs} envs", flush=True)

            def progress(step, row, spec=float(spec[0])):
                print(f"  step {step:9d}  eval return {row['reward']:8.2f}  success "
                      f"{row['success']:.2f}  [{row['wall_s']:5.0f} s]", flush=True)
                with open(log_path, "a") as f:
                    f.write(json.dumps({"spec": spec, **row}) + "\n")

            p, _ = P.train_expert(env, spec, cfg, seed=i, progress=progress,
                                  restore_params=start)
            checkpoint.save(ckpt, FLAGS.expert_steps, p, want, keep=1)
            print(f"experts: spec {spec[0]:g} trained ({time.time() - t:.0f} s)")
        params.append(p)
    # Specs without an expert (``--expert_specs=train``) roll out the first trained one as a
    # placeholder; their rows are marked untrained and never used for training or reported.
    first = next(p for p in params if p is not None)
    params = [first if p is None else p for p in params]
    return P.stack(params), P.expert_policy(env, cfg), trained


def train_one(algo: str, seed: int, epochs: int, grid, env, ds, run_dir: str) -> dict:
    """Trains one (algo, seed) and evaluates it; skipped when its result.json exists."""
    import jax
    import numpy as np

    from hyperjax import checkpoint
    from hyperjax.hypogen import data as D, meta, models, specs, train as T
    out_dir = os.path.join(run_dir, algo, f"seed_{seed}")
    f_res = os.path.join(out_dir, "result.json")
    want = {"algo": algo, "seed": seed, **fit_config(epochs),
            **dict(zip(TARGET_FLAGS, target_config(algo)))}   # the net this algo builds
    if algo not in meta.META_ALGOS:
        want.pop("meta_finetune")
    if os.path.exists(f_res):
        try:
            with open(f_res) as f:
                result = json.load(f)
        except (OSError, ValueError):
            _fail(f"{f_res} is damaged: delete it (or pass --overwrite) to train "
                  f"{algo} seed {seed} again")
        _stale("result", f_res, result.get("config", {}), want)
        print(f"{algo} seed {seed}: finished earlier with these settings, read back")
        return result
    split = specs.split_specs(grid, seed, FLAGS.split, FLAGS.test_fraction)
    has_expert = np.asarray(ds.meta.get("expert_trained", [True] * len(grid)))
    if not has_expert[split.train].all():
        _fail(f"{algo} seed {seed}: training specs without an expert in the dataset "
              f"(--expert_specs=train for other seeds or split): pass --overwrite")
    cfg = T.FitConfig(algo=algo, epochs=epochs, batch_size=FLAGS.batch_size,
                      learning_rate=FLAGS.learning_rate, bc_only=FLAGS.bc_only,
                      deep_supervision=FLAGS.deep_supervision, num_blocks=FLAGS.num_blocks,
                      eval_every=FLAGS.eval_every, eval_episodes=FLAGS.eval_episodes,
                      target=target_config(algo))
    make = meta.make_meta_fit if algo in meta.META_ALGOS else T.make_fit
    fit = make(cfg, env, D.flatten(ds, split.train), grid.specs[split.test])
    os.makedirs(out_dir, exist_ok=True)
    t0 = time.time()
    state = fit.init(jax.random.key(seed))
    n_params = models.count_params(state.params)
    print(f"{algo} seed {seed}: {n_params:,} parameters "
          f"{models.param_breakdown(state.params)}; {len(split.train)} train / "
          f"{len(split.test)} test specs; {fit.steps_per_epoch} steps/epoch")
    log = open(os.path.join(out_dir, "log.jsonl"), "w")
    t_compile = None
    for i in range(epochs // FLAGS.eval_every):
        t = time.time()
        state, m = fit.segment(state)
        m = {k: float(np.asarray(v).reshape(-1)[-1]) for k, v in m.items()}
        if t_compile is None:
            t_compile = time.time() - t
        row = {"epoch": int(state.epoch), **m}
        log.write(json.dumps(row) + "\n")
        log.flush()
        if not np.isfinite(m["loss"]):
            _fail(f"{algo} seed {seed}: non-finite loss at epoch {row['epoch']}", code=1)
        print(f"  epoch {row['epoch']:5d}  loss {m['loss']:.5f}  bc {m['bc']:.5f}  "
              f"selection-episode return {m['select_return']:9.3f}  [{time.time() - t0:6.0f} s]",
              flush=True)
    log.close()
    wall = time.time() - t0
    outcomes = {}

    def returns(params, tag, specs_=None):
        """Mean return per spec; on manipulation tasks from the recorded episodes, whose
        discounts also give success and length (one program for both)."""
        if not is_manipulation():
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
    if is_manipulation():  # Table 2: success rate and episode length on the same episodes
        names = {"last": ("test", "last", "per_spec"), "selected": ("test", "selected",
                 "per_spec"), "train": ("train", "last", "per_train_spec")}
        for tag, (ok, length) in outcomes.items():
            where, when, per = names[tag]
            result[f"{where}_success_{when}"] = float(ok.mean())
            result[f"{where}_length_{when}"] = float(length.mean())
            result[f"{per}_success_{when}"] = ok.mean(-1).tolist()
        print(f"{algo} seed {seed}: held-out success last {result['test_success_last']:.1%} "
              f"(mean episode length {result['test_length_last']:.1f}), selected "
              f"{result['test_success_selected']:.1%}")
    if algo in meta.META_ALGOS and FLAGS.meta_finetune:
        tuned = meta.finetune(fit, state.params, D.flatten(ds, split.test))
        ft = np.asarray(meta.evaluate_finetuned(fit, env, tuned, grid.specs[split.test],
                                                FLAGS.eval_episodes, jax.random.key(3)))
        result["test_return_finetuned"] = float(ft.mean(-1).mean())
        result["per_spec_finetuned"] = ft.mean(-1).tolist()
        print(f"{algo} seed {seed}: after test-time fine-tuning on each test spec's expert "
              f"episodes (not zero-shot): {result['test_return_finetuned']:.3f}")
    checkpoint.save(os.path.join(out_dir, "checkpoint"), epochs,
                    {"last": state.params, "best": state.best_params}, {"result": result})
    with open(f_res, "w") as f:
        json.dump(result, f, indent=1)
    print(f"{algo} seed {seed}: held-out return last {result['test_return_last']:.3f}, "
          f"selected {result['test_return_selected']:.3f}; train specs "
          f"{result['train_return_last']:.3f} ({wall:.0f} s)")
    return result


def report(grid, ds, results: dict, seeds, epochs: int):
    """The results table (markdown lines) and its numbers: per method the held-out return at
    the last epoch (the headline: nothing was chosen on it), at the epoch chosen on separate
    selection episodes, and on the training specs (BC check); the expert's and the
    uniform-random policy's returns on the same specs; then one row per spec (first seed)."""
    import numpy as np

    from hyperjax.hypogen import specs
    splits = [specs.split_specs(grid, s, FLAGS.split, FLAGS.test_fraction) for s in seeds]
    rand = np.asarray(ds.meta.get("random_return", [np.nan] * len(grid)))
    has_expert = np.asarray(ds.meta.get("expert_trained", [True] * len(grid)))
    ex = np.where(has_expert, ds.returns().mean(-1), np.nan)
    on = lambda v, key: float(np.mean([v[getattr(sp, key)].mean() for sp in splits]))
    keys = ("test_return_last", "test_return_selected", "train_return_last")
    table = {a: {k: (float(np.mean([r[k] for r in rs])), float(np.std([r[k] for r in rs])))
                 for k in keys} for a, rs in results.items()}
    fmt = lambda v: f"{v[0]:.2f} ± {v[1]:.2f}"
    lines = [f"# {FLAGS.task}: zero-shot return on held-out specs", "",
             f"{len(grid)} specs ({len(splits[0].train)} train / {len(splits[0].test)} test, "
             f"split {FLAGS.split}"
             + ("" if FLAGS.split in ("fig4", "maniskill") else
                f", test fraction {FLAGS.test_fraction}") + f"), {len(seeds)} seed(s), "
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


def main(argv):
    del argv
    algos, epochs = validate()
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
    from hyperjax.utils import enable_compilation_cache
    enable_compilation_cache()
    import numpy as np

    from hyperjax.hypogen import data as D, specs
    run_dir = FLAGS.run_dir or os.path.join("runs", f"hypogen-{FLAGS.task}")
    if os.path.exists(run_dir) and not os.path.isdir(run_dir):
        _fail(f"--run_dir {run_dir} is a file, not a directory")
    if FLAGS.overwrite and os.path.isdir(run_dir):
        import shutil
        shutil.rmtree(run_dir)
    try:
        os.makedirs(run_dir, exist_ok=True)
    except OSError as e:
        _fail(f"--run_dir {run_dir}: cannot create it ({e.strerror})")
    print(f"hyperjax.hypogen: {','.join(algos)} on {FLAGS.task}, {FLAGS.seeds} seed(s), "
          f"{epochs} epochs; run dir {run_dir}")
    grid, env = stage_experts_and_data(run_dir)
    ds = D.load_dataset(run_dir)
    seeds = specs.PAPER_SEEDS[:FLAGS.seeds]
    results = {a: [train_one(a, s, epochs, grid, env, ds, run_dir) for s in seeds]
               for a in algos}
    text_lines, summary = report(grid, ds, results, seeds, epochs)
    text = "\n".join(text_lines) + "\n"
    with open(os.path.join(run_dir, "results.md"), "w") as f:
        f.write(text)
    with open(os.path.join(run_dir, "results.json"), "w") as f:
        json.dump({**summary, "runs": results}, f, indent=1)
    print(text)


if __name__ == "__main__":
    app.run(main, flags_parser=absl_flags_parser(FLAGS))
