"""HyPoGen pipeline CLI: experts -> demonstrations -> training -> zero-shot evaluation.

``python -m experiments.hypogen --algo=hypogen --task=lqr_di`` (the CPU default). ``--algo``
takes one name, a comma list, or ``all`` (the models registered in
``hyperjax.hypogen.algos``). The flags map one to one onto
``hyperjax.hypogen.pipeline.PipelineConfig`` and the run is ``run_pipeline``: each stage is
skipped when its output in ``--run_dir`` was made with the same settings (the layout is in that
module's docstring). A bad flag or a stale / damaged stage
output ends with one line on stderr and exit status 2; a non-finite loss with exit status 1.
"""
from __future__ import annotations

import dataclasses
import os

# XLA's C++ warnings (one per cache hit: "Assume version compatibility...") stay quiet unless
# asked for (TF_CPP_MIN_LOG_LEVEL=0); errors still print. Read when jax loads: set it first.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags, logging

from hyperjax import checkpoint
from hyperjax.hypogen import algos, pipeline
from hyperjax.hypogen.pipeline import PipelineConfig, PipelineError
from hyperjax.utils import (absl_flags_parser, enable_compilation_cache, fail as _fail,
                            os_error_line, parse_names, refuse_positional)

FLAGS = flags.FLAGS
flags.DEFINE_string("algo", "hypogen", "Model(s), comma-separated, or 'all': "
                    + algos.help_text() + " (hyperjax.hypogen.algos).")
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
flags.DEFINE_integer("target_layers", None, "Layers of the generated policy and Q networks "
                     "(HyPoGen, HyperZero; paper Table 18; default 2 for DMC, 3 for "
                     "manipulation; HyperZero's fixed 2 unless this or --target_act is given).")
flags.DEFINE_enum("target_act", None, ["relu", "tanh"], "Activation between the generated "
                  "networks' layers (default relu for DMC, tanh for manipulation).")
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


def config_from_flags():
    """The run the flags describe: a resolved ``PipelineConfig`` (a manipulation task takes the
    released ManiSkill settings for the flags not given). Bad input: ``_fail`` (exit 2)."""
    names = [f.name for f in dataclasses.fields(PipelineConfig)
             if f.name not in ("task", "algos")]
    given = {n: FLAGS[n].value for n in names if FLAGS[n].present}
    try:
        given["algos"] = tuple(parse_names(FLAGS.algo, algos.names(), "algo", allow_all=True))
        if "ppo_hidden" in given:
            try:
                given["ppo_hidden"] = tuple(int(w) for w in FLAGS.ppo_hidden.split(","))
            except ValueError:
                raise PipelineError(f"--ppo_hidden must be comma-separated positive widths, "
                                    f"got {FLAGS.ppo_hidden!r}") from None
        return PipelineConfig.for_task(FLAGS.task, **given).resolved()
    except ValueError as e:
        _fail(str(e))


def main(argv):
    refuse_positional(argv)
    cfg = config_from_flags()
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
    enable_compilation_cache(quiet=True)
    run_dir = FLAGS.run_dir or os.path.join("runs", f"hypogen-{FLAGS.task}")
    try:
        pipeline.run_pipeline(cfg, run_dir, overwrite=FLAGS.overwrite,
                              log=lambda line: print(line, flush=True))
    except pipeline.NonFiniteError as e:
        _fail(str(e), code=1)
    except (pipeline.PipelineError, checkpoint.CheckpointError) as e:
        _fail(str(e))
    except OSError as e:   # a full disk, a file size limit: finished stages stay
        _fail(f"{os_error_line(e, run_dir)}; finished stages are kept (rerun the command to "
              f"go on)")


if __name__ == "__main__":
    app.run(main, flags_parser=absl_flags_parser(FLAGS))
