"""hyperjax: JAX-native contextual RL with hypernetworks (DMA*-SH, AIB)."""
__version__ = "0.2.0"

from hyperjax.config import METHODS, Config
from hyperjax.envs import context_sets, env_names, make_env
from hyperjax.train import Program, TrainState, make_program, make_train

__all__ = ["Config", "METHODS", "Program", "TrainState", "context_sets", "env_names",
           "make_env", "make_program", "make_train"]
