"""Process-level helpers: JAX's persistent compilation cache, comma-list flag parsing."""
from __future__ import annotations

import contextlib
import os
import sys
import tempfile

import jax
import jax.numpy as jnp

DEFAULT_CACHE_DIR = os.path.join(os.path.expanduser("~"), ".cache", "hyperjax", "jax")


# what XLA:CPU logs when it refuses a cached executable (jax-ml/jax#38445, openxla/xla#44565)
AOT_REJECTED = "cpu_aot_loader"


@contextlib.contextmanager
def captured_stderr_fd():
    """Redirects file descriptor 2 (where XLA's C++ logging writes) to a temporary file for
    the ``with`` block; yields a list that holds the captured text (``str``) afterwards."""
    out: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield out
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            out.append(tmp.read().decode("utf-8", errors="replace"))


def cache_entries_load() -> bool:
    """Whether this host can load what the persistent compilation cache holds: compiles a
    tiny program into the cache, drops the in-memory copies and compiles it again, which
    reads the entry back, with XLA's logging captured. False when XLA:CPU refused the entry.

    On some x86 CPUs XLA records LLVM tuning attributes (``+prefer-no-gather``,
    ``+prefer-no-scatter``) among the compile machine's features, and its AOT loader then
    refuses every cached executable on the same host, logging a multi-line error that ends in
    "could lead to execution errors such as SIGILL", and recompiles (jax-ml/jax#38445): there
    the cache only costs time and log lines.
    """
    from jax.experimental.compilation_cache import compilation_cache as cc
    min_time = jax.config.jax_persistent_cache_min_compile_time_secs
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    try:
        with captured_stderr_fd() as log:
            probe = jax.jit(lambda x: jnp.tanh(x) * 3.0 + 1.0)
            probe.lower(jnp.zeros((3,), jnp.float32)).compile()
            jax.clear_caches()
            cc.reset_cache()
            probe.lower(jnp.zeros((3,), jnp.float32)).compile()
    finally:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", min_time)
    return AOT_REJECTED not in log[0]


_PROBED: dict[str, bool] = {}


def _probed(path: str) -> bool:
    """``cache_entries_load()`` once per process and cache directory."""
    if path not in _PROBED:
        _PROBED[path] = cache_entries_load()
    return _PROBED[path]


def enable_compilation_cache(path: str | None = None, probe: bool = True) -> str | None:
    """Turns on JAX's persistent compilation cache (``HYPERJAX_CACHE_DIR`` or ``~/.cache``).

    Entries depend on the CPU type (stack.md §4); the cache is a few MB. With ``probe``, on a
    CPU backend the cache stays on only where this host can load its entries
    (``cache_entries_load``): elsewhere every load would be refused with an error log and a
    recompile, so the cache is turned off, silently. Returns the path, or None when off.
    """
    path = path or os.environ.get("HYPERJAX_CACHE_DIR", DEFAULT_CACHE_DIR)
    os.makedirs(path, exist_ok=True)
    jax.config.update("jax_enable_compilation_cache", True)
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    if probe and jax.default_backend() == "cpu" and not _probed(path):
        from jax.experimental.compilation_cache import compilation_cache as cc
        jax.config.update("jax_enable_compilation_cache", False)
        cc.reset_cache()
        return None
    return path


def code_identity() -> dict:
    """``{"version": hyperjax's package version, "commit": the git commit of the imported
    source tree (``+dirty`` with uncommitted changes) or None}``: what a run's ``summary.json``
    records so that reports pool only runs of one code version."""
    import importlib.metadata
    import subprocess
    try:
        version = importlib.metadata.version("hyperjax")
    except importlib.metadata.PackageNotFoundError:
        version = None
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=here, text=True,
                             capture_output=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                "."], cwd=os.path.dirname(here), text=True,
                               capture_output=True, timeout=10)
        commit = (sha.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
                  if sha.returncode == 0 else None)
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"version": version, "commit": commit}


def parse_names(value: str, valid, what: str, allow_all: bool = False,
                all_names=None) -> list[str]:
    """``"a,b"`` (or ``"all"``: ``all_names``, default every valid name) -> names, in the
    given order, without duplicates.

    Raises:
      ValueError: an empty list or an unknown name (the message lists the valid ones).
    """
    if allow_all and value.strip() == "all":
        return list(valid if all_names is None else all_names)
    names = [v.strip() for v in value.split(",") if v.strip()]
    if not names:
        raise ValueError(f"--{what} is empty")
    for n in names:
        if n not in valid:
            raise ValueError(f"unknown {what} {n!r}; valid: {', '.join(valid)}"
                             + (", or all" if allow_all else ""))
    return list(dict.fromkeys(names))


def write_text_atomic(path: str, text: str) -> None:
    """Writes ``text`` to ``path`` through a temporary file renamed over it: a reader (or a run
    that dies mid-write) sees the old file or the new one, never half of one."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def write_json_atomic(path: str, obj, **dump_kwargs) -> None:
    """``json.dump(obj, path, **dump_kwargs)``, atomically (see :func:`write_text_atomic`).
    ``obj`` is serialised before ``path`` is touched, so an object JSON cannot hold raises
    ``TypeError`` / ``ValueError`` and leaves the old file as it was."""
    import json
    write_text_atomic(path, json.dumps(obj, **dump_kwargs))


def save_npz_atomic(path: str, **arrays) -> None:
    """``np.savez(path, **arrays)`` through a temporary file renamed over ``path``: a reader
    sees the old file or the new one, never half of one. ``path`` should end in ``.npz``."""
    import numpy as np
    tmp = path + ".tmp.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def fail(msg: str, code: int = 2):
    """The CLIs' error exit: ``error: MSG`` on one stderr line, exit status ``code``."""
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(code)


def absl_flags_parser(flag_values):
    """A ``flags_parser`` for ``absl.app.run`` that turns a flag error into one line + exit 2."""
    from absl import flags

    def parse(argv):
        try:
            return flag_values(argv)
        except flags.Error as e:
            fail(str(e).splitlines()[0])

    return parse
