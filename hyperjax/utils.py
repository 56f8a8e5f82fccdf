"""Process-level helpers: JAX's persistent compilation cache, comma-list flag parsing."""
from __future__ import annotations

import atexit
import contextlib
import dataclasses
import json
import os
import sys
import tempfile
import threading
import warnings

import jax
import jax.numpy as jnp

DEFAULT_CACHE_DIR = os.path.join(os.path.expanduser("~"), ".cache", "hyperjax", "jax")


# the source file of XLA:CPU's AOT loader, which names itself in every line it logs
# (jax-ml/jax#38445, openxla/xla#44565)
AOT_LOADER_LOG = "cpu_aot_loader"


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


@dataclasses.dataclass(frozen=True)
class CacheProbe:
    """What ``probe_cache`` found: ``loads`` (a cached executable was read back instead of
    compiled) and ``loader_logs`` (XLA:CPU's AOT loader logged an error line while reading
    it)."""
    loads: bool
    loader_logs: bool


def probe_cache() -> CacheProbe:
    """Whether this host reads back what the persistent compilation cache holds: compiles a
    tiny program into the (already configured) cache, drops the in-memory copies and compiles
    it again with XLA's logging captured, counting JAX's ``cache_hits`` event.

    On some x86 CPUs (AMD Zen here) XLA records LLVM tuning attributes (``+prefer-no-gather``,
    ``+prefer-no-scatter``) among the compile machine's features, and its AOT loader then
    logs an ERROR line on every read, ending in "could lead to execution errors such as
    SIGILL" (jax-ml/jax#38445). On jaxlib 0.9.2 that line is a warning only: the entry
    loads and runs bitwise as compiled (measured 2026-12-07: ``loads`` and ``loader_logs``
    both true). A newer XLA that refuses such entries gives ``loads=False``.
    """
    from jax.experimental.compilation_cache import compilation_cache as cc
    hits: list[str] = []

    def listen(event, **kwargs):
        if event == "/jax/compilation_cache/cache_hits":
            hits.append(event)

    min_time = jax.config.jax_persistent_cache_min_compile_time_secs
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.monitoring.register_event_listener(listen)
    try:
        with captured_stderr_fd() as log:
            probe = jax.jit(lambda x: jnp.tanh(x) * 3.0 + 1.0)
            probe.lower(jnp.zeros((3,), jnp.float32)).compile()
            jax.clear_caches()
            cc.reset_cache()
            probe.lower(jnp.zeros((3,), jnp.float32)).compile()
    finally:
        jax.monitoring.unregister_event_listener(listen)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", min_time)
    return CacheProbe(loads=bool(hits), loader_logs=AOT_LOADER_LOG in log[0])


_PROBED: dict[str, CacheProbe] = {}


class _Fd2LineFilter:
    """Process-wide: file descriptor 2 becomes a pipe whose lines a daemon thread copies to
    the original stderr, except lines containing ``needle`` (bytes). Text without a newline
    yet is passed on at once unless it may begin a C++ log line (``E``/``W``/``I``/``F``
    prefix). Undone at exit (``atexit``); a process killed outright may lose what the thread
    had not yet copied (microseconds of output)."""

    def __init__(self, needle: bytes):
        self.needle = needle
        sys.stderr.flush()
        self.saved = os.dup(2)
        r, w = os.pipe()
        os.dup2(w, 2)
        os.close(w)
        self.thread = threading.Thread(target=self._pump, args=(r,), daemon=True,
                                       name="stderr-filter")
        self.thread.start()
        atexit.register(self.close)

    def _emit(self, data: bytes):
        while data:
            data = data[os.write(self.saved, data):]

    def _pump(self, r: int):
        buf = b""
        while True:
            chunk = os.read(r, 65536)
            if not chunk:
                break
            *lines, buf = (buf + chunk).split(b"\n")
            self._emit(b"".join(ln + b"\n" for ln in lines if self.needle not in ln))
            if buf and buf[:1] not in (b"E", b"W", b"I", b"F"):
                self._emit(buf)
                buf = b""
        if buf and self.needle not in buf:
            self._emit(buf)
        os.close(r)

    def close(self):
        sys.stderr.flush()
        os.dup2(self.saved, 2)   # the pipe's last writer in this process: the thread sees EOF
        self.thread.join(timeout=2.0)


_FILTER: list[_Fd2LineFilter] = []


def enable_compilation_cache(path: str | None = None, probe: bool = True,
                             quiet: bool = False) -> str | None:
    """Turns on JAX's persistent compilation cache (``HYPERJAX_CACHE_DIR`` or ``~/.cache``).

    Entries depend on the CPU type (stack.md §4); the cache is a few MB. With ``probe``, on a
    CPU backend the cache stays on only where this host reads its entries back
    (``probe_cache``, once per process and directory); elsewhere it is turned off, silently.
    ``quiet``: where XLA's AOT loader logs an error line on every read of an entry this host
    loads correctly (jax-ml/jax#38445), drop those lines from file descriptor 2 for the rest
    of the process, and JAX's warning that an entry could not be written (a full disk: the
    run's own error says so; the cache only saves time) (the CLIs' choice; a library call
    leaves stderr alone). Returns the path, or None when off.
    """
    path = path or os.environ.get("HYPERJAX_CACHE_DIR", DEFAULT_CACHE_DIR)
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:   # e.g. an unwritable HOME: run without the cache, and say so
        print(f"hyperjax: compilation cache off: cannot create {path} ({e.strerror}); set "
              f"HYPERJAX_CACHE_DIR to a writable directory", file=sys.stderr)
        return None
    jax.config.update("jax_enable_compilation_cache", True)
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    if not (probe and jax.default_backend() == "cpu"):
        return path
    if path not in _PROBED:
        _PROBED[path] = probe_cache()
    found = _PROBED[path]
    if not found.loads:
        from jax.experimental.compilation_cache import compilation_cache as cc
        jax.config.update("jax_enable_compilation_cache", False)
        cc.reset_cache()
        return None
    if quiet and found.loader_logs and not _FILTER:
        _FILTER.append(_Fd2LineFilter(AOT_LOADER_LOG.encode()))
    if quiet:   # a full disk: the run's own error line says so; the cache is only a speed-up
        warnings.filterwarnings("ignore", message="Error writing persistent compilation cache")
    return path


def raw_key(key) -> jax.Array:
    """``uint32[..., 2]``: the raw threefry key data of ``key``. A typed key
    (``jax.random.key(0)``, dtype ``key<fry>``) becomes its ``jax.random.key_data``; a raw key
    (``jax.random.PRNGKey(0)``, ``uint32[2]``) passes unchanged, so both kinds give the same
    numbers. Works under ``jit`` / ``vmap``.

    Raises:
      ValueError: a typed key of another implementation than threefry2x32 (the train state
        stores raw threefry keys).
    """
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        impl = str(jax.random.key_impl(key))
        if impl != "threefry2x32":
            raise ValueError(f"PRNG key: hyperjax takes threefry2x32 keys (jax.random.key(0) or "
                             f"jax.random.PRNGKey(0)), got a {impl} key")
        return jax.random.key_data(key)
    return key


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
    sees the old file or the new one, never half of one. ``path`` should end in ``.npz``.

    Raises:
      OSError: the write failed (a full disk): naming ``path``; no temporary file is left."""
    import numpy as np
    tmp = path + ".tmp.npz"
    try:
        np.savez(tmp, **arrays)
    except OSError as e:      # a full disk: no half file left behind, the error names the file
        with contextlib.suppress(OSError):
            os.remove(tmp)
        if e.filename is None:
            raise OSError(e.errno, e.strerror, path) from e
        raise
    os.replace(tmp, path)


def os_error_line(e: OSError, where: str = "") -> str:
    """One line for a failed write, e.g. ``cannot write runs/x/metrics.jsonl: No space left on
    device (errno 28)``; ``where`` names the place when the error carries no file name."""
    path = e.filename or where
    reason = f"{e.strerror} (errno {e.errno})" if e.strerror else str(e)
    return f"cannot write{' ' + str(path) if path else ''}: {reason}"


def fail(msg: str, code: int = 2):
    """The CLIs' error exit: ``error: MSG`` on one stderr line, exit status ``code``."""
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(code)


def read_json(path: str):
    """The JSON value in ``path`` (a run's ``config.json``, ``summary.json``, ...).

    Raises:
      ValueError: the file cannot be read or is not JSON, naming the file (a damaged record
        says which, not only the decoder's position).
    """
    try:
        with open(path) as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is damaged (not JSON: {e.msg}, line {e.lineno}); restore it "
                         f"or remove the run") from None
    except OSError as e:
        raise ValueError(f"{path}: cannot read it ({e.strerror})") from None


def refuse_positional(argv) -> None:
    """Ends the process like ``fail`` when ``argv`` (absl's, the program first) holds words
    that are not flags: a boolean flag takes no value, so ``--overwrite false`` would set
    ``--overwrite`` and leave ``false`` unread."""
    if len(argv) > 1:
        fail(f"unexpected argument(s) {' '.join(map(repr, argv[1:]))}: flags take "
             f"--name=value; a boolean is --name or --noname (e.g. --nooverwrite)")


def absl_flags_parser(flag_values):
    """A ``flags_parser`` for ``absl.app.run`` that turns a flag error into one line + exit 2."""
    from absl import flags

    def parse(argv):
        try:
            return flag_values(argv)
        except flags.Error as e:
            fail(str(e).splitlines()[0])

    return parse
