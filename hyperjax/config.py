"""Run configuration: one frozen dataclass, method presets, validation with clear errors."""
from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np

from hyperjax import envs, methods

# Method presets and their labels live in the registry of ``hyperjax.methods`` (``--algo``).

INT32_MAX = 2 ** 31 - 1   # step counts, buffer sizes: int32 inside the compiled program


def _f(default, help_text: str, sweep: bool = False):
    """A Config field with its help text (``define_flags`` generates the CLI's flags from
    them: one source of defaults and help). ``sweep=True`` marks a hyperparameter that changes
    no shape (rejax's ``pytree_node=True``): it becomes a leaf of ``HParams``, carried in the
    train state, so ``--sweep`` / ``jax.vmap`` can vary it per run."""
    return dataclasses.field(default=default, metadata={"help": help_text, "sweep": sweep})


def __getattr__(name):  # ``METHODS``: the registered preset names, read when asked
    if name == "METHODS":
        return methods.names()
    raise AttributeError(name)


# Budgets per task: ``hyperjax.envs.TaskInfo.default_budget`` (CPU_BUDGET, PAPER_BUDGET).


def check_hparam(name: str, value) -> None:
    """The one check of a hyperparameter's value, wherever it comes from (a flag, a Config,
    a ``--sweep`` point): learning rates positive, ``gamma`` and ``tau`` in (0, 1],
    ``mask_rate`` in [0, 1), every value finite.

    Raises:
      ValueError: naming the hyperparameter, its range and the value.
    """
    import math
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {value}")
    if name.endswith("lr") and not v > 0:
        raise ValueError(f"{name} must be positive, got {value}")
    if name in ("gamma", "tau") and not 0.0 < v <= 1.0:
        raise ValueError(f"{name} must be in (0, 1], got {value}")
    if name == "mask_rate" and not 0.0 <= v < 1.0:
        raise ValueError(f"mask_rate must be in [0, 1), got {value}")


def _is_number(v) -> bool:
    """A real scalar (Python, NumPy or a 0-d array), not a bool, a string or None."""
    if v is None or isinstance(v, (bool, np.bool_, str, bytes)):
        return False
    try:
        return np.ndim(v) == 0 and np.issubdtype(np.asarray(v).dtype, np.number)
    except (TypeError, ValueError):
        return False


def check_batch(batch_size: int, n_contexts: int) -> None:
    """Raises ``ValueError`` unless the stratified sampler can split the batch evenly."""
    if batch_size % n_contexts:
        raise ValueError(f"batch_size={batch_size} is not divisible by the {n_contexts} "
                         f"training contexts of the stratified sampler (use a multiple of "
                         f"{n_contexts}; the authors' 256 gives {256 // n_contexts} per "
                         f"context = {256 // n_contexts * n_contexts})")


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything that defines a training run. Numbers follow the authors' `dmash/contexts/sac.py`
    unless marked.

    Each field's meaning is its help text (``dataclasses.fields(Config)[i].metadata["help"]``,
    also the CLI's ``--help``). Notes: ``batch_size`` must divide over the training contexts,
    so the default is the 240 the authors' ``256 // 20 = 12`` per context trains on;
    ``buffer_size`` is per context (the authors' ``min(1e5, total_steps)``); ``num_envs`` None
    is the paper's one env per context (m > 1 envs per context share its replay capacity and
    its share of the batch; still one gradient step per vector step); ``bootstrap_truncation``
    False is the authors' ``done = terminated or truncated``.
    """

    env: str = _f("di", "task name (hyperjax.envs.TASKS)")
    algo: str = _f("dma_sh", "method preset (hyperjax.methods)")
    total_steps: int = _f(100_000, "Gradient steps N after the random phase, counted as the "
                          "authors do: N + 1 vector steps with one update each, evaluations "
                          "at steps 0, eval_every, ..., N. The paper used 100,000 on DI.")
    eval_every: int = _f(5_000, "Steps between evaluations (divides total_steps).")
    learning_starts: int = _f(5_000, "Uniform-random vector steps before updates start (at "
                              "least one episode).")
    batch_size: int = _f(240, "Batch size, stratified evenly over the training contexts (the "
                         "authors' 256 // 20 = 12 per context = 240).")
    eval_episodes: int = _f(5, "Evaluation episodes per context and split (the authors' "
                            "num_eval_episodes = 5, contexts/config.py; the paper's text "
                            "says 10).")
    context_size: int | None = _f(None, "Encoder window K (default: the task's, 24 for "
                                  "DI/ODE, 128 for MJX).")
    buffer_size: int = _f(100_000, "Replay capacity per context (transitions).")
    num_envs: int | None = _f(None, "Parallel envs per run, a multiple of the training "
                              "contexts (default: one per context, the paper's setting).")
    # -- sweepable hyperparameters (HParams leaves: one program trains several values) --
    q_lr: float = _f(1e-3, "Critic learning rate (Adam).", sweep=True)
    actor_lr: float = _f(3e-4, "Actor learning rate (Adam).", sweep=True)
    alpha_lr: float = _f(1e-3, "Temperature learning rate (Adam).", sweep=True)
    model_lr: float = _f(3e-4, "Encoder / hypernetwork / dynamics-model learning rate.",
                         sweep=True)
    tau: float = _f(0.005, "Target-critic Polyak rate.", sweep=True)
    gamma: float = _f(0.99, "Discount.", sweep=True)
    target_entropy: float | None = _f(None, "The temperature's target entropy (default: "
                                      "-|A|, the authors').", sweep=True)
    mask_rate: float | None = _f(None, "Encoder input mask rate (default: the preset's).",
                                 sweep=True)
    # -- static choices --
    policy_frequency: int = _f(2, "Actor and temperature updates every this many steps "
                               "(twice each time, as the authors' TD3-style loop).")
    bootstrap_truncation: bool = _f(False, "Bootstrap through time limits (the authors' code "
                                    "treats truncation as terminal).")
    exact_tanh_logprob: bool = _f(False, "distrax's exact tanh log-determinant in the "
                                  "policy's log-probability instead of CleanRL's "
                                  "log(scale (1 - y^2) + 1e-6) (the authors').")
    pearl_beta: float = _f(0.4, "The PLSTM encoders' KL weight (DMA-Pearl; a knob of the "
                           "method, passed to it).")

    @classmethod
    def tiny(cls, **fields) -> "Config":
        """A budget for trying things: one episode of uniform-random steps, then 21 gradient
        steps, evaluations at 0, 10 and 20 on one episode per context (seconds of training
        after the compile; ``docs/library.md``'s TINY). ``fields`` as ``Config``'s, any of the
        four budget fields included. ``Config()`` itself is the paper's 100k budget.

        Raises:
          ValueError: unknown ``env`` (its episode length sets the random phase).
        """
        env = fields.get("env", cls.env)
        T = fields.get("learning_starts") or envs.episode_length(env)
        return cls(**{**dict(total_steps=20, eval_every=10, learning_starts=T,
                             eval_episodes=1), **fields})

    @classmethod
    def sweepable(cls) -> tuple[str, ...]:
        """The hyperparameters marked ``sweep=True``, in field order: ``HParams``' leaves and
        the names ``--sweep`` takes."""
        return tuple(f.name for f in dataclasses.fields(cls) if f.metadata.get("sweep"))


    def resolved(self, env=None) -> "Config":
        """Validates and fills ``mask_rate`` (the method's) and K (the task's default).

        Args:
          env: an env instance to train on (any ``hyperjax.envs.Env``; then ``self.env`` is
            only its label and need not be registered); default: the registered task.
        Raises:
          ValueError: unknown env/algo or an invalid number; the message names the field.
        """
        if env is None and self.__dict__.get("_resolved"):
            return self  # resolved and validated once (a changed copy is a new object)
        method = methods.get(self.algo)
        if env is None and self.env not in envs.env_names():
            raise ValueError(f"unknown env {self.env!r}; valid: {', '.join(envs.env_names())}")
        fill = {}
        if self.mask_rate is None:
            fill["mask_rate"] = float(method.mask_rate)
        elif not method.inferred and self.mask_rate != method.mask_rate:
            raise ValueError(f"mask_rate: {self.algo!r} has no context encoder")
        if self.context_size is None:
            fill["context_size"] = (envs.task_info(self.env).context_size if env is None
                                    else int(getattr(env, "context_size", 24)))
        cfg = dataclasses.replace(self, **fill)
        cfg._validate(envs.episode_length(self.env) if env is None else env.episode_length)
        if env is None:
            object.__setattr__(cfg, "_resolved", True)
        return cfg

    def method(self):
        """The run's ``ContextMethod``: the preset with this config's method knobs (the mask
        rate, the PLSTM's KL weight) where they differ from the preset's."""
        m = methods.get(self.algo)
        if m.inferred and self.mask_rate is not None and self.mask_rate != m.mask_rate:
            m = m.with_mask_rate(self.mask_rate)
        return m.with_knobs(pearl_beta=self.pearl_beta)

    def _validate(self, T: int) -> None:
        for name in ("total_steps", "eval_every", "batch_size", "eval_episodes",
                     "buffer_size", "policy_frequency", "context_size", "num_envs",
                     "learning_starts"):
            v = getattr(self, name)
            if isinstance(v, int) and not isinstance(v, bool) and v > INT32_MAX:
                raise ValueError(f"{name}={v} is above 2**31 - 1: the compiled loop counts "
                                 f"in int32")
        for name in ("total_steps", "eval_every", "batch_size", "eval_episodes",
                     "buffer_size", "policy_frequency", "context_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if self.context_size > T:
            raise ValueError(f"context_size={self.context_size} is longer than the episode "
                             f"length {T} of {self.env!r}: the window holds transitions of "
                             f"the current episode (K = 24 or 128 in the paper)")
        if self.num_envs is not None and (isinstance(self.num_envs, bool) or not isinstance(
                self.num_envs, int) or self.num_envs <= 0):
            raise ValueError(f"num_envs must be a positive integer, got {self.num_envs!r}")
        if isinstance(self.learning_starts, bool) or not isinstance(self.learning_starts, int) \
                or self.learning_starts < 0:
            raise ValueError(f"learning_starts must be a non-negative integer, "
                             f"got {self.learning_starts!r}")
        if self.learning_starts < T:
            raise ValueError(f"learning_starts={self.learning_starts} must be at least the "
                             f"episode length {T} of {self.env!r}: updates sample completed "
                             f"episodes only (the authors' replay)")
        if self.eval_every > self.total_steps:
            raise ValueError(f"eval_every={self.eval_every} is larger than "
                             f"total_steps={self.total_steps}")
        if self.total_steps % self.eval_every:
            raise ValueError(f"total_steps={self.total_steps} must be a multiple of "
                             f"eval_every={self.eval_every}")
        for f in dataclasses.fields(self):   # the declared kinds, as the flags enforce them
            v, kind = getattr(self, f.name), str(f.type)
            if kind == "bool" and not isinstance(v, (bool, np.bool_)):
                raise ValueError(f"{f.name} must be True or False, got {v!r}")
            if kind.startswith("float") and not (v is None and kind.endswith("None")) \
                    and not _is_number(v):
                raise ValueError(f"{f.name} must be a number, got {v!r}")
        for name in self.sweepable():
            if getattr(self, name) is not None:
                check_hparam(name, getattr(self, name))
        if not (math.isfinite(self.pearl_beta) and self.pearl_beta >= 0):
            raise ValueError(f"pearl_beta must be finite and >= 0, got {self.pearl_beta!r}")

    def per_context_batch(self, n_contexts: int = envs.contexts.NUM_CONTEXTS) -> int:
        """Samples per training context of the stratified batch."""
        return self.batch_size // n_contexts

    @property
    def inferred(self) -> bool:
        """The method reads a window of transitions (an encoder)."""
        return methods.get(self.algo).inferred

    @classmethod
    def from_record(cls, record: dict) -> "Config":
        """The ``Config`` of a run record (``config.json``: the Config's fields plus the
        run's ``seeds``, ``seed``, ``sweep`` and extra fields, ``rundir.run_record``); fields
        a record lacks take their defaults."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in record.items() if k in names})


# --- sweeps: ``--sweep NAME=V1,V2`` items, one program over their Cartesian product -------

def parse_sweep(specs: list[str]) -> dict[str, list[float]]:
    """``["q_lr=1e-3,3e-4", "tau=0.01"]`` -> ``{"q_lr": [1e-3, 3e-4], "tau": [0.01]}``.

    ``lr`` stands for all four learning rates (q, actor, alpha, model) set to one value.

    Raises:
      ValueError: malformed item, unknown or repeated name, empty or non-numeric values.
    """
    SWEEPABLE = Config.sweepable()
    out: dict[str, list[float]] = {}
    for spec in specs:
        name, sep, values = spec.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ValueError(f"--sweep {spec!r}: expected NAME=V1,V2,...")
        if name not in SWEEPABLE and name != "lr":
            raise ValueError(f"--sweep: cannot sweep {name!r}; sweepable: lr (all four "
                             f"learning rates), {', '.join(SWEEPABLE)}")
        try:
            vals = [float(v) for v in values.split(",") if v.strip()]
        except ValueError:
            raise ValueError(f"--sweep {spec!r}: values must be numbers") from None
        if not vals:
            raise ValueError(f"--sweep {spec!r}: no values")
        for v in vals:  # the same rule as the flags and Config (config.check_hparam)
            try:
                check_hparam("q_lr" if name == "lr" else name, v)
            except ValueError as e:
                raise ValueError(f"--sweep {spec!r}: {e}") from None
        if name in out:
            raise ValueError(f"--sweep: {name!r} given twice")
        out[name] = vals
    if "lr" in out and set(LEARNING_RATES) & set(out):
        raise ValueError("--sweep: 'lr' sets every learning rate; do not combine it with "
                         "q_lr / actor_lr / alpha_lr / model_lr")
    return out


def sweep_points(sweep: dict[str, list[float]]) -> list[dict[str, float]]:
    """The Cartesian product of a sweep, first name slowest: ``[{name: value}, ...]``
    (``lr`` expanded to the four learning rates). ``{}`` gives ``[{}]``."""
    names = list(sweep)
    points = []
    for combo in itertools.product(*(sweep[n] for n in names)):
        p = {}
        for n, v in zip(names, combo):
            p.update(expand_lr({n: v}))
        points.append(p)
    return points


LEARNING_RATES = ("q_lr", "actor_lr", "alpha_lr", "model_lr")   # what ``lr`` stands for


def expand_lr(hparams: dict) -> dict:
    """``hparams`` (``{name: value}``) with ``lr`` replaced by the four learning rates
    (``LEARNING_RATES``), each set to its value; other names pass unchanged."""
    out = {}
    for k, v in hparams.items():
        out.update({n: v for n in LEARNING_RATES} if k == "lr" else {k: v})
    return out


def sweep_names(names) -> tuple[str, ...]:
    """``make_program(sweep=...)`` names with ``lr`` expanded (``expand_lr``), in order."""
    return tuple(expand_lr({n: None for n in names}))


_FLAG_KINDS = {"int": "integer", "int | None": "integer", "float": "float",
               "float | None": "float", "bool": "bool", "str": "string"}


def define_flags(flag_values, skip: tuple[str, ...] = (), defaults: dict | None = None,
                 helps: dict | None = None) -> tuple[str, ...]:
    """Defines one absl flag per ``Config`` field (its type, default and help text), except
    ``skip``; ``defaults`` / ``helps`` replace a field's (the CLI's budget flags default to
    None: the task's budget). Returns the names defined."""
    from absl import flags
    defaults, helps = defaults or {}, helps or {}
    names = []
    for f in dataclasses.fields(Config):
        if f.name in skip:
            continue
        kind = _FLAG_KINDS[str(f.type)]
        define = getattr(flags, f"DEFINE_{kind}")
        define(f.name, defaults.get(f.name, f.default),
               helps.get(f.name, f.metadata["help"]), flag_values=flag_values)
        names.append(f.name)
    return tuple(names)
