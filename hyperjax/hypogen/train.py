"""Behaviour-cloning training of HyPoGen / HyperZero / Cond Policy / UVFA on demonstrations, and
zero-shot evaluation of the generated policies on held-out specs.

The loss (``approximators/rl_solution.py::RLApproximator.update``, HyPoGen's
`approximators/rl_solution.py` and released configs; HyperZero's `RLApproximator.update`)::

    L = MSE(π̂(s), a*) + w_v · MSE(Q̂(s, a*), Q*_data) + w_td · MSE(Q*_data, r + d · Q̂(s',
    sg[π̂(s')]))

with ``w_v = w_td = 0.01`` for HyPoGen and HyperZero (DMC), ``w_v = 0.01, w_td = 0`` for UVFA
(``mlp_rl``), BC only for Cond Policy; ``bc_only`` sets both weights to 0 for every model. With
deep supervision (HyPoGen), the BC and value terms average over the K blocks' iterates (the
broadcast ``F.mse_loss`` of the newer code); TD uses the final iterate. ``d`` is the dataset's
raw discount (all 1 on the paper's data; kept for parity).

Optimisation: Adam (default betas, eps; no weight decay, no clipping); for HyPoGen, HyperZero
and UVFA the learning rate is halved at 75 %, 90 % and 95 % of the epochs (epochs 1500, 1800,
1900 of 2000: ``RLApproximator``'s ``MultiStepLR`` stepped per epoch), Cond Policy keeps it
constant (``PolicyApproximator``: plain Adam). Each epoch is a random permutation of the pooled
train transitions in batches of 512
*without* replacement, the last partial batch kept (masked here, so shapes stay static).

One compiled ``segment`` runs ``eval_every`` epochs (a ``lax.scan`` over epochs of a ``lax.scan``
over batches) and then the zero-shot evaluation on the test specs, keeping the best parameters
next to the last ones. The paper selects on the same test episodes it reports (HyPoGen's
`approximators/rl_solution.py` and released configs), an
upward bias; here selection uses *selection episodes* (reset keys from ``select_key_seed``:
other start states on the same test specs) and the reported returns come from ``evaluate``'s
own episodes (``eval_key_seed``), never used to choose anything.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from hyperjax.envs.core import Env
from hyperjax.optim import apply_gradients
from hyperjax.hypogen import data as D
from hyperjax.hypogen import algos
from hyperjax.hypogen.models import TargetNetConfig, make_model

PAPER_EPOCHS = 2000
MILESTONES = (0.75, 0.9, 0.95)          # 1500, 1800, 1900 of 2000
def lr_schedule(algo: str, lr: float, epochs: int, steps_per_epoch: int):
    """The released learning rate per optimiser step: halved at 75 %, 90 % and 95 % of
    ``epochs`` for algos whose released trainer does (``Algo.scheduled``: ``RLApproximator``'s
    ``MultiStepLR([1500, 1800, 1900], 0.5)`` stepped per epoch), constant otherwise (Cond
    Policy's ``PolicyApproximator``, Meta / PEARL's ``MetaPolicyApproximator``: a plain Adam,
    ``approximators/policy.py``). Returns an optax schedule (or the float)."""
    if not algos.get(algo).scheduled:
        return lr
    boundaries = {int(round(f * epochs)) * steps_per_epoch: 0.5 for f in MILESTONES}
    return optax.piecewise_constant_schedule(lr, boundaries)
@dataclasses.dataclass(frozen=True)
class FitConfig:
    """Training settings (defaults: the released DMC configs, HyPoGen's
    `approximators/rl_solution.py` and released configs)."""

    algo: str = "hypogen"
    epochs: int = PAPER_EPOCHS
    batch_size: int = 512
    learning_rate: float | None = None      # None: the algo's released rate (Algo)
    bc_only: bool = False
    deep_supervision: bool = True
    num_blocks: int = 8
    eval_every: int = 20                    # epochs between test evaluations
    eval_episodes: int = 10                 # 0: no evaluation in ``segment`` (benchmarks)
    hyperzero_original_init: bool = False
    target: TargetNetConfig = TargetNetConfig()   # generated-net depth/act, block MLPs, chain rule

    def lr(self) -> float:
        return (self.learning_rate if self.learning_rate is not None
                else algos.get(self.algo).learning_rate)

    def weights(self) -> tuple[float, float]:
        return (0.0, 0.0) if self.bc_only else algos.get(self.algo).loss_weights


class FitState(NamedTuple):
    params: Any
    opt_state: Any
    best_params: Any
    best_return: jax.Array   # float32[]: best selection-episode mean return so far (−inf first)
    key: jax.Array
    epoch: jax.Array         # int32[]


def _masked_mse(pred, target, mask):
    """Mean over the valid rows and the trailing dims (``F.mse_loss``'s mean on the real batch)."""
    err = jnp.square(pred - target)
    err = err.reshape(*err.shape[:2], -1).mean(-1) if err.ndim > 2 else err
    return jnp.sum(err * mask) / (jnp.maximum(jnp.sum(mask), 1.0) * err.shape[0])


def loss_fn(model: nn.Module, params, specs, batch: dict, mask, w_value: float, w_td: float):
    """The loss above for one batch. Returns ``(loss float32[], metrics dict)``.

    ``batch``: ``task_id int32[B]``, ``obs [B, obs]``, ``action [B, act]``, ``next_obs``,
    ``reward [B]``, ``discount [B]``, ``value [B]``; ``mask float32[B]`` (1 = real row).
    """
    out = model.apply(params, specs, batch["task_id"], batch["obs"], batch["action"],
                      batch["next_obs"])
    act_target = jnp.broadcast_to(batch["action"], out.action.shape)
    bc = _masked_mse(out.action, act_target, mask)
    metrics = {"bc": bc, "bc_last": _masked_mse(out.action[-1:], act_target[-1:], mask)}
    loss = bc
    if out.q is not None and w_value > 0:
        value = _masked_mse(out.q, jnp.broadcast_to(batch["value"], out.q.shape), mask)
        loss, metrics["value"] = loss + w_value * value, value
    if out.q_next is not None and w_td > 0:
        target = batch["reward"] + batch["discount"] * out.q_next
        td = _masked_mse(batch["value"][None], target[None], mask)
        loss, metrics["td"] = loss + w_td * td, td
    metrics["loss"] = loss
    return loss, metrics


class Fit(NamedTuple):
    """The compiled pieces of one training run.

    ``init(key) -> FitState`` (run eagerly, not jitted: see ``make_fit``);
    ``segment(state) -> (state, metrics)`` runs ``eval_every`` epochs then evaluates on the
    selection episodes (``metrics["select_return"]``);
    ``evaluate(params, key=report key, specs=test specs) -> float32[S, E]`` returns of
    ``specs`` (pass the train specs for the BC check);
    ``generate(params, specs)`` policy weights; ``train_step((params, opt_state), (idx
    int32[B], mask float32[B])) -> ((params, opt_state), metrics)`` one gradient step (for
    FLOP counts); ``model``, ``steps_per_epoch``."""

    init: Callable
    segment: Callable
    evaluate: Callable
    generate: Callable
    train_step: Callable
    model: nn.Module
    steps_per_epoch: int


def init_params(model: nn.Module, key: jax.Array, specs: jax.Array) -> Any:
    """``model.init`` for the training specs ``float32[S, F]`` on two zero samples (task ids
    ``int32[2]``, obs ``float32[2, model.obs_dim]``, action ``[2, model.act_dim]``): the four
    models' parameters depend on the inputs' shapes only, not their values. Shared by
    :func:`make_fit` and ``generator.load_generator`` (its abstract tree), so a checkpoint
    and the tree it is read into are built alike."""
    obs = jnp.zeros((2, model.obs_dim), jnp.float32)
    action = jnp.zeros((2, model.act_dim), jnp.float32)
    return model.init(key, specs, jnp.zeros(2, jnp.int32), obs, action, obs)


def make_fit(cfg: FitConfig, env: Env, train: D.Flat, test_specs: np.ndarray,
             eval_key_seed: int = 3, select_key_seed: int = 1003) -> Fit:
    """Builds the training program for ``cfg.algo`` on the pooled transitions ``train`` and the
    zero-shot evaluation on ``test_specs float32[S_test, spec_dim]`` (``eval_episodes``
    deterministic episodes each, full length, on the spec's own env). Reported episodes reset
    from ``eval_key_seed`` (the released code's ``RandomState(3)`` in spirit); the best-params
    selection in ``segment`` uses episodes from ``select_key_seed`` (must differ).

    Raises ``ValueError`` for an empty train set or ``eval_every`` not dividing ``epochs``.
    """
    n = int(train.obs.shape[0])
    if n == 0:
        raise ValueError("no training transitions")
    if cfg.epochs % cfg.eval_every:
        raise ValueError(f"eval_every={cfg.eval_every} must divide epochs={cfg.epochs}")
    if eval_key_seed == select_key_seed:
        raise ValueError("select_key_seed must differ from eval_key_seed (selection episodes "
                         "are kept apart from the reported ones)")
    model = make_model(cfg.algo, env.obs_dim, env.action_dim, use_td=not cfg.bc_only,
                       deep_supervision=cfg.deep_supervision, num_blocks=cfg.num_blocks,
                       hyperzero_original_init=cfg.hyperzero_original_init,
                       target=cfg.target)
    w_value, w_td = cfg.weights()
    bsz = cfg.batch_size
    spe = math.ceil(n / bsz)
    tx = optax.adam(lr_schedule(cfg.algo, cfg.lr(), cfg.epochs, spe))
    table = {k: jnp.asarray(getattr(train, k)) for k in
             ("task_id", "obs", "action", "next_obs", "reward", "discount", "value")}
    specs = jnp.asarray(train.specs, jnp.float32)

    def init(key) -> FitState:
        # Eager, not jitted: XLA:CPU compiles HyPoGen's jitted init (742 parameter leaves,
        # each its own threefry kernel) in 85 s on a 2-core CPU, against 15 s to run it op by
        # op; the parameters are bitwise the same for the four models, either key kind
        # (checked 2026-12-07; tests/test_hypogen.py).
        k_init, k_run = jax.random.split(key)
        params = init_params(model, k_init, specs)
        return FitState(params, tx.init(params), params, jnp.float32(-jnp.inf), k_run,
                        jnp.zeros((), jnp.int32))

    grad_fn = jax.grad(lambda p, b, m: loss_fn(model, p, specs, b, m, w_value, w_td),
                       has_aux=True)

    def train_step(carry, idx_mask):
        params, opt_state = carry
        idx, mask = idx_mask
        batch = {k: v[idx] for k, v in table.items()}
        grads, metrics = grad_fn(params, batch, mask)
        return apply_gradients(tx, grads, opt_state, params), metrics

    def epoch(carry, key):
        perm = jax.random.permutation(key, n)
        pad = spe * bsz - n
        idx = jnp.concatenate([perm, jnp.zeros(pad, perm.dtype)]).reshape(spe, bsz)
        mask = (jnp.arange(spe * bsz) < n).astype(jnp.float32).reshape(spe, bsz)
        carry, metrics = jax.lax.scan(train_step, carry, (idx, mask))
        # Epoch means weighted by real rows (the last batch may be partial).
        w = mask.sum(-1) / n
        return carry, jax.tree_util.tree_map(lambda m: jnp.sum(m * w), metrics)

    def generate(params, s):
        return model.apply(params, s, method="generate")

    def rollout_returns(params, key, specs_, record=False):
        weights = generate(params, specs_)
        act = lambda w, obs, spec: model.apply(params, w, obs, method="act")
        return D.rollout(env, act, None, weights, specs_, key, cfg.eval_episodes, record=record)

    evaluate, segment = evaluation_and_segment(epoch, rollout_returns, cfg, test_specs,
                                               eval_key_seed, select_key_seed)

    return Fit(init, segment, evaluate, jax.jit(generate), jax.jit(train_step),
               model, spe)


def evaluation_and_segment(epoch: Callable, rollout_returns: Callable, cfg: FitConfig,
                           test_specs, eval_key_seed: int, select_key_seed: int):
    """The two pieces every HyPoGen-style trainer shares (``make_fit``, ``meta.make_meta_fit``).

    ``epoch((params, opt_state), key) -> (carry, metrics)`` is one epoch of training;
    ``rollout_returns(params, key, specs, record=False) -> float32[S, E]`` the policy's returns
    (with ``record=True`` the transition dict of ``D.rollout``). Returns
    ``evaluate(params, key=None, specs=None, record=False)`` (reported episodes:
    ``eval_key_seed``, the test specs by default) and the jitted ``segment(FitState) -> (FitState,
    metrics)``: ``eval_every``
    epochs, then the return on the *selection* episodes (``select_key_seed``), keeping the
    parameters that maximise it in ``best_params``.
    """
    test_specs = jnp.asarray(test_specs, jnp.float32)
    eval_key, select_key = jax.random.key(eval_key_seed), jax.random.key(select_key_seed)
    rollout_jit = jax.jit(rollout_returns, static_argnames=("record",))

    def evaluate(params, key=None, specs=None, record=False):
        return rollout_jit(params, eval_key if key is None else key,
                           test_specs if specs is None else jnp.asarray(specs, jnp.float32),
                           record=record)

    @jax.jit
    def segment(state: FitState):
        key, k_ep = jax.random.split(state.key)
        (params, opt_state), metrics = jax.lax.scan(
            epoch, (state.params, state.opt_state), jax.random.split(k_ep, cfg.eval_every))
        select = (rollout_returns(params, select_key, test_specs).mean() if cfg.eval_episodes
                  else jnp.float32(jnp.nan))
        better = select > state.best_return
        best = jax.tree_util.tree_map(lambda a, b: jnp.where(better, a, b), params,
                                      state.best_params)
        new = FitState(params, opt_state, best, jnp.maximum(select, state.best_return),
                       key, state.epoch + cfg.eval_every)
        return new, {**metrics, "select_return": select}

    return evaluate, segment


def blockwise_bc(model: nn.Module, params, flat: D.Flat, chunk: int = 4096) -> np.ndarray:
    """BC MSE of every block's iterate θ^1 … θ^K on ``flat`` (paper Table 4), ``float64[K]``.

    Needs a HyPoGen model built with ``deep_supervision=True``.
    """
    specs = jnp.asarray(flat.specs)
    f = jax.jit(lambda p, t, o, a: jnp.square(
        model.apply(p, specs, t, o, a, o).action - a[None]).mean(-1).sum(-1))
    total = 0.0
    for i in range(0, flat.obs.shape[0], chunk):
        sl = slice(i, i + chunk)
        total = total + np.asarray(f(params, flat.task_id[sl], flat.obs[sl], flat.action[sl]),
                                   np.float64)
    return total / flat.obs.shape[0]
