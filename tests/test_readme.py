"""The README's and the docs' examples run: every ```python block of a page, in order, in one
namespace per page (so a later block may use an earlier block's names, as a reader would).
Nothing is injected: a block that loads a run trains it first. The tests ask for the tiny
run (conftest.py) only so that its program (the one docs/library.md's ``train_run``
compiles) is in the compilation cache first."""
import glob
import os
import re


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


PAGES = ["README.md", *sorted(os.path.relpath(p, ROOT)
                              for p in glob.glob(os.path.join(ROOT, "docs", "*.md")))]


def _run_page(page: str) -> dict:
    """Every python block of ``page`` in one namespace; returns the namespace."""
    from hyperjax import envs, methods
    from hyperjax.hypogen import algos
    with open(os.path.join(ROOT, page)) as f:
        blocks = python_blocks(f.read())
    ns = {"__name__": "readme"}
    try:
        for i, block in enumerate(blocks):
            try:
                exec(compile(block, f"{page} python block {i}", "exec"), ns)
            except Exception as e:  # name the block in the failure
                raise AssertionError(f"{page} python block {i} failed: {e!r}\n{block}") from e
    finally:
        methods.unregister("tanh_context")
        envs.unregister("line")
        algos.unregister("cond_scheduled")
    return ns


def test_the_readme_and_the_library_page_have_python_blocks():
    for page, least in (("README.md", 1), ("docs/library.md", 4)):
        with open(os.path.join(ROOT, page)) as f:
            assert len(python_blocks(f.read())) >= least, page


def test_every_readme_python_block_runs(tiny_dma_sh_run):
    import numpy as np
    ns = _run_page("README.md")
    assert ns["returns"].shape == (20, 1) and np.isfinite(ns["returns"]).all()
    assert np.isfinite(ns["out"].scores["eval_out"][0])


def test_every_docs_python_block_runs(tiny_dma_sh_run):
    import numpy as np
    for page in PAGES[1:]:
        ns = _run_page(page)
        if page == os.path.join("docs", "library.md"):  # what its blocks claim
            assert ns["returns"].shape == (20, 2) and np.isfinite(ns["returns"]).all()
            assert ns["returns_seed1"].shape == (20, 1)
            assert np.isfinite(ns["line_metrics"]["q_loss"]).all()
            assert ns["line_returns"].shape == (20, 1)   # a registered env's run, loaded back
            assert ns["sweep_metrics"]["aer"].shape == (4, 3, 3)
            # the two learning rates train differently from the same seeds
            q = np.asarray(ns["sweep_metrics"]["q_loss"])
            assert not np.allclose(q[0, -1], q[2, -1])
        if page == os.path.join("docs", "hypogen.md"):   # HyPoGen itself, loaded back
            assert ns["g"].algo == "hypogen" and ns["action"].shape == (ns["g"].env.action_dim,)
            assert [w.shape[0] for w, _ in ns["weights"]] == [2, 2]


def test_the_docs_preset_table_is_the_registry():
    from hyperjax import methods
    with open(os.path.join(ROOT, "docs", "aib.md")) as f:
        assert methods.table_markdown() in f.read(), (
            "docs/aib.md preset table is stale: paste hyperjax.methods.table_markdown()")


def test_readme_is_a_front_page_whose_links_resolve():
    """README at most ~250 lines; every relative link and every results/ or docs/ path it
    names exists in the repository."""
    import re
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    assert len(text.splitlines()) <= 250
    paths = set(re.findall(r"\]\(([^)#:]+)", text))
    paths |= set(re.findall(r"`((?:results|docs|benchmarks)/[^`*\s]+)`", text))
    for p in paths:
        assert os.path.exists(os.path.join(ROOT, p.rstrip("/"))), p
