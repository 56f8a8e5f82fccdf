"""Process-level helpers: JAX's persistent compilation cache, comma-list flag parsing."""
from __future__ import annotations

import os
import sys

import jax

DEFAULT_CACHE_DIR = os.path.join(os.path.expanduser("~"), ".cache", "hyperjax", "jax")


def enable_compilation_cache(path: str | None = None) -> str:
    """Turns on JAX's persistent compilation cache (``HYPERJAX_CACHE_DIR`` or ``~/.cache``).

    Entries depend on the CPU type (stack.md §4); the cache is a few MB. Returns the path.
    """
    path = path or os.environ.get("HYPERJAX_CACHE_DIR", DEFAULT_CACHE_DIR)
    os.makedirs(path, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    return path


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
