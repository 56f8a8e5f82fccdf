"""The README's examples run: every ```python block, in order, in one namespace (so a later
block may use an earlier block's names, as a reader would). ``run_dir`` is provided by a tiny
CLI run, as the README says."""
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def test_the_readme_has_python_blocks():
    with open(os.path.join(ROOT, "README.md")) as f:
        assert len(python_blocks(f.read())) >= 4


def test_every_readme_python_block_runs(tiny_dma_sh_run):
    run_dir = tiny_dma_sh_run
    from hyperjax import methods
    with open(os.path.join(ROOT, "README.md")) as f:
        blocks = python_blocks(f.read())
    ns = {"__name__": "readme", "run_dir": run_dir}
    try:
        for i, block in enumerate(blocks):
            try:
                exec(compile(block, f"README.md python block {i}", "exec"), ns)
            except Exception as e:  # name the block in the failure
                raise AssertionError(f"README python block {i} failed: {e!r}\n{block}") from e
    finally:
        methods._REGISTRY.pop("tanh_context", None)
    # what the blocks claim
    import numpy as np
    assert ns["returns"].shape == (20, 2) and np.isfinite(ns["returns"]).all()  # hj.evaluate
    assert ns["returns_seed1"].shape == (20, 1)
    assert np.isfinite(ns["line_metrics"]["q_loss"]).all()
    assert len(ns["rows"]) > 0


def test_the_readme_preset_table_is_the_registry():
    from hyperjax import methods
    with open(os.path.join(ROOT, "README.md")) as f:
        assert methods.table_markdown() in f.read(), (
            "README preset table is stale: paste hyperjax.methods.table_markdown()")
