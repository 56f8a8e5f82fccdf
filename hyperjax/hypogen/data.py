"""Demonstration datasets: rollouts of per-spec experts, recorded in one compiled program, saved
in a documented array format and reloaded without the experts.

Format (``DATASET_FILE``, a NumPy ``.npz`` archive, no pickles; ``S`` specs, ``E`` episodes per
spec, ``T`` steps per episode):

=============  ==========================  ====================================================
key            shape, dtype                content
=============  ==========================  ====================================================
``spec``       ``float32[S, spec_dim]``    the specs, in grid order
``obs``        ``float32[S, E, T, obs]``   observation before the step
``action``     ``float32[S, E, T, act]``   the expert's (deterministic) action, in [−1, 1]
``next_obs``   ``float32[S, E, T, obs]``   observation after the step
``reward``     ``float32[S, E, T]``        reward of the step
``discount``   ``float32[S, E, T]``        raw env discount: 0 on termination, else 1 (the
                                           released data's ``discount`` is the raw dm_env one,
                                           all 1.0; HyperZero's `eval.py`)
``value``      ``float32[S, E, T]``        the expert critic's ``Q(obs, action)``
``meta``       ``str[]``                   JSON: task, factors, expert, episode settings
=============  ==========================  ====================================================
"""
from __future__ import annotations

import json
import os
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from hyperjax.envs.core import Env, per_spec_episodes
from hyperjax.utils import save_npz_atomic

DATASET_FILE = "dataset.npz"
KEYS = ("spec", "obs", "action", "next_obs", "reward", "discount", "value")


class Dataset(NamedTuple):
    """A loaded dataset (arrays as in the module docstring, NumPy) and its metadata dict."""

    spec: np.ndarray
    obs: np.ndarray
    action: np.ndarray
    next_obs: np.ndarray
    reward: np.ndarray
    discount: np.ndarray
    value: np.ndarray
    meta: dict

    @property
    def num_specs(self) -> int:
        return self.spec.shape[0]

    def returns(self) -> np.ndarray:
        """Undiscounted episode returns ``float32[S, E]``."""
        return self.reward.sum(-1)


def rollout(env: Env, policy: Callable, value: Callable | None, policy_params, specs, key,
            episodes: int, steps: int | None = None, record: bool = True, carry0=None):
    """Deterministic episodes of one policy per spec, all specs and episodes at once.

    Args:
      env: a hyperjax ``Env``; the spec is its ``context``.
      policy: ``policy(params_s, obs float32[obs], spec float32[d]) -> float32[act]``.
      value: ``value(params_s, obs, action, spec) -> float32[]`` (recorded as ``value``) or None.
      policy_params: pytree with leading axis ``S`` (one entry per spec).
      specs: ``float32[S, d]``.
      key: PRNG key; episode ``e`` of spec ``s`` resets with ``fold_in(fold_in(key, s), e)``.
      episodes: ``E``. steps: ``T`` (default ``env.episode_length``).
      record: True: return the transition arrays of the module docstring (without ``spec``);
        False: only ``returns float32[S, E]``.
      carry0: None (a memoryless policy, as above) or the initial policy state of each
        episode: then ``policy(params_s, obs, spec, carry, key) -> (action, carry)`` with a
        per-step key (PEARL's previous (s, a) context).
    Pure and jit-able (``env``, ``policy``, ``value``, ``episodes``, ``steps`` static).
    """
    steps = steps or env.episode_length

    def episode(params_s, spec, k):
        state, ts = env.reset(k, spec)

        def step(carry, t):
            state, obs, done, pc = carry
            if carry0 is None:
                action = policy(params_s, obs, spec)
            else:
                action, pc = policy(params_s, obs, spec, pc, jax.random.fold_in(k, t))
            state, nts = env.step(k, state, action, spec)
            out = {"reward": nts.reward * (1.0 - done)}
            if record:
                out.update(obs=obs, action=action, next_obs=nts.obs,
                           discount=1.0 - nts.terminated.astype(jnp.float32))
                if value is not None:
                    out["value"] = value(params_s, obs, action, spec)
            done = jnp.maximum(done, nts.terminated.astype(jnp.float32))
            return (state, nts.obs, done, pc), out

        _, out = jax.lax.scan(step, (state, ts.obs, jnp.zeros((), jnp.float32), carry0),
                              jnp.arange(steps))
        return out

    out = per_spec_episodes(episode, specs, key, episodes, policy_params)
    if not record:
        return out["reward"].sum(-1)
    return out


def random_returns(env: Env, specs, key, episodes: int, steps: int | None = None):
    """Returns ``float32[S, E]`` of the uniform-random policy (actions ~ U[−1, 1]^act, one
    draw per step) on each spec: the floor every expert must clear. Episode ``e`` of spec ``s``
    uses ``fold_in(fold_in(key, s), e)``; pure and jit-able (``env``, ``episodes`` static)."""
    steps = steps or env.episode_length

    def episode(spec, k):
        k_reset, k_act = jax.random.split(k)
        state, ts = env.reset(k_reset, spec)

        def step(carry, k_t):
            state, done = carry
            action = jax.random.uniform(k_t, (env.action_dim,), jnp.float32, -1.0, 1.0)
            state, nts = env.step(k_t, state, action, spec)
            r = nts.reward * (1.0 - done)
            return (state, jnp.maximum(done, nts.terminated.astype(jnp.float32))), r

        _, r = jax.lax.scan(step, (state, jnp.zeros((), jnp.float32)),
                            jax.random.split(k_act, steps))
        return r.sum()

    return per_spec_episodes(episode, jnp.asarray(specs, jnp.float32), key, episodes)


def save_dataset(path: str, spec, transitions: dict, meta: dict) -> str:
    """Writes ``path/dataset.npz`` atomically (temp file + rename). Returns the file path.

    Raises ``ValueError`` if an array is missing or the leading ``[S, E, T]`` shapes disagree.
    """
    arrays = {"spec": np.asarray(spec, np.float32)}
    for k in KEYS[1:]:
        if k not in transitions:
            raise ValueError(f"dataset is missing {k!r}")
        arrays[k] = np.asarray(transitions[k], np.float32)
    s, e, t = arrays["reward"].shape
    for k, v in arrays.items():
        if k != "spec" and v.shape[:3] != (s, e, t):
            raise ValueError(f"dataset array {k!r} has shape {v.shape}, expected [{s}, {e}, {t}, ...]")
    if arrays["spec"].shape[0] != s:
        raise ValueError(f"{arrays['spec'].shape[0]} specs for {s} rows of transitions")
    os.makedirs(path, exist_ok=True)
    final = os.path.join(path, DATASET_FILE)
    save_npz_atomic(final, meta=np.array(json.dumps(meta)), **arrays)
    return final


def load_dataset(path: str) -> Dataset:
    """Reads ``path/dataset.npz`` (or ``path`` itself if it is the file).

    Raises ``FileNotFoundError`` if absent and ``ValueError`` (one line naming the file and
    what is wrong) if it is not a readable dataset: not an npz archive, truncated, a key
    missing, or arrays whose leading ``[S, E, T]`` shapes disagree.
    """
    f = path if path.endswith(".npz") else os.path.join(path, DATASET_FILE)
    if not os.path.exists(f):
        raise FileNotFoundError(f"no dataset at {f}")
    try:
        with np.load(f, allow_pickle=False) as z:
            missing = [k for k in KEYS + ("meta",) if k not in z.files]
            if missing:
                raise ValueError(f"lacks {', '.join(missing)}")
            ds = Dataset(**{k: z[k] for k in KEYS}, meta=json.loads(str(z["meta"])))
    except ValueError as e:
        why = ("is not an npz archive" if "pickle" in str(e) or "allow_pickle" in str(e)
               else str(e).splitlines()[0])
        raise ValueError(f"dataset {f} {why}: delete it (or pass --overwrite) to record it "
                         f"again") from None
    except Exception as e:  # noqa: BLE001 - zipfile.BadZipFile, EOFError, OSError, ...
        raise ValueError(f"dataset {f} is damaged ({type(e).__name__}): delete it (or pass "
                         f"--overwrite) to record it again") from None
    s = ds.reward.shape[:3]
    for k in KEYS[1:]:
        if getattr(ds, k).shape[:3] != s:
            raise ValueError(f"dataset {f}: array {k!r} has shape {list(getattr(ds, k).shape)}, "
                             f"expected [{s[0]}, {s[1]}, {s[2]}, ...]: delete it (or pass "
                             f"--overwrite) to record it again")
    if ds.spec.shape[0] != s[0]:
        raise ValueError(f"dataset {f}: {ds.spec.shape[0]} specs for {s[0]} rows of "
                         f"transitions: delete it (or pass --overwrite) to record it again")
    return ds


class Flat(NamedTuple):
    """The transitions of chosen specs pooled into one table (``N = len(ids)·E·T`` rows)."""

    task_id: np.ndarray   # int32[N]: index into ``specs``
    specs: np.ndarray     # float32[len(ids), spec_dim]
    obs: np.ndarray
    action: np.ndarray
    next_obs: np.ndarray
    reward: np.ndarray
    discount: np.ndarray
    value: np.ndarray


def flatten(ds: Dataset, ids, cut_at_termination: bool = True) -> Flat:
    """Pools the transitions of specs ``ids`` (``RLSolutionDataset``'s tuples, HyperZero's
    `RLSolutionDataset`).

    ``cut_at_termination``: each recorded episode ends at its first terminating step
    (``discount == 0``; kept), the steps the rollout ran on after it are dropped. On the
    manipulation tasks termination is success, so a demonstration is cut at success as the
    released ``ppo_rollout.py`` records them (``SuccessInfoWrapper``: ``done`` at success). On
    tasks that never terminate (DMC, LQR) nothing is dropped."""
    ids = np.asarray(ids)
    n_ep, t = ds.reward.shape[1], ds.reward.shape[2]
    keep = np.ones((len(ids), n_ep, t), bool)
    if cut_at_termination:
        term = ds.discount[ids] == 0.0
        first = np.where(term.any(-1), term.argmax(-1), t - 1)             # [S, E]
        keep = np.arange(t) <= first[..., None]
    keep = keep.reshape(-1)

    def take(x):
        x = x[ids]
        return x.reshape(len(ids) * n_ep * t, *x.shape[3:])[keep]

    task_id = np.repeat(np.arange(len(ids), dtype=np.int32), n_ep * t)[keep]
    return Flat(task_id=task_id, specs=ds.spec[ids], obs=take(ds.obs), action=take(ds.action),
                next_obs=take(ds.next_obs), reward=take(ds.reward),
                discount=take(ds.discount), value=take(ds.value))


FAIL_REWARD, FAIL_FRAMES = 0.05, 50   # paper App. C.6, footnote 2


def mujoco_failed(reward) -> np.ndarray:
    """The paper's failure rule for the DMC spec tasks (App. C.6, footnote 2: "MuJoCo does not
    provide a success indicator, thus when the reward of each frame is less than 0.05 for 50
    consecutive frames, it is considered a failure"): ``bool[...]`` from per-step
    ``reward float[..., T]``, true where some run of ``FAIL_FRAMES`` consecutive steps all have
    reward below ``FAIL_REWARD``."""
    low = np.asarray(reward) < FAIL_REWARD
    run = np.zeros(low.shape[:-1], np.int64)
    failed = np.zeros(low.shape[:-1], bool)
    for t in range(low.shape[-1]):       # T steps of array work: no per-episode Python
        run = np.where(low[..., t], run + 1, 0)
        failed |= run >= FAIL_FRAMES
    return failed


def episode_outcomes(discount) -> tuple[np.ndarray, np.ndarray]:
    """Success and episode length from recorded ``discount float32[..., T]`` (0 on the step
    the env terminated; on the manipulation tasks termination is success, as ManiSkill2's
    evaluation, where an episode shorter than the cap succeeded). Returns ``(success
    bool[...], length int64[...])``: length = the first terminating step + 1, else ``T``."""
    term = np.asarray(discount) == 0.0
    success = term.any(-1)
    length = np.where(success, term.argmax(-1) + 1, term.shape[-1])
    return success, length
