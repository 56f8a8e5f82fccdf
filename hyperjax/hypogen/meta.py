"""The Meta Policy (MAML) and PEARL baselines of HyPoGen's Tables 1–2, as the released code runs
them (``approximators/policy.py::MetaPolicyApproximator``; the baselines of both released
repositories).

**Meta Policy** (``meta_policy``): the Cond Policy network (``MLPActionPredictor``: ψ(c) ‖ s →
256 → act, orthogonal init) trained by second-order MAML (learn2learn ``MAML(first_order=
False)``). One meta-update per epoch: for every training spec, a batch of ``2·n_tasks·k_shot``
of its transitions (k_shot = 10) is split in halves; the learner takes ``adaptation_steps`` (5)
SGD steps of lr ``fast_lr`` (0.01) on the BC MSE of the first half, and its BC MSE on the
second half is the task's meta-loss; the gradients are averaged over specs and Adam (lr 1e-4,
the schedule of :mod:`hyperjax.hypogen.train`) steps once.

**PEARL** (``pearl_policy``; *not* real PEARL, the baselines of both released repositories): a
context encoder ``(s, a) → 256 →
256 → (μ, log σ²) ∈ R^256`` (ReLU, orthogonal init) whose reparameterised sample replaces the
spec as the policy's input, sample by sample; the same MAML loop, the eval-half loss plus
``kl_lambda`` (0.01) · KL(N(μ, σ²) ‖ N(0, I)) (summed over dims, mean over the batch). At
rollout the context is encoded from the *previous* (s, a), zeros at an episode's start.

**Test-time adaptation** (the older ``eval_regressor.py``): ``finetune`` trains a copy per test
spec on that spec's recorded expert episodes, Adam 1e-3, ``adaptation_steps`` passes in batches
of 512, before the rollouts. The paper's tables come from ``batch_eval_regressor.py``, which
does not fine-tune (INFERRED, the baselines of both released repositories); so zero-shot is the
headline and fine-tuned is a
labelled extra (it sees demonstrations of the test spec, so it is not zero-shot).
"""
from __future__ import annotations

import dataclasses
import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from hyperjax.optim import apply_gradients
from hyperjax.envs.core import Env
from hyperjax.hypogen import algos, data as D
from hyperjax.hypogen.models import EMBED_DIM, HIDDEN_DIM, CondPolicy, _orthogonal
from hyperjax.hypogen.train import Fit, FitState, evaluation_and_segment

# The released meta configs (``meta_policy.yaml`` / ``pearl_policy.yaml``): a plain Adam at 1e-4,
# no auxiliary losses, no Q heads.
algos.register(algos.Algo("meta", "Meta Policy, MAML", learning_rate=1e-4, meta=True))
algos.register(algos.Algo("pearl", "PEARL", learning_rate=1e-4, meta=True))
META_ALGOS = algos.names(meta=True)   # the two above: what MetaModel implements


@dataclasses.dataclass(frozen=True)
class MetaConfig:
    """The released meta configs (``meta_policy.yaml`` / ``pearl_policy.yaml``, the baselines of
    both released repositories)."""

    fast_lr: float = 0.01
    adaptation_steps: int = 5
    k_shot: int = 10
    kl_lambda: float = 0.01
    finetune_lr: float = 1e-3
    finetune_batch: int = 512


class PearlEncoder(nn.Module):
    """PEARL's ``MLPContextEncoder``: ``[s, a] → 256 → 256 → (μ, log σ²)``, float32[..., 256]
    each; ReLU, orthogonal weights, zero biases."""

    embed_dim: int = EMBED_DIM
    hidden: int = HIDDEN_DIM

    @nn.compact
    def __call__(self, obs, action):
        x = jnp.concatenate([obs, action], -1)
        x = nn.relu(nn.Dense(self.hidden, **_orthogonal())(x))
        x = nn.relu(nn.Dense(self.hidden, **_orthogonal())(x))
        return (nn.Dense(self.embed_dim, **_orthogonal())(x),
                nn.Dense(self.embed_dim, **_orthogonal())(x))


def _sample(mu, log_var, key):
    return mu + jnp.exp(0.5 * log_var) * jax.random.normal(key, mu.shape)


def kl_standard_normal(mu, log_var):
    """``mean_batch(−½ Σ_dims (1 + log σ² − μ² − σ²))``, float32[]."""
    return jnp.mean(-0.5 * jnp.sum(1.0 + log_var - mu ** 2 - jnp.exp(log_var), -1))


class MetaModel:
    """The networks of ``algo`` and how they act. ``params = {"policy": …}`` (+ ``"encoder"``
    for PEARL). ``generate(params, specs)`` → what the rollout is conditioned on (MAML: ψ(c);
    PEARL: the specs themselves, unused); ``act_fn`` the rollout policy (stateful for PEARL)."""

    def __init__(self, algo: str, obs_dim: int, act_dim: int, spec_dim: int):
        if algo not in META_ALGOS:   # the two records registered above
            raise ValueError(f"unknown meta algo {algo!r}; valid: {', '.join(META_ALGOS)}")
        self.algo, self.obs_dim, self.act_dim, self.spec_dim = algo, obs_dim, act_dim, spec_dim
        self.policy = CondPolicy(obs_dim, act_dim, use_q=False)
        self.encoder = PearlEncoder()
        self.context_dim = EMBED_DIM if algo == "pearl" else spec_dim

    def init(self, key):
        kp, ke = jax.random.split(key)
        z = jnp.zeros((2, self.context_dim))
        p = {"policy": self.policy.init(kp, z, jnp.zeros(2, jnp.int32),
                                        jnp.zeros((2, self.obs_dim)),
                                        jnp.zeros((2, self.act_dim)),
                                        jnp.zeros((2, self.obs_dim)))}
        if self.algo == "pearl":
            p["encoder"] = self.encoder.init(ke, jnp.zeros((1, self.obs_dim)),
                                             jnp.zeros((1, self.act_dim)))
        return p

    def predict(self, policy_params, context, obs):
        """Per-sample action for ``context [B, context_dim]``, ``obs [B, obs]``."""
        z = self.policy.apply(policy_params, context, method="generate")
        return self.policy.apply(policy_params, z, obs, method="act")

    def context(self, params, specs, obs, action, key):
        """``(context [B, ·], kl float32[])``: the spec (MAML) or a sample of the encoder at
        each sample's own (s, a) (PEARL, as the released ``fast_adapt``)."""
        if self.algo == "meta":
            return specs, jnp.zeros(())
        mu, log_var = self.encoder.apply(params["encoder"], obs, action)
        return _sample(mu, log_var, key), kl_standard_normal(mu, log_var)

    def rollout_policy(self):
        """``(policy, carry0)`` for :func:`hyperjax.hypogen.data.rollout` over the per-spec
        inputs of :meth:`rollout_inputs`."""
        if self.algo == "meta":
            return (lambda pz, obs, spec: self.policy.apply(pz[0]["policy"], pz[1], obs,
                                                            method="act"), None)

        def act(p, obs, spec, carry, key):
            prev_obs, prev_act = carry
            mu, log_var = self.encoder.apply(p["encoder"], prev_obs, prev_act)
            a = self.predict(p["policy"], _sample(mu, log_var, key)[None], obs[None])[0]
            return a, (obs, a)

        return act, (jnp.zeros(self.obs_dim), jnp.zeros(self.act_dim))

    def rollout_inputs(self, per_spec_params, specs):
        """What each spec's rollout is conditioned on: MAML, ``(params, ψ(c))`` with the task
        embedding computed once per spec rather than every step; PEARL, the params (its
        context changes every step)."""
        if self.algo == "pearl":
            return per_spec_params
        z = jax.vmap(lambda p, s: self.policy.apply(p["policy"], s[None],
                                                    method="generate")[0])(per_spec_params, specs)
        return per_spec_params, z

    def rollout(self, env: Env, per_spec_params, specs, key, episodes: int,
                record: bool = False):
        """Returns ``float32[S, E]``: deterministic-reset episodes of each spec's params (with
        ``record``: the transition arrays of ``D.rollout``)."""
        policy, carry0 = self.rollout_policy()
        return D.rollout(env, policy, None, self.rollout_inputs(per_spec_params, specs), specs,
                         key, episodes, record=record, carry0=carry0)


def _mse(pred, target):
    return jnp.mean(jnp.square(pred - target))


def maml_task_loss(model: MetaModel, meta: MetaConfig, params, spec, obs, action, key):
    """One spec's MAML meta-loss (``fast_adapt``): ``adaptation_steps`` SGD steps of
    ``fast_lr`` on the BC MSE of the first half of ``obs [M, obs]`` / ``action [M, act]``,
    then the adapted policy's BC MSE on the second half (+ ``kl_lambda``·KL for PEARL).
    Second order: ``jax.grad`` of this differentiates through the inner gradients (learn2learn
    ``first_order=False``). Returns ``(loss float32[], {"bc", "kl"})``."""
    half = obs.shape[0] // 2
    a_obs, a_act, e_obs, e_act = obs[:half], action[:half], obs[half:], action[half:]
    keys = jax.random.split(key, meta.adaptation_steps + 1)

    def inner(pp, k):
        ctx, _ = model.context(params, jnp.broadcast_to(spec, (half, spec.shape[0])), a_obs,
                               a_act, k)
        return _mse(model.predict(pp, ctx, a_obs), a_act)

    pp = params["policy"]
    for i in range(meta.adaptation_steps):
        g = jax.grad(inner)(pp, keys[i])
        pp = jax.tree_util.tree_map(lambda p, g: p - meta.fast_lr * g, pp, g)
    ctx, kl = model.context(params, jnp.broadcast_to(spec, (e_obs.shape[0], spec.shape[0])),
                            e_obs, e_act, keys[-1])
    bc = _mse(model.predict(pp, ctx, e_obs), e_act)
    return bc + meta.kl_lambda * kl, {"bc": bc, "kl": kl}


def make_meta_fit(cfg, env: Env, train: D.Flat, test_specs: np.ndarray,
                  eval_key_seed: int = 3, select_key_seed: int = 1003,
                  meta: MetaConfig = MetaConfig()):
    """The Meta Policy / PEARL training program with the interface of
    :func:`hyperjax.hypogen.train.make_fit` (``Fit``; ``steps_per_epoch`` = 1 meta-update).

    ``cfg``: a ``FitConfig`` whose ``algo`` is ``meta`` or ``pearl`` (``learning_rate`` None →
    1e-4); ``train``: pooled transitions, grouped by ``task_id`` (per-spec counts may differ, as
    demonstrations cut at success do; the per-task batch is then at most the smallest count).
    Raises ``ValueError`` for an empty train set, a spec without transitions, ``eval_every``
    not dividing ``epochs`` or equal evaluation and selection seeds.
    """
    n = int(train.obs.shape[0])
    n_tasks = int(train.specs.shape[0])
    if n == 0:
        raise ValueError("no training transitions")
    counts = np.bincount(np.asarray(train.task_id), minlength=n_tasks)
    if np.any(counts == 0):
        raise ValueError(f"meta training needs transitions for every spec, got {counts}")
    if cfg.epochs % cfg.eval_every:
        raise ValueError(f"eval_every={cfg.eval_every} must divide epochs={cfg.epochs}")
    if eval_key_seed == select_key_seed:
        raise ValueError("select_key_seed must differ from eval_key_seed (selection episodes "
                         "are kept apart from the reported ones)")
    per = int(counts.max())
    m = min(2 * n_tasks * meta.k_shot, int(counts.min()))   # the released sampler's batch
    model = MetaModel(cfg.algo, env.obs_dim, env.action_dim, train.specs.shape[1])
    lr = cfg.lr()
    tx = optax.adam(lr)   # MetaPolicyApproximator: plain Adam, no MultiStepLR
    table = {k: jnp.asarray(v) for k, v in
             zip(("obs", "action"), group_by_task(train, n_tasks, ("obs", "action"), per))}
    count = jnp.asarray(counts)
    specs = jnp.asarray(train.specs, jnp.float32)
    task_loss = functools.partial(maml_task_loss, model, meta)
    equal = bool(np.all(counts == per))

    def sample(k, c):
        """``m`` distinct rows of a task with ``c`` rows (cut demonstrations differ in
        length); equal counts keep ``jax.random.choice``'s draw."""
        if equal:
            return jax.random.choice(k, per, (m,), replace=False)
        return valid_permutation(k, per, c)[:m]

    def meta_step(carry, key):
        params, opt_state = carry
        k_idx, k_loss = jax.random.split(key)
        idx = jax.vmap(sample)(jax.random.split(k_idx, n_tasks), count)
        obs = jnp.take_along_axis(table["obs"], idx[..., None], 1)
        act = jnp.take_along_axis(table["action"], idx[..., None], 1)
        grads, metrics = jax.vmap(jax.grad(task_loss, has_aux=True), (None, 0, 0, 0, 0))(
            params, specs, obs, act, jax.random.split(k_loss, n_tasks))
        grads = jax.tree_util.tree_map(lambda g: g.mean(0), grads)
        metrics = jax.tree_util.tree_map(jnp.mean, metrics)
        params, opt_state = apply_gradients(tx, grads, opt_state, params)
        loss = metrics["bc"] + meta.kl_lambda * metrics["kl"]
        return (params, opt_state), {**metrics, "loss": loss}

    def init(key) -> FitState:
        k_init, k_run = jax.random.split(key)
        params = model.init(k_init)
        return FitState(params, tx.init(params), params, jnp.float32(-jnp.inf), k_run,
                        jnp.zeros((), jnp.int32))

    def rollout_returns(params, key, specs_, record=False):
        tiled = jax.tree_util.tree_map(
            lambda x: jnp.broadcast_to(x, (specs_.shape[0], *x.shape)), params)
        return model.rollout(env, tiled, specs_, key, cfg.eval_episodes, record=record)

    evaluate, segment = evaluation_and_segment(meta_step, rollout_returns, cfg, test_specs,
                                               eval_key_seed, select_key_seed)

    def generate(params, s):
        return s

    return Fit(jax.jit(init), segment, evaluate, generate, jax.jit(meta_step), model, 1)


def finetune(fit, params, demos: D.Flat, meta: MetaConfig = MetaConfig(), key=None):
    """Test-time adaptation (``MetaPolicyApproximator.finetune``): one copy of ``params`` per
    spec of ``demos`` (its recorded expert transitions, grouped by ``task_id``), each trained
    by Adam (``finetune_lr``) for ``adaptation_steps`` shuffled passes in batches of
    ``finetune_batch`` (last partial batch kept). Returns the stacked params
    (leading axis = ``demos.specs``) for :func:`evaluate_finetuned`."""
    model: MetaModel = fit.model
    n_tasks = demos.specs.shape[0]
    counts = np.bincount(np.asarray(demos.task_id), minlength=n_tasks)
    per = int(counts.max())
    equal = bool(np.all(counts == per))
    obs, act = map(jnp.asarray, group_by_task(demos, n_tasks, ("obs", "action"), per))
    specs = jnp.asarray(demos.specs, jnp.float32)
    bsz = meta.finetune_batch
    spe = math.ceil(per / bsz)
    tx = optax.adam(meta.finetune_lr)
    key = jax.random.key(0) if key is None else key

    def one(spec, o, a, c, k):
        def loss(pp, idx, mask, kk):
            ctx, _ = model.context({**params, "policy": pp},
                                   jnp.broadcast_to(spec, (bsz, spec.shape[0])), o[idx], a[idx],
                                   kk)
            err = jnp.square(model.predict(pp, ctx, o[idx]) - a[idx]).mean(-1)
            return jnp.sum(err * mask) / jnp.sum(mask)

        def batch_step(carry, x):
            pp, st = carry
            idx, mask, kk = x
            g = jax.grad(loss)(pp, idx, mask, kk)
            new = apply_gradients(tx, g, st, pp)
            if equal:
                return new, None
            # a shorter task has fewer batches (torch's loader): an empty one is no step
            return jax.tree_util.tree_map(lambda a, b: jnp.where(mask.sum() > 0, a, b),
                                          new, (pp, st)), None

        def epoch(carry, k):
            kp, kb = jax.random.split(k)
            perm = (jax.random.permutation(kp, per) if equal
                    else valid_permutation(kp, per, c))
            idx = jnp.concatenate([perm, jnp.zeros(spe * bsz - per, perm.dtype)])
            mask = (jnp.arange(spe * bsz) < c).astype(jnp.float32)
            return jax.lax.scan(batch_step, carry, (idx.reshape(spe, bsz),
                                                    mask.reshape(spe, bsz),
                                                    jax.random.split(kb, spe)))[0], None

        pp = params["policy"]
        (pp, _), _ = jax.lax.scan(epoch, (pp, tx.init(pp)),
                                  jax.random.split(k, meta.adaptation_steps))
        return {**params, "policy": pp}

    return jax.jit(jax.vmap(one))(specs, obs, act, jnp.asarray(counts),
                                  jax.random.split(key, n_tasks))


def group_by_task(flat: D.Flat, n_tasks: int, fields, per: int) -> list:
    """``flat``'s ``fields`` regrouped per task, ``[n_tasks, per, ...]`` (rows in their
    order; a task with fewer rows is padded with its first row, never sampled)."""
    task_id = np.asarray(flat.task_id)
    out = []
    for f in fields:
        x = np.asarray(getattr(flat, f))
        grouped = np.empty((n_tasks, per, *x.shape[1:]), x.dtype)
        for t in range(n_tasks):
            rows = x[task_id == t]
            grouped[t, :len(rows)] = rows
            grouped[t, len(rows):] = rows[:1]
        out.append(grouped)
    return out


def valid_permutation(key, per: int, count) -> jax.Array:
    """A random permutation of ``0 … count − 1`` followed by ``count … per − 1`` (``int32[per]``;
    ``count`` traced)."""
    u = jax.random.uniform(key, (per,))
    return jnp.argsort(jnp.where(jnp.arange(per) < count, u, 2.0 + u))


def evaluate_finetuned(fit, env: Env, tuned, specs, episodes: int, key):
    """Returns ``float32[S, E]`` of the per-spec fine-tuned ``tuned`` params on ``specs``."""
    return jax.jit(lambda p, s, k: fit.model.rollout(env, p, s, k, episodes))(
        tuned, jnp.asarray(specs, jnp.float32), key)
