"""Context methods as plug-ins, and the preset registry (``--algo``).

``get(name)`` returns a method; ``register(method)`` adds one (a ``ContextMethod``: see
``hyperjax.methods.base``). The presets are the paper's seven and the rest of the authors' grid
(``dmash/contexts/config.py`` ``modify_groups``; the authors' `dmash/contexts/config.py`
(`modify_groups`)), named as the authors do where the
paper has no label.
"""
from __future__ import annotations

from hyperjax.methods.base import ContextMethod, MethodShapes
from hyperjax.methods.grid import GridMethod

_REGISTRY: dict[str, ContextMethod] = {}


def register(method: ContextMethod, replace: bool = False) -> ContextMethod:
    """Adds ``method`` under ``method.name``.

    Raises:
      ValueError: the name is taken (unless ``replace``).
    """
    if method.name in _REGISTRY and not replace:
        raise ValueError(f"method {method.name!r} is registered already")
    _REGISTRY[method.name] = method
    return method


def unregister(name: str) -> None:
    """Removes the method registered as ``name`` (nothing when absent)."""
    _REGISTRY.pop(name, None)


def get(name: str) -> ContextMethod:
    """The method registered as ``name``.

    Raises:
      ValueError: unknown name (the message lists the valid ones).
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown algo {name!r}; valid: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def names() -> tuple[str, ...]:
    return tuple(_REGISTRY)


PAPER_METHODS = ("dr", "concat", "da", "dma", "dma_pearl", "dma_star", "dma_sh")

_star = dict(source="inferred", encoder="star", helper="concat", policy_merge="concat",
             q_merge="concat")
_sh = dict(source="inferred", encoder="star", mask_rate=0.4, helper="hypernet",
           policy_merge="shared", q_merge="shared")
for _m in (
    # the paper's seven (labels of v2)
    GridMethod("dr", "DR"),
    GridMethod("concat", "Concat", source="true", policy_merge="concat", q_merge="concat"),
    GridMethod("da", "DA", source="true", policy_merge="own", q_merge="own"),
    GridMethod("dma", "DMA", source="inferred", encoder="plain", helper="concat",
               policy_merge="concat", q_merge="concat"),
    GridMethod("dma_pearl", "DMA-Pearl", source="inferred", encoder="pearl_plain",
               helper="concat", policy_merge="concat", q_merge="concat"),
    GridMethod("dma_star", "DMA*", mask_rate=0.2, **_star),
    GridMethod("dma_sh", "DMA*-SH", **_sh),
    # the rest of the authors' grid
    GridMethod("unaware_default", "DR (default context)", default_context=True),
    GridMethod("aware_hypernet_shared", "", source="true", policy_merge="own",
               q_merge="shared", shared_from="actor"),
    GridMethod("inferred_hypernet", "", **{**_star, "helper": "hypernet"}, mask_rate=0.4),
    GridMethod("inferred_hypernet_nonaligned", "DMA*-H (RL only)",
               **{**_star, "policy_merge": "own", "q_merge": "own"}, mask_rate=0.4),
    GridMethod("inferred_hypernet_all", "DMA*-H",
               **{**_star, "helper": "hypernet", "policy_merge": "own", "q_merge": "own"},
               mask_rate=0.4),
    GridMethod("inferred_plain_hypernet_shared", "DMA-SH", **{**_sh, "encoder": "plain",
                                                              "mask_rate": 0.0}),
    GridMethod("inferred_plain_pearl_q", "", source="inferred", encoder="pearl_plain",
               helper=None, policy_merge="concat", q_merge="concat", rl_losses=("critic",)),
    GridMethod("inferred_pearl", "", source="inferred", encoder="pearl", mask_rate=0.2,
               helper="concat", policy_merge="concat", q_merge="concat"),
    GridMethod("inferred_pearl_hypernet_shared", "", **{**_sh, "encoder": "pearl"}),
    # DMA*-SH with the RL gradients let through (v2 Fig. 15; INFERRED semantics, grid.py)
    GridMethod("dma_sh_critic_grad", "DMA*-SH (critic non-detached)", **_sh,
               rl_losses=("critic",)),
    GridMethod("dma_sh_actor_grad", "DMA*-SH (actor non-detached)", **_sh,
               rl_losses=("actor",)),
    GridMethod("dma_sh_actor_critic_grad", "DMA*-SH (actor-critic non-detached)", **_sh,
               rl_losses=("actor", "critic")),
):
    register(_m)

PRESETS = names()   # the package's own presets (registrations by users come after)

# the authors' preset names for the paper's seven (modify_groups)
AUTHORS_NAMES = {"dr": "unaware_dr", "concat": "aware_concat", "da": "aware_hypernet",
                 "dma": "inferred_plain_concat", "dma_pearl": "inferred_plain_pearl",
                 "dma_star": "inferred_concat", "dma_sh": "inferred_hypernet_shared"}


def help_text() -> str:
    """``--algo``'s help, generated from the registry."""
    rest = [n for n in _REGISTRY if n not in PAPER_METHODS]
    return ("Method preset(s), comma-separated, or 'all' (the paper's seven: "
            + ", ".join(PAPER_METHODS) + "); the rest of the authors' grid: "
            + ", ".join(rest) + ". The README's preset table describes each.")


def table_markdown() -> str:
    """The README's preset table: the package's presets (a test keeps them equal)."""
    rows = ["| preset | paper label | context | encoder (mask) | dynamics model | policy | Q "
            "| encoder trained by |", "|---|---|---|---|---|---|---|---|"]
    for name in PRESETS:
        m = _REGISTRY[name]
        rows.append("| " + " | ".join(m.describe()) + " |")
    return "\n".join(rows)


def order(algos) -> list[str]:
    """``algos`` in registry order (the paper's seven first), unregistered names last."""
    algos = list(algos)
    return [a for a in _REGISTRY if a in algos] + [a for a in algos if a not in _REGISTRY]


def label(name: str) -> str:
    """The paper's label of a preset (its name where the paper has none)."""
    m = _REGISTRY.get(name)
    return (m.label if m is not None and m.label else name)


__all__ = ["AUTHORS_NAMES", "ContextMethod", "GridMethod", "MethodShapes", "PAPER_METHODS", "PRESETS", "get",
           "help_text", "label", "order", "names", "register", "table_markdown"]
