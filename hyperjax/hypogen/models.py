"""HyPoGen, HyperZero, Cond Policy and UVFA in Flax Linen (HyPoGen's `models/hypogen_core.py`;
HyperZero's `models/hypenet_core.py`; the baselines of both released repositories).

Every model maps a batch of task specs to a policy (and, for the double-headed ones, a Q
function) and shares one interface, so the training program and the evaluator never look
inside:

* ``weights = model.apply(params, specs, method="generate")``: per-task policy weights, a pytree
  with leading axis ``T`` for ``specs float32[T, spec_dim]`` (HyPoGen: the final block's
  ``θ^K``; HyperZero: the generated layers; Cond/UVFA: the task embedding ``z``).
* ``model.apply(params, weights_t, obs, method="act")``: one task's deterministic action,
  ``obs float32[..., obs_dim]`` → ``float32[..., act_dim]`` in (−1, 1).
* ``model.apply(params, specs, task_id, obs, action, next_obs)``: the training forward pass
  (``Outputs``) for a batch whose sample ``i`` belongs to task ``task_id[i]`` of ``specs``.

Layouts follow the released PyTorch code: a target layer is ``(W float32[out, in], b float32[out])``
and ``y = W x + b``. HyPoGen's generator runs once per unique task (``T`` ≤ 8 train specs) and the
per-sample weights are gathered by ``task_id`` (the equivalent of ``torch.unique``).
"""
from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from hyperjax.hypogen import algos
from hyperjax.nets.layers import TorchDense, torch_uniform

EMBED_DIM = 256
# target policy obs -> 256 -> act (`PolicyTargetNet` in HyPoGen's `models/hypogen_core.py`)
HIDDEN_DIM = 256
# per-layer latent (`OptBlock` in HyPoGen's `models/hypogen_core.py`: the code's weight_dim)
WEIGHT_DIM = 128
ENC_DEC_DIM = 256       # encoder/decoder hidden width
OPT_BLOCK_DIM = 128     # hypernet block MLP width (opt_block_dim)
PSEUDO_DIM = 64         # pseudo-layer width, hard-coded in get_in_dims / get_out_dims
NUM_BLOCKS = 8          # K
LR_INIT = -0.01         # dynamic_lrs initial value


class Outputs(NamedTuple):
    """Training forward pass.

    Attributes:
      action: ``float32[K, B, act_dim]`` the generated policies' actions at ``obs``; ``K`` = 8
        for HyPoGen with deep supervision (one row per block), else 1.
      q: ``float32[K, B]`` ``Q̂(obs, action_data)`` or None (policy-only models).
      q_next: ``float32[B]`` ``Q̂(next_obs, sg[π̂(next_obs)])`` of the final weights, or None.
    """

    action: jax.Array
    q: jax.Array | None
    q_next: jax.Array | None


# --- initialisers ----------------------------------------------------------------------------

def _half_uniform(fan_in: int):
    """U(±1/(2√fan_in)): Meta_Embedding's weight init (`Meta_Embedding` in HyPoGen's
    `models/hypogen_core.py`)."""
    bound = 0.5 / math.sqrt(fan_in)
    return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound,
                                                                     bound)


def _uniform(bound: float):
    return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound,
                                                                    bound)


class Dense(TorchDense):
    """``TorchDense`` under the name the HyPoGen parameter trees (and their Flax init keys)
    carry: ``Dense_0``, ``Dense_1``, ..."""


def _orthogonal():
    return dict(kernel_init=nn.initializers.orthogonal(), bias_init=nn.initializers.zeros)


class MLP(nn.Module):
    """``layers`` Linears with ReLU between (``Lin → ReLU → Lin`` at the default 2; the released
    ``hypogen_core.MLP``: 1 layer = one Linear), torch default init. Block MLPs: `OptBlock` in
    HyPoGen's `models/hypogen_core.py`,
    paper Tables 21–22 (depth, width)."""

    hidden: int
    out: int
    layers: int = 2

    @nn.compact
    def __call__(self, x):
        for _ in range(self.layers - 1):
            x = nn.relu(TorchDense(self.hidden)(x))
        return TorchDense(self.out)(x)


# --- the task encoder ------------------------------------------------------------------------

class ResBlock(nn.Module):
    """``x + Lin(ReLU(Lin(ReLU(x))))`` (pre-activation, no norm; `Meta_Embedding` in HyPoGen's
    `models/hypogen_core.py`)."""

    width: int
    orthogonal: bool = False

    @nn.compact
    def __call__(self, x):
        kw = _orthogonal() if self.orthogonal else dict(kernel_init=_half_uniform(self.width))
        h = Dense(self.width, **kw)(nn.relu(x))
        return x + Dense(self.width, **kw)(nn.relu(h))


class MetaEmbedding(nn.Module):
    """The task encoder ψ(c) (``Meta_Embedding`` in HyPoGen's
    `models/hypogen_core.py`): ``float32[..., spec_dim]`` →
    ``float32[..., 256]``. ``Lin(c→64)``, 2 ResBlocks(64), ``Lin(64→128)``, 2 ResBlocks(128),
    ``Lin(128→256)``, 2 ResBlocks(256): six residual blocks, no final activation. Weights
    U(±1/(2√fan_in)), biases torch default; ``orthogonal=True`` is the Cond/UVFA
    ``apply(weight_init)`` override (orthogonal weights, zero biases; the baselines of both
    released repositories)."""

    embed_dim: int = EMBED_DIM
    orthogonal: bool = False

    @nn.compact
    def __call__(self, c):
        x = c
        for width in (self.embed_dim // 4, self.embed_dim // 2, self.embed_dim):
            kw = (_orthogonal() if self.orthogonal
                  else dict(kernel_init=_half_uniform(x.shape[-1])))
            x = Dense(width, **kw)(x)
            for _ in range(2):
                x = ResBlock(width, self.orthogonal)(x)
        return x


# --- target networks -------------------------------------------------------------------------

Layer = tuple  # (W float32[out, in], b float32[out])


TARGET_ACTS = {"relu": nn.relu, "tanh": jnp.tanh}   # the released ``mid_act`` choices


def target_forward(layers: Sequence[Layer], x: jax.Array, final_tanh: bool,
                   act: str = "relu") -> jax.Array:
    """The target MLP: ``act`` (ReLU for DMC, tanh for manipulation: paper Table 18) between
    layers, tanh (policy) or identity (Q) after the last (b286e2f: no ``mid_act`` there).

    ``layers``: per layer ``(W [out, in], b [out])`` of one task; ``x float32[..., in]``.
    """
    for i, (w, b) in enumerate(layers):
        x = x @ jnp.swapaxes(w, -1, -2) + b
        if i < len(layers) - 1:
            x = TARGET_ACTS[act](x)
    return jnp.tanh(x) if final_tanh else x


def task_forward(layers, x, task_id, final_tanh: bool, act: str = "relu"):
    """Sample ``i`` through task ``task_id[i]``'s network: ``W [T, out, in]``, ``b [T, out]``,
    ``x [B, in]``, ``task_id int32[B]`` → ``[B, out]``.

    Runs every sample through all T networks and keeps its own task's row: ``T`` (≤ 8 train
    specs) small matmuls are cheaper than gathering a weight matrix per sample, whose backward
    is a ``[B, out, in]`` scatter-add."""
    y = target_forward([(w, b[:, None]) for w, b in layers], x[None], final_tanh, act)
    return jnp.take_along_axis(y, task_id[None, :, None], axis=0)[0]


def _dims(d_in: int, d_out: int, n_layers: int = 2, hidden: int = HIDDEN_DIM):
    ins = [d_in] + [hidden] * (n_layers - 1)
    outs = [hidden] * (n_layers - 1) + [d_out]
    return list(zip(ins, outs))


# --- HyPoGen -----------------------------------------------------------------------------------

class LayerCodec(nn.Module):
    """Per-layer weight encoder ``E_n`` (P → 256 → 128) and decoder ``D_n`` (128 → 256 → P),
    shared by the K blocks (`OptBlock` in HyPoGen's `models/hypogen_core.py`; paper App. A.2). ``P
    = out·in + out`` and the layer is
    flattened as ``concat(W.flatten() [row-major out×in], b)``."""

    d_in: int
    d_out: int

    def setup(self):
        p = self.d_out * self.d_in + self.d_out
        self.enc = MLP(ENC_DEC_DIM, WEIGHT_DIM)
        self.dec = MLP(ENC_DEC_DIM, p)

    def encode(self, w, b):
        return self.enc(jnp.concatenate([w.reshape(*w.shape[:-2], -1), b], axis=-1))

    def decode(self, latent):
        v = self.dec(latent)
        n_w = self.d_out * self.d_in
        return (v[..., :n_w].reshape(*v.shape[:-1], self.d_out, self.d_in), v[..., n_w:])


class WeightLayerNorm(nn.Module):
    """LayerNorm over *all* entries of a parameter tensor per task, with an element-wise affine
    of the tensor's full shape (``nn.LayerNorm(param.shape)``, eps 1e-5; `OptBlock` in HyPoGen's
    `models/hypogen_core.py`)."""

    shape: tuple

    @nn.compact
    def __call__(self, x):
        axes = tuple(range(-len(self.shape), 0))
        mean = jnp.mean(x, axis=axes, keepdims=True)
        var = jnp.mean(jnp.square(x - mean), axis=axes, keepdims=True)
        y = (x - mean) * jax.lax.rsqrt(var + 1e-5)
        return (y * self.param("scale", nn.initializers.ones, self.shape)
                + self.param("bias", nn.initializers.zeros, self.shape))


CHAIN_WAYS = ("direct", "slice", "full")   # the released dl_din_way / dl_dw_way choices


class OptBlock(nn.Module):
    """One hypernet block ``k`` (`OptBlock` in HyPoGen's `models/hypogen_core.py`; the released
    ``OptBlock`` / ``OptSubBlock``): a
    pseudo forward pass, then the chain rule backwards through the layers (paper Eq. 6–8).

    Given the latent codes ``e_n float32[T, 128]`` of the current θ and ``z float32[T, 256]``,
    returns the latent weight gradients ``gw_n float32[T, 128]`` per layer. With ``g`` the
    pseudo ∂L/∂out of layer n and ``J float32[T, d, out]`` a predicted Jacobian (``d`` = 128 for
    the weights, ``in`` for the input), each product ``J·g`` is computed the released way
    ``dw_way`` / ``din_way``: ``direct`` = the exact mat-vec ``einsum('to,tdo->td')``;
    ``slice`` = an MLP ``[g, J[d, :]] (2·out) → 1`` per row d (a learned dot product);
    ``full`` = one MLP ``[g, J.flatten()] → d``. Released defaults (``hypogen.yaml``):
    ``dw_way='direct'``, ``din_way='slice'``. Every block MLP has ``block_layers`` Linears of
    width ``block_width`` (Tables 21–22: 2, 128).
    """

    pseudo_in: tuple
    pseudo_out: tuple
    d_out: int
    block_width: int = OPT_BLOCK_DIM
    block_layers: int = 2
    din_way: str = "slice"
    dw_way: str = "direct"

    def _mlp(self, out, name):
        return MLP(self.block_width, out, self.block_layers, name=name)

    def _product(self, way, g, jac, name):
        """``J·g`` for ``g [T, o]``, ``jac [T, d, o]`` → ``[T, d]`` (see the class doc)."""
        if way == "direct":
            return jnp.einsum("to,tdo->td", g, jac)
        if way == "slice":
            g_b = jnp.broadcast_to(g[:, None, :], jac.shape)
            return self._mlp(1, name)(jnp.concatenate([g_b, jac], -1))[..., 0]
        return self._mlp(jac.shape[-2], name)(
            jnp.concatenate([g, jac.reshape(jac.shape[0], -1)], -1))

    @nn.compact
    def __call__(self, z, codes):
        n_layers = len(codes)
        h = [self._mlp(self.pseudo_in[0], "forward_in")(z)]                  # ψ^z: pseudo input
        # the pseudo output h_N is unused (`OptBlock` in HyPoGen's `models/hypogen_core.py`)
        for n in range(n_layers - 1):
            h.append(self._mlp(self.pseudo_out[n], f"forward_{n}")(
                jnp.concatenate([h[n], codes[n]], -1)))
        g = self._mlp(self.d_out, "dloss_dout")(z)                            # from z only
        grads = [None] * n_layers
        for n in reversed(range(n_layers)):
            d_i, d_o = self.pseudo_in[n], self.pseudo_out[n]
            x = jnp.concatenate([h[n], codes[n]], -1)
            j_w = self._mlp(WEIGHT_DIM * d_o, f"dout_dw_{n}")(x)
            j_w = j_w.reshape(*x.shape[:-1], WEIGHT_DIM, d_o)                   # φ^θ
            grads[n] = self._product(self.dw_way, g, j_w,
                                     f"{'slice' if self.dw_way == 'slice' else 'full'}_w_{n}")
            if n > 0:  # the first layer's propagated gradient is discarded
                j_in = self._mlp(d_i * d_o, f"dout_din_{n}")(x)
                j_in = j_in.reshape(*x.shape[:-1], d_i, d_o)                     # φ^z
                g = self._product(self.din_way, g, j_in,
                                  f"slice_{n}" if self.din_way == "slice" else f"full_in_{n}")
        if self.is_initializing():
            # Modules the released OptBlock builds (and runs) whose outputs nothing reads: the
            # last sub-block's pseudo forward (h_N) and the first sub-block's ∂out/∂in with its
            # product (the discarded first-layer gin). Created so the parameter tree and count
            # equal the released model's (tests/test_hypogen.py); never applied, so their
            # gradient is exactly zero, as torch leaves them without one.
            last = n_layers - 1
            self._mlp(self.pseudo_out[last], f"forward_{last}")(
                jnp.concatenate([h[last], codes[last]], -1))
            x0 = jnp.concatenate([h[0], codes[0]], -1)
            j_in = self._mlp(self.pseudo_in[0] * self.pseudo_out[0], "dout_din_0")(x0)
            j_in = j_in.reshape(*x0.shape[:-1], self.pseudo_in[0], self.pseudo_out[0])
            self._product(self.din_way, g, j_in,
                          "slice_0" if self.din_way == "slice" else "full_in_0")
        return grads


class HyPoGenGenerator(nn.Module):
    """One HyPoGen generator (``HyPoGenWrapper``): learned θ⁰ and K blocks of optimisation in
    full weight space (`OptBlock` in HyPoGen's `models/hypogen_core.py`)::

        θ^k = θ^{k-1} + lr_k · LN(D(Φ^θ(…) g))     for k = 1 … K

    ``__call__(z float32[T, 256])`` returns the list of all K iterates ``θ^1 … θ^K``, each a
    list of ``(W [T, out, in], b [T, out])``: ``target_layers`` layers (``d_in → 256 → … →
    d_out``), pseudo dims ``[d_in] + [64]·(L−1)`` in, ``[64]·(L−1) + [d_out]`` out (b286e2f).
    """

    d_in: int
    d_out: int
    num_blocks: int = NUM_BLOCKS
    target_layers: int = 2
    block_width: int = OPT_BLOCK_DIM
    block_layers: int = 2
    din_way: str = "slice"
    dw_way: str = "direct"
    update_layernorm: bool = True

    @nn.compact
    def __call__(self, z):
        dims = _dims(self.d_in, self.d_out, self.target_layers)
        pseudo_in = tuple([self.d_in] + [PSEUDO_DIM] * (len(dims) - 1))
        pseudo_out = tuple([PSEUDO_DIM] * (len(dims) - 1) + [self.d_out])
        t = z.shape[0]
        theta = []
        for n, (i, o) in enumerate(dims):  # θ⁰: learned, shared by all tasks, torch init
            w = self.param(f"theta0_w{n}", torch_uniform(i), (o, i))
            b = self.param(f"theta0_b{n}", torch_uniform(i), (o,))
            theta.append((jnp.broadcast_to(w, (t, o, i)), jnp.broadcast_to(b, (t, o))))
        codecs = [LayerCodec(i, o, name=f"codec_{n}") for n, (i, o) in enumerate(dims)]
        if self.update_layernorm:
            ln_w = [WeightLayerNorm((o, i), name=f"ln_w{n}") for n, (i, o) in enumerate(dims)]
            ln_b = [WeightLayerNorm((o,), name=f"ln_b{n}") for n, (i, o) in enumerate(dims)]
        else:  # diagnostic (issue 18 §2): the decoded update as it is, its magnitude kept
            ln_w = ln_b = [lambda x: x] * len(dims)
        iterates = []
        for k in range(self.num_blocks):
            lr = self.param(f"lr_{k}", nn.initializers.constant(LR_INIT), ())
            codes = [c.encode(w, b) for c, (w, b) in zip(codecs, theta)]
            grads = OptBlock(pseudo_in, pseudo_out, self.d_out, self.block_width,
                             self.block_layers, self.din_way, self.dw_way,
                             name=f"block_{k}")(z, codes)
            new = []
            for n, ((w, b), gw) in enumerate(zip(theta, grads)):
                dw, db = codecs[n].decode(gw)
                new.append((w + lr * ln_w[n](dw), b + lr * ln_b[n](db)))
            theta = new
            iterates.append(theta)
        return iterates


class TargetNetConfig(NamedTuple):
    """The generated target networks and HyPoGen's blocks (the paper's ablation knobs).

    ``layers``: Linears per target net (Table 18; DMC 2, manipulation 3); ``act``: between
    them (``relu`` DMC, ``tanh`` manipulation); ``block_layers`` / ``block_width``: the block
    MLPs (Tables 21–22); ``din_way`` / ``dw_way``: the chain-rule products (``OptBlock``);
    ``update_layernorm``: the released whole-tensor LayerNorm of each decoded update (off: a
    diagnostic, not in the paper: it keeps each update's task-dependent magnitude)."""

    layers: int = 2
    act: str = "relu"
    block_layers: int = 2
    block_width: int = OPT_BLOCK_DIM
    din_way: str = "slice"
    dw_way: str = "direct"
    update_layernorm: bool = True

    def check(self) -> "TargetNetConfig":
        """Raises ``ValueError`` naming the first bad field."""
        if self.layers < 1 or self.block_layers < 1 or self.block_width < 1:
            raise ValueError(f"target layers, block layers and block width must be >= 1, got "
                             f"{self.layers}, {self.block_layers}, {self.block_width}")
        if self.act not in TARGET_ACTS:
            raise ValueError(f"unknown target activation {self.act!r}; valid: "
                             f"{', '.join(TARGET_ACTS)}")
        for name in ("din_way", "dw_way"):
            if getattr(self, name) not in CHAIN_WAYS:
                raise ValueError(f"unknown {name} {getattr(self, name)!r}; valid: "
                                 f"{', '.join(CHAIN_WAYS)}")
        return self


class HyPoGen(nn.Module):
    """``DoubleHeadedHyPoGen`` (HyPoGen's `models/hypogen_core.py`): one
    shared task encoder, a policy generator
    (obs → 256 → act, tanh) and, with ``use_q``, an independent Q generator ([obs, act] → 256 → 1).

    ``deep_supervision``: the training pass returns the policy (and Q) of all K iterates
    (``[K, B, ·]``, the newer code's ``train=True``); off: the final block only. ``target``:
    the knobs of :class:`TargetNetConfig`."""

    obs_dim: int
    act_dim: int
    use_q: bool = True
    num_blocks: int = NUM_BLOCKS
    deep_supervision: bool = True
    target: TargetNetConfig = TargetNetConfig()

    def setup(self):
        t = self.target
        gen = lambda d_in, d_out: HyPoGenGenerator(d_in, d_out, self.num_blocks, t.layers,
                                                   t.block_width, t.block_layers, t.din_way,
                                                   t.dw_way, t.update_layernorm)
        self.embed = MetaEmbedding()
        self.pi_gen = gen(self.obs_dim, self.act_dim)
        if self.use_q:
            self.q_gen = gen(self.obs_dim + self.act_dim, 1)

    def generate(self, specs):
        return self.pi_gen(self.embed(specs))[-1]

    def act(self, weights, obs):
        return target_forward(weights, obs, True, self.target.act)

    def __call__(self, specs, task_id, obs, action, next_obs):
        fwd = lambda th, x, tanh: task_forward(th, x, task_id, tanh, self.target.act)
        z = self.embed(specs)
        pi_iters = self.pi_gen(z)
        used = pi_iters if self.deep_supervision else pi_iters[-1:]
        acts = jnp.stack([fwd(th, obs, True) for th in used])
        if not self.use_q:
            return Outputs(acts, None, None)
        q_iters = self.q_gen(z)
        q_used = q_iters if self.deep_supervision else q_iters[-1:]
        sa = jnp.concatenate([obs, action], -1)
        q = jnp.stack([fwd(ph, sa, False)[..., 0] for ph in q_used])
        a_next = jax.lax.stop_gradient(fwd(pi_iters[-1], next_obs, True))
        q_next = fwd(q_iters[-1], jnp.concatenate([next_obs, a_next], -1), False)[..., 0]
        return Outputs(acts, q, q_next)


# --- HyperZero ---------------------------------------------------------------------------------

class Head(nn.Module):
    """HyperZero ``Head(z, in, out)``: ``W = Lin(z → in·out)`` as ``[out, in]``, ``b = Lin(z →
    out)`` (HyperZero's `models/hypenet_core.py`). ``init_bound``: the original U(±bound) weights
    with zero generator
    biases; ``None``: torch default (the HyPoGen fork comments ``init_layers`` out)."""

    d_in: int
    d_out: int
    init_bound: float | None = None

    @nn.compact
    def __call__(self, z):
        kw = ({} if self.init_bound is None
              else dict(kernel_init=_uniform(self.init_bound), bias_init=nn.initializers.zeros))
        w = Dense(self.d_in * self.d_out, **kw)(z).reshape(*z.shape[:-1], self.d_out, self.d_in)
        return w, Dense(self.d_out, **kw)(z)


class HyperZero(nn.Module):
    """``DoubleHeadedHyperNetwork`` (HyperZero's `models/hypenet_core.py`): the task encoder plus
    per-layer heads for the
    policy (obs → 256 → act, tanh) and the Q function ([obs, act] → 256 → 1).
    ``original_init``: heads U(±0.05) (first layer) / U(±0.008) (last), zero biases (middle
    layers of a deeper ``target``: U(±0.05), INFERRED). ``target``: only ``layers`` and ``act``
    apply (Table 18 varies HyperZero's depth too)."""

    obs_dim: int
    act_dim: int
    use_q: bool = True
    original_init: bool = False
    target: TargetNetConfig = TargetNetConfig()

    def setup(self):
        self.embed = MetaEmbedding()
        n = self.target.layers

        def heads(d_in, d_out):
            dims = _dims(d_in, d_out, n)
            bounds = ([0.05] * (n - 1) + [0.008]) if self.original_init else [None] * n
            return [Head(i, o, bd) for (i, o), bd in zip(dims, bounds)]

        self.pi_heads = heads(self.obs_dim, self.act_dim)
        if self.use_q:
            self.q_heads = heads(self.obs_dim + self.act_dim, 1)

    def generate(self, specs):
        z = self.embed(specs)
        return [h(z) for h in self.pi_heads]

    def act(self, weights, obs):
        return target_forward(weights, obs, True, self.target.act)

    def __call__(self, specs, task_id, obs, action, next_obs):
        fwd = lambda w, x, tanh: task_forward(w, x, task_id, tanh, self.target.act)
        z = self.embed(specs)
        pi = [h(z) for h in self.pi_heads]
        acts = fwd(pi, obs, True)[None]
        if not self.use_q:
            return Outputs(acts, None, None)
        qw = [h(z) for h in self.q_heads]
        q = fwd(qw, jnp.concatenate([obs, action], -1), False)[..., 0]
        a_next = jax.lax.stop_gradient(fwd(pi, next_obs, True))
        q_next = fwd(qw, jnp.concatenate([next_obs, a_next], -1), False)[..., 0]
        return Outputs(acts, q[None], q_next)


# --- Cond Policy and UVFA ----------------------------------------------------------------------

class CondPolicy(nn.Module):
    """Cond Policy (``MLPActionPredictor``, the baselines of both released repositories): ``[ψ(c),
    s] → 256 → act`` (ReLU, tanh);
    ``use_q`` adds UVFA's Q head ``[ψ(c), s, a] → 256 → 1`` (``MLPRLSolution``). Every Linear,
    the embedding's included, is orthogonal with zero bias (``apply(weight_init)``)."""

    obs_dim: int
    act_dim: int
    use_q: bool = False

    def setup(self):
        self.embed = MetaEmbedding(orthogonal=True)
        self.pi = [Dense(HIDDEN_DIM, **_orthogonal()), Dense(self.act_dim, **_orthogonal())]
        if self.use_q:
            self.q = [Dense(HIDDEN_DIM, **_orthogonal()), Dense(1, **_orthogonal())]

    def generate(self, specs):
        return self.embed(specs)

    def act(self, z, obs):
        z = jnp.broadcast_to(z, (*obs.shape[:-1], z.shape[-1]))
        return jnp.tanh(self.pi[1](nn.relu(self.pi[0](jnp.concatenate([z, obs], -1)))))

    def _q(self, z, obs, action):
        return self.q[1](nn.relu(self.q[0](jnp.concatenate([z, obs, action], -1))))[..., 0]

    def __call__(self, specs, task_id, obs, action, next_obs):
        z = self.embed(specs)[task_id]
        acts = self.act(z, obs)[None]
        if not self.use_q:
            return Outputs(acts, None, None)
        a_next = jax.lax.stop_gradient(self.act(z, next_obs))
        return Outputs(acts, self._q(z, obs, action)[None], self._q(z, next_obs, a_next))


# The four models' released facts (HyPoGen's `approximators/rl_solution.py`,
# `approximators/policy.py` and released configs; HyperZero's configs; the baselines of both
# released repositories): Adam learning rates, (value, td) loss weights, MultiStepLR, Q heads.
algos.register(algos.Algo(
    "hypogen", "HyPoGen", learning_rate=5e-4, loss_weights=(0.01, 0.01), scheduled=True,
    q_heads="with_td",
    build=lambda obs_dim, act_dim, *, use_q, num_blocks, deep_supervision, target, **_:
    HyPoGen(obs_dim, act_dim, use_q, num_blocks, deep_supervision, target)))
algos.register(algos.Algo(
    "hyperzero", "HyperZero", learning_rate=1e-4, loss_weights=(0.01, 0.01), scheduled=True,
    q_heads="always", fixed_target=True,
    build=lambda obs_dim, act_dim, *, use_q, hyperzero_original_init, target, **_:
    HyperZero(obs_dim, act_dim, use_q, hyperzero_original_init, target)))
algos.register(algos.Algo(
    "cond", "Cond Policy", learning_rate=1e-4, q_heads="never",
    build=lambda obs_dim, act_dim, *, use_q, **_: CondPolicy(obs_dim, act_dim, use_q)))
algos.register(algos.Algo(
    "uvfa", "UVFA", learning_rate=1e-4, loss_weights=(0.01, 0.0), scheduled=True,
    q_heads="always",
    build=lambda obs_dim, act_dim, *, use_q, **_: CondPolicy(obs_dim, act_dim, use_q)))
ALGOS = algos.names(meta=False)   # the four above, in the paper's order


def make_model(algo: str, obs_dim: int, act_dim: int, *, use_q: bool | None = None,
               use_td: bool = True, deep_supervision: bool = True,
               num_blocks: int = NUM_BLOCKS, hyperzero_original_init: bool = False,
               target: TargetNetConfig = TargetNetConfig()) -> nn.Module:
    """The model of ``algo`` (a registered, non-meta :class:`algos.Algo`) for a task with
    these dimensions.

    ``use_q`` defaults to the released builds for the released ``use_td`` (``Algo.q_heads``):
    HyPoGen builds its Q generator only with ``use_td`` (``DoubleHeadedHyPoGen``: ``if
    self.use_td``; the ManiSkill config has ``use_td: false``); HyperZero
    (``DoubleHeadedHyperNetwork``) and UVFA (``MLPRLSolution``) always carry their Q heads;
    Cond Policy has none. ``target`` (:class:`TargetNetConfig`) shapes the generated networks
    of HyPoGen and HyperZero; Cond Policy and UVFA keep the released 2-layer MLP. Raises
    ``ValueError`` for an unknown or meta algo or a bad ``target`` field.
    """
    spec = algos.get(algo)
    if spec.build is None:
        raise ValueError(f"algo {algo!r} is a meta-learning baseline: "
                         f"hyperjax.hypogen.meta.make_meta_fit builds it")
    target.check()
    if use_q is None:
        use_q = spec.use_q(use_td)
    return spec.build(obs_dim, act_dim, use_q=use_q, use_td=use_td,
                      deep_supervision=deep_supervision, num_blocks=num_blocks,
                      hyperzero_original_init=hyperzero_original_init, target=target)


def count_params(tree) -> int:
    return int(sum(x.size for x in jax.tree_util.tree_leaves(tree)))


def param_breakdown(params) -> dict:
    """Parameter counts per top-level submodule (``embed``, ``pi_gen``, ``q_gen``, …)."""
    p = params["params"] if "params" in params else params
    return {k: count_params(v) for k, v in p.items()}
