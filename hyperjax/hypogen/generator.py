"""A trained generator, read back from a pipeline run: the policy for any spec, new ones included.

::

    from hyperjax.hypogen.generator import load_generator
    g = load_generator("runs/hypogen-lqr_di", "hypogen")      # seed: the run's first
    act = g.policy([1.37])                                    # a spec never trained on
    action = act(obs)                                         # obs [obs_dim] or [B, obs_dim]

Everything ``load_generator`` needs is in the run directory: the model's settings in
``ALGO/seed_S/result.json`` (its ``config``), the parameters in ``ALGO/seed_S/checkpoint``.
"""
from __future__ import annotations

import json
import os
from functools import partial
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from hyperjax import checkpoint
from hyperjax.envs.core import Env
from hyperjax.hypogen import algos
from hyperjax.hypogen.config import RECORD_DEFAULTS, TARGET_FIELDS
from hyperjax.hypogen.models import TargetNetConfig, make_model
from hyperjax.hypogen.tasks import make_task_env
from hyperjax.hypogen.train import init_params

__all__ = ["Generator", "load_generator"]

@partial(jax.jit, static_argnums=0)
def _generate(model, params, specs):
    return model.apply(params, specs, method="generate")


class Generator(NamedTuple):
    """A trained spec-to-policy model of one (algo, seed) of a pipeline run. Every method reads
    the tuple's current ``params`` (``g._replace(params=…)`` serves other parameters).

    Attributes:
      algo: the model's name (``hyperjax.hypogen.algos``).
      params: its parameters (the checkpoint's ``last`` or ``best``).
      env: the task's env (``obs_dim``, ``action_dim``; rollouts with
        ``hyperjax.hypogen.data.rollout``).
      model: the flax module (``make_model``) the run trained.
      result: the run's ``result.json`` (its ``config`` rebuilt the model).
    """

    algo: str
    params: Any
    env: Env
    model: Any
    result: dict

    def generate(self, specs) -> Any:
        """``specs float32[S, F]`` -> the generated policies' weights (a pytree, leading axis
        S); jitted once per model."""
        return _generate(self.model, self.params, jnp.asarray(specs, jnp.float32))

    def act(self, weights, obs, spec=None) -> jax.Array:
        """``obs float32[B, obs_dim]`` -> ``float32[B, action_dim]`` in [-1, 1], deterministic,
        for one spec's ``weights`` (a slice of :meth:`generate`'s); ``spec`` unused (the
        signature ``data.rollout`` calls)."""
        return self.model.apply(self.params, weights, obs, method="act")

    def policy(self, spec) -> Callable:
        """``obs float32[obs_dim]`` or ``[B, obs_dim]`` -> action (same leading shape), the
        policy generated for ``spec`` (``float[F]``, any value, trained on or not)."""
        spec = jnp.asarray(spec, jnp.float32).reshape(1, -1)
        weights = jax.tree.map(lambda x: x[0], self.generate(spec))

        def act(obs):
            obs = jnp.asarray(obs, jnp.float32)
            out = self.act(weights, obs.reshape(-1, obs.shape[-1]), spec[0])
            return out.reshape(*obs.shape[:-1], -1)
        return act


def load_generator(run_dir: str, algo: str = "hypogen", seed: int | None = None,
                   which: str = "last") -> Generator:
    """The generator ``algo`` trained by the pipeline run in ``run_dir``.

    Args:
      run_dir: a ``run_pipeline`` / ``python -m experiments.hypogen`` run directory.
      algo: a behaviour-cloning model of the run (not ``meta`` / ``pearl``: their policies
        adapt at test time).
      seed: one of the run's seeds (``ALGO/seed_S``); None: the first.
      which: ``last`` (the headline: nothing was chosen on it) or ``best`` (the epoch chosen
        on the selection episodes).
    Returns:
      a :class:`Generator`.
    Raises:
      ValueError: in one line, naming what is missing (the run, the algo, the seed, a
        finished result) or a meta-learning algo.
    """
    if which not in ("last", "best"):
        raise ValueError(f"which must be 'last' or 'best', got {which!r}")
    spec = algos.get(algo)
    if spec.meta:
        raise ValueError(f"algo {algo!r} adapts at test time (meta-learning): no generator "
                         f"to load")
    base = os.path.join(run_dir, algo)
    if not os.path.isdir(base):
        there = sorted(d for d in os.listdir(run_dir) if os.path.isdir(os.path.join(run_dir, d))
                       ) if os.path.isdir(run_dir) else None
        raise ValueError(f"{run_dir} has no {algo} run" + (
            f" (it has: {', '.join(there) or 'nothing'})" if there is not None else
            " (no such directory)"))
    seeds = sorted(int(d[5:]) for d in os.listdir(base) if d.startswith("seed_"))
    seed = seeds[0] if seed is None and seeds else seed
    f_res = os.path.join(base, f"seed_{seed}", "result.json")
    if not os.path.exists(f_res):
        raise ValueError(f"{base} has no finished seed {seed} (finished: "
                         f"{', '.join(map(str, seeds)) or 'none'})")
    with open(f_res) as f:
        result = json.load(f)
    cfg = {**RECORD_DEFAULTS, **result["config"]}   # older results lack newer fields
    env = make_task_env(cfg["task"])
    model = make_model(algo, env.obs_dim, env.action_dim, use_td=not cfg["bc_only"],
                       deep_supervision=cfg["deep_supervision"], num_blocks=cfg["num_blocks"],
                       target=TargetNetConfig(*(cfg[k] for k in TARGET_FIELDS)))
    specs = jnp.asarray(np.asarray(result["train_specs"], np.float32))
    abstract = jax.eval_shape(lambda k: init_params(model, k, specs), jax.random.key(0))
    params, _ = checkpoint.restore(os.path.join(base, f"seed_{seed}", "checkpoint"),
                                   {"last": abstract, "best": abstract})
    return Generator(algo, params[which], env, model, result)
