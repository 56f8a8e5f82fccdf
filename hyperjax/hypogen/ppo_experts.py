"""Per-spec PPO experts for the manipulation tasks, trained by brax's PPO
(``brax.training.agents.ppo.train``) on the MJX env with the spec fixed.

The released experts (github ReNginx/HyPoGen @b286e2f, ``maniskill/ppo.py``) are
stable-baselines3 PPO: 8 envs × 400 steps per update, minibatch 400, 15 epochs, γ = 0.85,
``target_kl`` 0.05, 4M steps, 100-step training episodes, ``net_arch`` [3200]×4. Kept here:
γ = 0.85, GAE λ 0.95, clip 0.2, lr 3e-4, no entropy bonus, 100-step episodes, the step
budget. brax's PPO differs in kind (thousands of envs, short unrolls, no KL early stop, a
tanh-normal policy) and the networks are ``hidden`` wide (default 256×4, not 3200×4): listed
as deviations in the README.

**One program per spec.** brax's ``train`` is a host loop around jitted epochs holding one
policy; it cannot be vmapped over specs, and its ``randomization_fn`` (a batched model) would
train one policy for all specs, not an expert per spec. So each spec is one ``train`` call on a
:class:`SpecEnv` that pins the spec; the programs differ only by that constant.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from hyperjax.envs.manipulation import TRAIN_EPISODE_LENGTH, ManipulationTask
from hyperjax.hypogen import data as D
from hyperjax.utils import save_npz_atomic


class SpecEnv:
    """A hyperjax manipulation task with the spec fixed, as a Playground ``MjxEnv`` for brax's
    PPO (``reset(rng)``, ``step(state, action)``, ``observation_size``, ``action_size``).

    ``state.data`` holds the hyperjax ``EnvState``. **No step is ``done``**: the released
    ``ContinuousTaskWrapper`` (``maniskill/ppo.py``) keeps ``done = False`` until its 100-step
    cap, success included, so the episode ends only at brax's ``episode_length`` (a
    truncation, bootstrapped). Ending at success would pay less than hovering just short of it
    (γ = 0.85, ~2.2 dense reward a step). ``metrics["success"]`` is 1 on the first successful
    step of an episode only (``info["ever_success"]`` latches it), so brax's per-episode sum is
    the success indicator."""

    def __init__(self, env: ManipulationTask, spec):
        self.env = env
        self.spec = jnp.asarray(spec, jnp.float32).reshape(len(env.factors))

    @property
    def observation_size(self) -> int:
        return self.env.obs_dim

    @property
    def action_size(self) -> int:
        return self.env.action_dim

    def reset(self, rng):
        from mujoco_playground._src import mjx_env  # noqa: PLC0415
        state, ts = self.env.reset(rng, self.spec)
        zero = jnp.zeros((), jnp.float32)
        return mjx_env.State(state, ts.obs, zero, zero, {"success": zero},
                             {"ever_success": zero})

    def step(self, state, action):
        s, ts = self.env.step(jax.random.key(0), state.data, action, self.spec)
        success = ts.terminated.astype(jnp.float32)
        ever = state.info["ever_success"]
        return state.replace(data=s, obs=ts.obs, reward=ts.reward,
                             done=jnp.zeros((), jnp.float32),
                             metrics={**state.metrics, "success": success * (1.0 - ever)},
                             info={**state.info, "ever_success": jnp.maximum(ever, success)})


@dataclasses.dataclass(frozen=True)
class PPOConfig:
    """brax PPO settings (defaults: a GPU-sized run; ``cpu_smoke()`` for this machine)."""

    num_timesteps: int = 4_000_000     # the released budget per spec
    num_envs: int = 1024
    unroll_length: int = 10
    batch_size: int = 256
    num_minibatches: int = 8
    num_updates_per_batch: int = 4
    learning_rate: float = 3e-4
    discounting: float = 0.85          # released γ
    gae_lambda: float = 0.95
    clipping_epsilon: float = 0.2
    entropy_cost: float = 0.0
    hidden: tuple = (256, 256, 256, 256)
    episode_length: int = TRAIN_EPISODE_LENGTH
    num_evals: int = 5

    @staticmethod
    def sized(num_timesteps: int, num_envs: int, hidden: tuple, **kw) -> "PPOConfig":
        """The defaults with ``num_envs`` envs; below 1024 envs (a CPU run) the batch shrinks
        with them (``batch_size = num_envs``, 4 minibatches, so brax's divisibility holds)."""
        small = {} if num_envs >= 1024 else {"batch_size": num_envs, "num_minibatches": 4}
        return PPOConfig(num_timesteps=num_timesteps, num_envs=num_envs, hidden=hidden,
                         **{**small, **kw})

    @staticmethod
    def cpu_expert(num_timesteps: int = 3_000_000, **kw) -> "PPOConfig":
        """A CPU-sized expert with the released SB3 update's shape: 3200 env steps per update
        (128 envs × 25-step unrolls; SB3: 8 envs × 400), minibatches of 400 samples
        (16 trajectories × 25; SB3 ``batch_size=400``), 8 passes (SB3: 15 with a
        ``target_kl`` 0.05 early stop, which brax lacks), 256×256 networks (SB3: 3200×4),
        an evaluation about every 200k steps (each costs 128 × 100 env steps)."""
        evals = int(np.clip(num_timesteps // 200_000 + 1, 2, 16))   # one per ~200k steps
        return PPOConfig(**{**dict(num_timesteps=num_timesteps, num_envs=128, unroll_length=25,
                                   batch_size=16, num_minibatches=8, num_updates_per_batch=8,
                                   hidden=(256, 256), num_evals=evals), **kw})

    @staticmethod
    def cpu_smoke(num_timesteps: int = 200_000) -> "PPOConfig":
        return PPOConfig(num_timesteps=num_timesteps, num_envs=64, unroll_length=10,
                         batch_size=64, num_minibatches=4, num_updates_per_batch=4,
                         hidden=(64, 64), num_evals=5)


def network_factory(cfg: PPOConfig):
    from brax.training.agents.ppo import networks as ppo_networks  # noqa: PLC0415
    return functools.partial(ppo_networks.make_ppo_networks,
                             policy_hidden_layer_sizes=cfg.hidden,
                             value_hidden_layer_sizes=cfg.hidden)


def train_expert(env: ManipulationTask, spec, cfg: PPOConfig, seed: int = 0,
                 progress: Callable[[int, dict], None] | None = None,
                 on_params: Callable[[int, Any], None] | None = None,
                 restore_params: Any = None):
    """brax PPO on ``env`` with ``spec`` fixed. Returns ``(params, log)``: brax's
    ``(normalizer, policy, value)`` parameters and one row per evaluation
    (``step``, ``reward`` = mean return of brax's 100-step evaluation episodes, ``success`` =
    the fraction of them that succeeded at least once, ``wall_s``).

    ``on_params(step, params)`` runs at every evaluation (brax's ``policy_params_fn``: a place
    to checkpoint mid-run); ``restore_params`` starts from such parameters (brax restores the
    normaliser, policy and value; the optimiser state and step count start afresh)."""
    import time  # noqa: PLC0415

    from brax.training.agents.ppo import train as ppo  # noqa: PLC0415
    from mujoco_playground._src import wrapper  # noqa: PLC0415
    log: list[dict] = []
    t0 = time.time()

    def on_progress(step, metrics):
        row = {"step": int(step),
               "reward": float(metrics.get("eval/episode_reward", np.nan)),
               "success": float(metrics.get("eval/episode_success", np.nan)),
               "wall_s": time.time() - t0}
        log.append(row)
        if progress is not None:
            progress(step, row)

    _, params, _ = ppo.train(
        SpecEnv(env, spec), num_timesteps=cfg.num_timesteps, num_envs=cfg.num_envs,
        episode_length=cfg.episode_length, unroll_length=cfg.unroll_length,
        batch_size=cfg.batch_size, num_minibatches=cfg.num_minibatches,
        num_updates_per_batch=cfg.num_updates_per_batch, learning_rate=cfg.learning_rate,
        discounting=cfg.discounting, gae_lambda=cfg.gae_lambda,
        clipping_epsilon=cfg.clipping_epsilon, entropy_cost=cfg.entropy_cost,
        normalize_observations=True, network_factory=network_factory(cfg), seed=seed,
        num_evals=cfg.num_evals, num_eval_envs=min(cfg.num_envs, 128),
        deterministic_eval=True,
        wrap_env_fn=functools.partial(wrapper.wrap_for_brax_training, full_reset=True),
        progress_fn=on_progress,
        policy_params_fn=(lambda step, _make, p: on_params(int(step), p)) if on_params
        else (lambda *a: None),
        restore_params=restore_params, restore_value_fn=True)
    return params, log


def expert_policy(env: ManipulationTask, cfg: PPOConfig) -> Callable:
    """``policy(params_s, obs float32[obs], spec) -> float32[act]``: the expert's deterministic
    action (the tanh-normal's mode), for ``hyperjax.hypogen.data.rollout``."""
    from brax.training.agents.ppo import networks as ppo_networks  # noqa: PLC0415
    nets = network_factory(cfg)(env.obs_dim, env.action_dim,
                                preprocess_observations_fn=_normalize)
    make = ppo_networks.make_inference_fn(nets)

    def policy(params_s, obs, spec):
        action, _ = make(params_s, deterministic=True)(obs, jax.random.key(0))
        return action

    return policy


def evaluate_success(env: ManipulationTask, cfg: PPOConfig, params, spec, key, episodes: int):
    """The released evaluation of one expert (``maniskill/ppo.py``: ``evaluate_policy`` on
    deterministic actions, ``SuccessInfoWrapper`` ending an episode at success, ManiSkill2's
    200-step cap; success = the episode ended before the cap). ``params`` one expert's brax
    parameters, ``spec`` ``float[1]``. Returns ``(success bool[E], length int32[E],
    return float32[E])``; episode ``e`` resets with ``fold_in(fold_in(key, 0), e)``. Jit-able
    (``env``, ``cfg``, ``episodes`` static)."""
    out = D.rollout(env, expert_policy(env, cfg), None, stack([params]),
                    jnp.asarray(spec, jnp.float32).reshape(1, -1), key, episodes)
    term = out["discount"][0] == 0.0                                   # [E, T]
    ok = term.any(-1)
    length = jnp.where(ok, term.argmax(-1) + 1, term.shape[-1]).astype(jnp.int32)
    return ok, length, out["reward"].sum(-1)[0]


def _normalize(obs, normalizer_params):
    from brax.training.acme import running_statistics  # noqa: PLC0415
    return running_statistics.normalize(obs, normalizer_params)


def stack(params: list) -> Any:
    """Per-spec parameter pytrees → one pytree with a leading spec axis."""
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *params)


def save_params_npz(path: str, step: int, params) -> None:
    """Writes one expert's brax parameters as ``.npz`` (leaves ``p000 …`` in tree order, plus
    ``step``), atomically (a temporary file, then a rename): a reader sees the old file or the
    new one, never half of one."""
    leaves = jax.tree_util.tree_leaves(params)
    save_npz_atomic(path, step=step, **{f"p{i:03d}": np.asarray(x) for i, x in enumerate(leaves)})


def load_params_npz(path: str, like):
    """The parameters :func:`save_params_npz` wrote, in the structure and dtypes of ``like``
    (e.g. :func:`init_params`'s, or its ``eval_shape``). Raises ``ValueError`` naming the file
    when it is unreadable or its leaves do not match ``like``'s count or shapes (another task
    or network size)."""
    leaves, treedef = jax.tree_util.tree_flatten(like)
    try:
        with np.load(path, allow_pickle=False) as z:
            got = [z[f"p{i:03d}"] for i in range(sum(k.startswith("p") for k in z.files))]
    except Exception as e:  # noqa: BLE001 - missing, truncated, not an npz
        raise ValueError(f"PPO parameters {path} do not load ({type(e).__name__})") from e
    if len(got) != len(leaves) or any(g.shape != np.shape(x) for g, x in zip(got, leaves)):
        raise ValueError(f"PPO parameters {path} do not match this task's expert network "
                         f"({len(got)} arrays, want {len(leaves)} of its shapes)")
    return jax.tree_util.tree_unflatten(treedef, [
        type(x)(g) if isinstance(x, (int, float)) else jnp.asarray(g, x.dtype)
        for g, x in zip(got, leaves)])


def init_params(env: ManipulationTask, cfg: PPOConfig, key):
    """Parameters shaped as :func:`train_expert`'s (to restore a checkpoint into)."""
    from brax.training.acme import running_statistics, specs  # noqa: PLC0415
    nets = network_factory(cfg)(env.obs_dim, env.action_dim,
                                preprocess_observations_fn=_normalize)
    k_pi, k_v = jax.random.split(key)
    norm = running_statistics.init_state(specs.Array((env.obs_dim,), jnp.dtype("float32")))
    return (norm, nets.policy_network.init(k_pi), nets.value_network.init(k_v))
