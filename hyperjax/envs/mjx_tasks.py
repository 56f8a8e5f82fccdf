"""AIB's physics tasks on MJX: DMC Cartpole, BallInCup, Walker, Cheetah, Reacher (easy/hard),
gymnasium's Walker2d-v5 / Hopper-v5, and the permutation variant Reacher-Perm.

Sources: DMA*-SH the authors' `dmash/contexts/context.py` (tasks, factors, ranges, episode
lengths); models, observations,
rewards and resets come from MuJoCo Playground's DM Control Suite (``impl="jax"``, i.e. pure
MJX), which ports dm_control's suite tasks; the two gym tasks follow gymnasium's v5 classes on
gymnasium's own XMLs (:mod:`hyperjax.envs.gym_tasks`).

**How a context changes the physics.** A context can change geometry (Cheetah's legs, the
cartpole's pole), so masses and inertias must be recompiled. For every context a task may see,
the model is edited with ``mujoco.MjSpec`` and compiled by MuJoCo on the host (so
``settotalmass``, ``inertiafromgeom`` and every derived constant come out exactly as MuJoCo
computes them); the MJX model fields that differ between contexts are stacked into
``[N, ...]`` arrays and the rest stays shared. Inside jit, ``reset`` finds the context's row
of that table and every ``step`` gathers the row's fields into the model it steps with (the
``tree_replace`` + ``in_axes`` pattern of Playground's domain randomisation, done by index so a
batch of 4096 envs can hold 4096 different contexts). The table holds the task's three
recipe sets and the default; ``make_env(name, contexts=...)`` adds user sets. A context that
is not in the table is refused on the host (``check_contexts``).

``action_factor`` (±1) multiplies the whole action vector before it reaches the actuators
(the authors' `dmash/contexts/context.py`); ``permutation`` (0/1) reverses the order of the action
dimensions (v2's actuator
permutation: with two actuators, a swap).
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import warnings
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import mujoco
import numpy as np

from hyperjax.envs import contexts as ctx
from hyperjax.envs.core import Env

def _mjx():
    """``mujoco.mjx``, imported on first use: importing it loads MuJoCo Warp (about 2.5 s on a
    2-core CPU), which a process that builds no MJX task (DI, ODE, the CLIs' checks) never
    needs."""
    import mujoco.mjx  # noqa: PLC0415  (import time, see above)
    return mujoco.mjx


# --- factors (the authors' `dmash/contexts/context.py`, CONTEXT_DEFAULTS)
# ------------------------------------------------
POLE_LENGTH = ctx.Factor("length", 0.5, (0.3, 0.85), (0.1, 2.0))
BIC_GRAVITY = ctx.Factor("gravity", 9.81, (8.0, 12.0), (1.0, 20.0))
BIC_DISTANCE = ctx.Factor("distance", 0.3, (0.24, 0.36), (0.1, 0.5))
WALKER_GRAVITY = ctx.Factor("gravity", 9.81, (4.91, 14.71), (0.98, 19.62))
ACTUATOR_STRENGTH = ctx.Factor("actuator_strength", 1.0, (0.5, 1.5), (0.1, 2.0))
LIMB_LENGTH = ctx.Factor("length", 1.0, (0.8, 1.2), (0.4, 1.6))
PERMUTATION = ctx.PERMUTATION


# --- model edits, one per factor (applied to an MjSpec before compiling) -------------------

def _scale(v, s):
    return np.asarray(v, np.float64) * s


def _pole_length(spec: mujoco.MjSpec, length: float) -> None:
    """Cartpole: the pole geom runs from the hinge to ``2 * length`` (the authors'
    `dmash/contexts/context.py`)."""
    spec.geom("pole_1").fromto = [0.0, 0.0, 0.0, 0.0, 0.0, 2.0 * length]


def _string_distance(spec: mujoco.MjSpec, d: float) -> None:
    """BallInCup: tendon range ``(0, d)``; the ball body moves down by ``d - 0.3`` (the authors'
    `dmash/contexts/context.py`)."""
    spec.tendon("string").range = [0.0, d]
    ball = spec.body("ball")
    ball.pos = np.asarray(ball.pos) - np.array([0.0, 0.0, d - BIC_DISTANCE.default])


def _cheetah_legs(spec: mujoco.MjSpec, s: float) -> None:
    """Cheetah: the six leg geoms' positions and half-lengths and the four child bodies'
    positions scale by ``s`` (issue 3 / the authors' ``cheetah-run_morph``)."""
    for name in ("bthigh", "bshin", "bfoot", "fthigh", "fshin", "ffoot"):
        g = spec.geom(name)
        g.pos = _scale(g.pos, s)
        size = np.array(g.size)
        size[1] *= s
        g.size = size
    for name in ("bshin", "bfoot", "fshin", "ffoot"):
        b = spec.body(name)
        b.pos = _scale(b.pos, s)


def _reacher_arm(spec: mujoco.MjSpec, s: float) -> None:
    """Reacher: both links (geoms ``arm``, ``hand``) and the child bodies scale by ``s``."""
    for name in ("arm", "hand"):
        g = spec.geom(name)
        g.fromto = _scale(g.fromto, s)
    for name in ("hand", "finger"):
        b = spec.body(name)
        b.pos = _scale(b.pos, s)


def _gear(spec: mujoco.MjSpec, s: float) -> None:
    """``actuator_gear *= s`` for every actuator (the authors' `dmash/contexts/context.py`)."""
    for a in spec.actuators:
        a.gear = _scale(a.gear, s)


def _gravity(model: mujoco.MjModel, g: float) -> None:
    """``opt.gravity = (0, 0, -g)`` (the authors' `dmash/contexts/context.py`)."""
    model.opt.gravity[:] = (0.0, 0.0, -g)


@dataclasses.dataclass(frozen=True)
class MjxTaskDef:
    """What a physics task is made of.

    Attributes:
      name: registry name.
      backend: ``() -> env`` with Playground's ``MjxEnv`` interface (``reset(rng)``,
        ``step(state, action)``, ``mj_model``, ``_mjx_model``).
      base_spec: ``backend_env -> MjSpec`` reproducing the backend's own model.
      varied: the context factors in column order.
      edits: per factor name, either ``("spec", fn)`` (an MjSpec edit) or ``("model", fn)``
        (an edit of the compiled ``MjModel``) or ``("action", None)`` (applied to actions).
      episode_length, obs_dim, action_dim: as ``Env`` (return bounds: ``envs.TASKS``).
      physics: dm_control's physics options (``DmcPhysics``) applied to the backend's model;
        None keeps the backend's own (the gym tasks: gymnasium's XMLs as they are).
      solver: the constraint solver's caps set on the model (``MJX_SOLVER`` for the tasks on
        dm_control's and gymnasium's physics); None keeps the backend XML's own (HyPoGen's
        spec tasks: Playground's).
    """

    name: str
    backend: Callable
    base_spec: Callable
    varied: tuple
    edits: dict
    obs_dim: int
    action_dim: int
    episode_length: int = 1000
    physics: "DmcPhysics | None" = None
    solver: "MjxSolver | None" = None


@dataclasses.dataclass(frozen=True)
class DmcPhysics:
    """The physics settings of a dm_control suite domain, which the authors simulate (their DMC
    tasks load dm_control 1.0.31's XMLs): ``timestep`` and ``integrator`` from the XML's
    ``<option>``, ``n_substeps`` = the task's control timestep / timestep, and everything else
    at MuJoCo's defaults (constraint solver iterations 100, line search 50, implicit joint
    damping on). Playground's ports of the same XMLs change these for speed (1-4 solver
    iterations, ``eulerdamp`` off, Euler for Cartpole's RK4, Reacher at 4 x 5 ms instead of
    20 ms, contact caps for Walker / Cheetah); ``tests/test_mjx.py`` checks every value against
    dm_control's own loaded physics.
    """

    timestep: float
    n_substeps: int
    integrator: int = int(mujoco.mjtIntegrator.mjINT_EULER)

    @property
    def control_timestep(self) -> float:
        return self.timestep * self.n_substeps

    def apply(self, spec: mujoco.MjSpec) -> None:
        """Sets these options on ``spec``, and MuJoCo's defaults where Playground's XML
        changed them (the solver's caps are then set by ``MjxSolver``)."""
        default = mujoco.MjSpec().option
        spec.option.timestep = self.timestep
        spec.option.integrator = self.integrator
        spec.option.iterations = default.iterations          # 100
        spec.option.ls_iterations = default.ls_iterations    # 50
        spec.option.disableflags &= ~int(mujoco.mjtDisableBit.mjDSBL_EULERDAMP)
        # Playground's MJX contact caps (custom numerics read by MJX's collision driver)
        for numeric in list(spec.numerics):
            if numeric.name in ("max_contact_points", "max_geom_pairs"):
                spec.delete(numeric)


@dataclasses.dataclass(frozen=True)
class MjxSolver:
    """The constraint solver's work caps on MJX, float32: dm_control's solution at the cost
    float32 needs. Applied to every MJX task's model (``MjxTask.base_spec``; AIB's DMC and gym
    tasks, HyPoGen's DMC spec tasks); everything else is dm_control's / gymnasium's.

    dm_control (and gymnasium's XMLs) leave MuJoCo's defaults: Newton, ``iterations`` 100,
    ``ls_iterations`` 50, ``tolerance`` 1e-8. MJX 3.17 runs the line search as a ``scan`` of
    ``ls_iterations`` steps of ``lax.cond``, which ``vmap`` turns into ``select``: a batch
    always pays all 50 steps (3 cost evaluations each) in every Newton iteration, whatever
    the search needed. Measured (``benchmarks/mjx_solver_iterations.py``,
    ``results/cpu_mjx_physics/``; 20 envs x 100 random-action steps per task), genuine line
    searches end within 1-8 steps; the rest run to 24-26, where float32 halves the bracket
    until it collapses, in a Newton iteration that then finds no improvement. With
    ``ls_iterations`` 4 every task's ``qacc`` is bitwise dm_control's-caps MJX on 99.2-100 %
    of those states (walker: the rest within 1.2e-5 relative) and its error against C MuJoCo
    float64 is unchanged (median, p99, max). ``iterations`` stays 100: the Newton loop stops
    on its tolerance (at most 10 iterations measured, C MuJoCo float64 at most 9), so the cap
    costs nothing.

    Attributes:
      iterations: Newton iterations cap (MuJoCo's default, 100).
      ls_iterations: line-search iterations cap (MuJoCo's default 50; here 4).
      tolerance: the Newton loop's stopping tolerance (MuJoCo's default, 1e-8).
    """

    iterations: int = 100
    ls_iterations: int = 4
    tolerance: float = 1e-8

    def apply(self, spec: mujoco.MjSpec) -> None:
        """Sets these caps on ``spec`` (Newton solver)."""
        spec.option.iterations = self.iterations
        spec.option.ls_iterations = self.ls_iterations
        spec.option.tolerance = self.tolerance

    @staticmethod
    def reference(model: mujoco.MjModel) -> mujoco.MjModel:
        """``model`` (C MuJoCo) with MuJoCo's default caps again, what dm_control and gymnasium
        run: the reference the tests and benchmarks compare MJX with. Edits in place and
        returns ``model``."""
        default = mujoco.MjModel.from_xml_string("<mujoco/>").opt
        model.opt.iterations = default.iterations
        model.opt.ls_iterations = default.ls_iterations
        model.opt.tolerance = default.tolerance
        return model


# MJX tasks' solver caps (``MjxTask(solver=...)``; ``DM_CONTROL_SOLVER`` reproduces MuJoCo's
# defaults, the caps runs before 2026-12-06 used)
MJX_SOLVER = MjxSolver()
DM_CONTROL_SOLVER = MjxSolver(100, 50, 1e-8)


# dm_control 1.0.31 suite: <option timestep integrator> of each XML and the control timestep of
# the AIB task (cartpole balance, ball_in_cup catch, walker walk, cheetah run, reacher easy/hard)
DMC_PHYSICS = {
    "cartpole": DmcPhysics(0.01, 1, int(mujoco.mjtIntegrator.mjINT_RK4)),
    "ball_in_cup": DmcPhysics(0.002, 10),
    "walker": DmcPhysics(0.0025, 10),
    "cheetah": DmcPhysics(0.01, 1),
    "reacher": DmcPhysics(0.02, 1),
}


class MjxPhysics(NamedTuple):
    state: Any           # the backend's state (Playground ``mjx_env.State``)
    model_id: jax.Array  # int32[], row of the model table this episode runs


class ModelTable:
    """Per-context MJX models: shared fields once, differing fields stacked ``[N, ...]``.

    Args:
      contexts: ``float32[N, F]`` the rows.
      models: ``N`` ``mjx.Model``s of the same structure.
    """

    def __init__(self, contexts: np.ndarray, models: list):
        self.contexts = np.asarray(contexts, np.float32)
        leaves0, self.treedef = jax.tree_util.tree_flatten(models[0])
        all_leaves = [jax.tree_util.tree_leaves(m) for m in models]
        self.shared = list(leaves0)
        self.varying: dict[int, jax.Array] = {}
        for i, leaf in enumerate(leaves0):
            vals = [np.asarray(ls[i]) for ls in all_leaves]
            if any(v.shape != vals[0].shape or not np.array_equal(v, vals[0]) for v in vals[1:]):
                self.varying[i] = jnp.asarray(np.stack(vals))
        paths = jax.tree_util.tree_flatten_with_path(models[0])[0]
        self.varying_fields = tuple(jax.tree_util.keystr(paths[i][0]) for i in self.varying)

    def __len__(self):
        return self.contexts.shape[0]

    def lookup(self, context: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Row whose context equals ``context`` (``float32[F]``).

        Returns ``(row int32[], missing bool[])``; ``missing`` is true when no row is within
        1e-5 (then ``row`` is the nearest one and the caller poisons the state with NaN).
        """
        dist = jnp.abs(jnp.asarray(self.contexts) - context).sum(-1)
        return jnp.argmin(dist).astype(jnp.int32), jnp.min(dist) > 1e-5

    def at(self, model_id: jax.Array):
        """The ``mjx.Model`` of row ``model_id`` (``int32[]``, traced or not)."""
        leaves = list(self.shared)
        for i, stacked in self.varying.items():
            leaves[i] = stacked[model_id]
        return jax.tree_util.tree_unflatten(self.treedef, leaves)


class MjxTask(Env):
    """An AIB physics task: a Playground/gym MJX env whose model is chosen by the context.

    ``reset(key, context)`` and ``step(key, state, action, context)`` follow :class:`Env`;
    ``state.physics`` is ``MjxPhysics(backend_state, model_id)``. ``terminated`` is always
    false (AIB runs fixed-length episodes; the authors' `dmash/contexts/context.py`).
    """

    action_low = -1.0
    action_high = 1.0

    def __init__(self, task: MjxTaskDef, extra_contexts=None, table_rows=None,
                 solver: "MjxSolver | None" = None):
        """``table_rows`` ``float[N, F]``: the contexts to compile models for, instead of the
        default, the recipe's three sets and ``extra_contexts`` (HyPoGen's spec grids).
        ``solver``: the constraint solver's caps instead of ``task.solver``
        (``DM_CONTROL_SOLVER``: MuJoCo's defaults, as runs before 2026-12-06)."""
        if solver is not None:
            task = dataclasses.replace(task, solver=solver)
        self.task = task
        self.name = task.name
        self.varied = task.varied
        self.factors = tuple(f.name for f in task.varied)
        self._default_context = tuple(f.default for f in task.varied)
        self.obs_dim, self.action_dim = task.obs_dim, task.action_dim
        self.episode_length = task.episode_length
        self.backend = task.backend()
        if task.physics is not None or task.solver is not None:
            # the backend's own model (its resets size their data from it) with dm_control's
            # physics options and the solver's caps, like every model of the table
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*settotalmass.*")
                model = self.base_spec().compile()
            self.backend._mj_model = model
            self.backend._mjx_model = _mjx().put_model(model, impl="jax")
        if table_rows is None:
            rows = [np.asarray(self._default_context, np.float32)[None]]
            rows += list(ctx.make_context_sets(task.varied).stacked())
            if extra_contexts is not None:
                rows.append(ctx.validate_context_set(extra_contexts, task.varied, "contexts"))
            table_rows = np.concatenate(rows)
        self._table_rows = np.unique(np.asarray(table_rows, np.float32), axis=0)

    @functools.cached_property
    def table(self) -> ModelTable:
        """The per-context model table, compiled on first use (about 0.1 s per context)."""
        with jax.ensure_compile_time_eval():  # first use may be inside a jit trace
            return ModelTable(self._table_rows,
                              [self._mjx_model(c) for c in self._table_rows])

    # --- host side ---------------------------------------------------------------------
    def mj_model(self, context) -> mujoco.MjModel:
        """The C MuJoCo model of ``context`` (``float[F]``), compiled on the host."""
        spec = self.base_spec()
        model_edits = []
        for f, value in zip(self.factors, np.asarray(context, np.float32)):
            value = round(float(value), 6)  # float32 rows -> the recipe's decimals
            kind, fn = self.task.edits[f]
            if kind == "spec":
                fn(spec, float(value))
            elif kind == "model":
                model_edits.append((fn, float(value)))
        with warnings.catch_warnings():  # cheetah.xml's ``settotalmass`` (kept: dm_control's)
            warnings.filterwarnings("ignore", message=".*settotalmass.*")
            model = spec.compile()
        if self.task.physics is None:
            model.opt.timestep = self.backend.mj_model.opt.timestep
        for fn, value in model_edits:
            fn(model, value)
        return model

    def base_spec(self) -> mujoco.MjSpec:
        """The task's model before any context edit: the backend's XML with dm_control's
        physics options (``MjxTaskDef.physics``) and the solver's caps (``.solver``)."""
        spec = self.task.base_spec(self.backend)
        if self.task.physics is not None:
            self.task.physics.apply(spec)
        if self.task.solver is not None:
            self.task.solver.apply(spec)
        return spec

    def _mjx_model(self, context):
        return _mjx().put_model(self.mj_model(context), impl="jax")

    def check_contexts(self, contexts, what: str = "contexts") -> None:
        """Raises ``ValueError`` naming the first row of ``contexts`` not in the model table."""
        arr = np.asarray(contexts, np.float32).reshape(-1, len(self.factors))
        d = np.abs(arr[:, None, :] - self.table.contexts[None]).sum(-1).min(-1)
        bad = np.flatnonzero(d > 1e-5)
        if bad.size:
            raise ValueError(f"{what}: row {bad[0]} {arr[bad[0]].tolist()} has no compiled "
                             f"model for {self.name!r}; pass it in make_env(..., contexts=)")

    # --- jit side ----------------------------------------------------------------------
    def reset(self, key, context):
        """``Env.reset`` under ``jax.jit``: MJX is traced once per env, not once per call site
        (a training program calls reset/step from the warm-up, training and evaluation;
        tracing MJX takes seconds each time, while vmap batches the cached jaxpr)."""
        return self._jit_reset(key, context)

    def step(self, key, state, action, context):
        """``Env.step`` under ``jax.jit`` (see ``reset``)."""
        return self._jit_step(key, state, action, context)

    @functools.cached_property
    def _jit_reset(self):
        return jax.jit(super().reset)

    @functools.cached_property
    def _jit_step(self):
        return jax.jit(super().step)

    @contextlib.contextmanager
    def _with_model(self, model):
        old = self.backend._mjx_model
        self.backend._mjx_model = model
        try:
            yield self.backend
        finally:
            self.backend._mjx_model = old

    def apply_action_factors(self, action, context):
        """Actuator inversion / permutation of ``action`` ``float32[A]`` (the authors'
        `dmash/contexts/context.py`)."""
        if "action_factor" in self.factors:
            action = action * self.factor(context, "action_factor")
        if "permutation" in self.factors:
            action = jnp.where(self.factor(context, "permutation") > 0.5, action[::-1], action)
        return action

    def _reset(self, key, context):
        model_id, missing = self.table.lookup(context)
        with self._with_model(self.table.at(model_id)) as be:
            state = be.reset(key)
        # A context without a compiled model must not run silently on its neighbour's model:
        # its state is NaN, which the training program's non-finite guard reports.
        nan = jnp.where(missing, jnp.nan, 0.0)
        state = state.replace(data=state.data.replace(qpos=state.data.qpos + nan),
                              obs=state.obs + nan)
        return MjxPhysics(_canonical(state), model_id)

    def _step(self, key, p: MjxPhysics, action, context):
        action = self.apply_action_factors(jnp.clip(action, -1.0, 1.0), context)
        with self._with_model(self.table.at(p.model_id)) as be:
            state = be.step(p.state, action)
        return (MjxPhysics(_canonical(state), p.model_id), state.reward.astype(jnp.float32),
                jnp.zeros((), bool))

    def _obs(self, p: MjxPhysics):
        return p.state.obs.astype(jnp.float32)


def _canonical(state):
    """Same pytree types and dtypes after reset and step (so ``lax.scan``/``where`` accept
    both): Playground resets give float64-free but weakly typed scalars."""
    return jax.tree.map(lambda x: jnp.asarray(x, jnp.float32)
                        if jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating) else x, state)


# --- backends ----------------------------------------------------------------------------

def _playground(name: str, physics: DmcPhysics | None = None, **overrides):
    """A Playground DM Control Suite env on pure MJX (``impl="jax"``; 0.2.0 defaults to warp),
    stepping at ``physics``' timestep and control timestep (dm_control's)."""
    if physics is not None:
        overrides.update(sim_dt=physics.timestep, ctrl_dt=physics.control_timestep)
    from mujoco_playground import dm_control_suite  # noqa: PLC0415  (3 s import)
    from mujoco_playground._src.dm_control_suite import reacher  # noqa: PLC0415
    # Playground 0.2.0's ``reacher._make_model`` tests ``mujoco.__version__ >= "3.3.0"`` as
    # strings, so MuJoCo 3.17 takes the pre-3.3 branch and fails; same function, fixed.
    reacher._make_model = _reacher_model
    return dm_control_suite.load(name, config_overrides={"impl": "jax", **overrides})


def _reacher_model(xml_path, target_size, assets) -> mujoco.MjModel:
    spec = mujoco.MjSpec.from_string(xml_path.read_text(), assets)
    spec.body("target").first_geom().size[0] = target_size
    return spec.compile()


def _playground_spec(env) -> mujoco.MjSpec:
    """The MjSpec Playground compiles its model from (Reacher also sets its target size)."""
    with open(env.xml_path) as f:
        spec = mujoco.MjSpec.from_string(f.read(), env._model_assets)
    if type(env).__name__ == "Reacher":  # ``reacher._make_model``
        spec.body("target").first_geom().size[0] = env._target_size
    return spec


def _ball_in_cup():
    """Playground's BallInCup with dm_control's episode initialisation.

    Playground 0.2.0 starts every episode with the ball hanging at rest; dm_control's
    ``BallInCup.initialize_episode`` draws ``ball_x ~ U(-.2, .2)``, ``ball_z ~ U(.2, .5)`` until
    the ball touches nothing. Here 32 candidates are drawn at once and the first whose sphere
    clears every cup capsule (exact sphere-segment distance) is used; all 32 colliding has
    probability below 1e-30.
    """
    from mujoco_playground._src import mjx_env  # noqa: PLC0415
    from mujoco_playground._src.dm_control_suite import ball_in_cup  # noqa: PLC0415

    class BallInCupDMC(ball_in_cup.BallInCup):
        def __init__(self):
            p = DMC_PHYSICS["ball_in_cup"]
            super().__init__(config_overrides={"impl": "jax", "sim_dt": p.timestep,
                                               "ctrl_dt": p.control_timestep})
            m = self._mj_model
            d = mujoco.MjData(m)
            mujoco.mj_forward(m, d)
            cup = [i for i in range(m.ngeom) if m.geom(i).name.startswith("cup_part")]
            axis = d.geom_xmat[cup].reshape(-1, 3, 3)[:, :, 2]
            half = m.geom_size[cup, 1][:, None]
            self._seg_a = jnp.asarray(d.geom_xpos[cup] - half * axis, jnp.float32)
            self._seg_b = jnp.asarray(d.geom_xpos[cup] + half * axis, jnp.float32)
            self._clearance = float(m.geom_size[cup, 0][0] + m.geom_size[m.geom("ball").id, 0])
            self._qadr = (m.jnt_qposadr[m.joint("ball_x").id], m.jnt_qposadr[m.joint("ball_z").id])

        def reset(self, rng):
            rng, kx, kz = jax.random.split(rng, 3)
            x = jax.random.uniform(kx, (32,), minval=-0.2, maxval=0.2)
            z = jax.random.uniform(kz, (32,), minval=0.2, maxval=0.5)
            body = self.mjx_model.body_pos[self._ball_body_id]
            centre = body + jnp.stack([x, jnp.zeros_like(x), z], -1)  # [32, 3]
            ab = self._seg_b - self._seg_a                              # [S, 3]
            ap = centre[:, None] - self._seg_a[None]                    # [32, S, 3]
            t = jnp.clip((ap * ab).sum(-1) / (ab * ab).sum(-1), 0.0, 1.0)
            dist = jnp.linalg.norm(ap - t[..., None] * ab, axis=-1).min(-1)
            pick = jnp.argmax(dist > self._clearance)
            qpos = jnp.zeros(self.mjx_model.nq)
            qpos = qpos.at[self._qadr[0]].set(x[pick]).at[self._qadr[1]].set(z[pick])
            data = mjx_env.make_data(self.mj_model, qpos=qpos, impl="jax",
                                     naconmax=self._config.naconmax, njmax=self._config.njmax)
            data = _mjx().forward(self.mjx_model, data)
            zero = jnp.zeros((), jnp.float32)
            return mjx_env.State(data, self._get_obs(data, {}), zero, zero, {}, {"rng": rng})

    return BallInCupDMC()


def _gym(kind):
    def make():
        # Local: gym_tasks imports MuJoCo Playground and MJX (~2.5 s), paid only by a
        # process that builds a gym task.
        from hyperjax.envs.gym_tasks import GymLocomotion  # noqa: PLC0415
        return GymLocomotion(kind)
    return make


def _gym_spec(env) -> mujoco.MjSpec:
    return mujoco.MjSpec.from_file(env.xml_path)


_AF = ("action", None)
_GRAVITY = ("model", _gravity)
_GEAR = ("spec", _gear)

def _reacher(name: str, playground_name: str, mode: ctx.Factor) -> MjxTaskDef:
    """Reacher: arm length x ``mode`` (``action_factor`` or ``permutation``, both on actions)."""
    p = DMC_PHYSICS["reacher"]
    return MjxTaskDef(name, lambda: _playground(playground_name, p), _playground_spec,
                    (LIMB_LENGTH, mode), {"length": ("spec", _reacher_arm), mode.name: _AF},
                    obs_dim=6, action_dim=2, physics=p, solver=MJX_SOLVER)


MJX_TASK_DEFS: dict[str, MjxTaskDef] = {
    "cartpole": MjxTaskDef(
        "cartpole", lambda: _playground("CartpoleBalance", DMC_PHYSICS["cartpole"]),
        _playground_spec, (POLE_LENGTH, ctx.ACTION_FACTOR),
        {"length": ("spec", _pole_length), "action_factor": _AF}, obs_dim=5, action_dim=1,
        physics=DMC_PHYSICS["cartpole"], solver=MJX_SOLVER),
    "ball_in_cup": MjxTaskDef(
        "ball_in_cup", _ball_in_cup, _playground_spec, (BIC_GRAVITY, BIC_DISTANCE),
        {"gravity": _GRAVITY, "distance": ("spec", _string_distance)}, obs_dim=8, action_dim=2,
        physics=DMC_PHYSICS["ball_in_cup"], solver=MJX_SOLVER),
    "walker": MjxTaskDef(
        "walker", lambda: _playground("WalkerWalk", DMC_PHYSICS["walker"]), _playground_spec,
        (WALKER_GRAVITY, ACTUATOR_STRENGTH),
        {"gravity": _GRAVITY, "actuator_strength": _GEAR}, obs_dim=24, action_dim=6,
        physics=DMC_PHYSICS["walker"], solver=MJX_SOLVER),
    "cheetah": MjxTaskDef(
        "cheetah", lambda: _playground("CheetahRun", DMC_PHYSICS["cheetah"]), _playground_spec,
        (LIMB_LENGTH, ctx.ACTION_FACTOR),
        {"length": ("spec", _cheetah_legs), "action_factor": _AF}, obs_dim=17, action_dim=6,
        physics=DMC_PHYSICS["cheetah"], solver=MJX_SOLVER),
    "reacher_easy": _reacher("reacher_easy", "ReacherEasy", ctx.ACTION_FACTOR),
    "reacher_hard": _reacher("reacher_hard", "ReacherHard", ctx.ACTION_FACTOR),
    "reacher_perm": _reacher("reacher_perm", "ReacherHard", PERMUTATION),
    "walker_gym": MjxTaskDef(
        "walker_gym", _gym("walker2d"), _gym_spec, (WALKER_GRAVITY, ACTUATOR_STRENGTH),
        {"gravity": _GRAVITY, "actuator_strength": _GEAR}, obs_dim=17, action_dim=6,
        solver=MJX_SOLVER),
    "hopper_gym": MjxTaskDef(
        "hopper_gym", _gym("hopper"), _gym_spec, (WALKER_GRAVITY, ACTUATOR_STRENGTH),
        {"gravity": _GRAVITY, "actuator_strength": _GEAR}, obs_dim=11, action_dim=3,
        solver=MJX_SOLVER),
}


def make_mjx_task(name: str, contexts=None, solver: MjxSolver | None = None) -> MjxTask:
    """Builds physics task ``name`` with a model for every recipe context (and ``contexts``);
    ``solver`` replaces the task's solver caps (``MjxTaskDef.solver``)."""
    return MjxTask(MJX_TASK_DEFS[name], contexts, solver=solver)
