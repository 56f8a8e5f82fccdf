# pytest plugin (results/test_time/README.md, 2026-12-07 sixth session): per test, start and end
# (seconds since the epoch), the xdist worker, and JAX's compile events inside the test
# (backend compile, jaxpr trace, MLIR lowering; nested traces count in their parents too) and
# persistent-cache hits / misses. Use: PYTHONPATH=results/test_time TL_OUT=DIR pytest ... -p timeline_plugin
import json, os, time
import pytest
_OUT = os.environ.get("TL_OUT", "/tmp/tl/out")
_cur = {"compile": 0.0, "trace": 0.0, "lower": 0.0, "hits": 0, "misses": 0, "nb": 0}

def _dur(event, duration_secs, **kw):
    if event.endswith("backend_compile_duration"):
        _cur["compile"] += duration_secs; _cur["nb"] += 1
    elif event.endswith("jaxpr_trace_duration"):
        _cur["trace"] += duration_secs
    elif event.endswith("jaxpr_to_mlir_module_duration"):
        _cur["lower"] += duration_secs

def _ev(event, **kw):
    if event == "/jax/compilation_cache/cache_hits": _cur["hits"] += 1
    elif event == "/jax/compilation_cache/cache_misses": _cur["misses"] += 1

def pytest_configure(config):
    import jax
    jax.monitoring.register_event_duration_secs_listener(_dur)
    jax.monitoring.register_event_listener(_ev)

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    for k in _cur: _cur[k] = 0 if isinstance(_cur[k], int) else 0.0
    t0 = time.time()
    yield
    t1 = time.time()
    w = os.environ.get("PYTEST_XDIST_WORKER", "main")
    os.makedirs(_OUT, exist_ok=True)
    with open(os.path.join(_OUT, w + ".jsonl"), "a") as f:
        f.write(json.dumps(dict(id=item.nodeid, t0=t0, t1=t1, **_cur)) + "\n")
