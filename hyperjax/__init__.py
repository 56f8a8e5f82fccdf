"""hyperjax: JAX-native contextual RL with hypernetworks (DMA*-SH, AIB)."""
from hyperjax._version import __version__

from hyperjax import methods
from hyperjax.agents.agent import AgentConfig, HParams
from hyperjax.config import Config
from hyperjax.envs import context_sets, env_names, make_env
from hyperjax.evaluation import evaluate, random_policy, run_episodes
from hyperjax.policy import Policy, make_policy
from hyperjax.rundir import load_policy
from hyperjax.run import RunOptions, RunResult, train_run
from hyperjax.train import Program, TrainState, make_program, make_train

__all__ = ["__version__", "AgentConfig", "Config", "HParams", "Policy", "Program", "evaluate",
           "load_policy", "random_policy", "run_episodes", "RunOptions", "RunResult",
           "train_run", "make_policy", "methods", "TrainState", "context_sets", "env_names",
           "make_env", "make_program", "make_train"]
