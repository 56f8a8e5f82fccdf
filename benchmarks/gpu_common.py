"""What the prepared HyPoGen GPU scripts (gpu_hypogen.py, gpu_manipulation.py) share: the device
name, the deadline-aware model stage through the pipeline CLI, and the tarball of small files."""
from __future__ import annotations

import os
import subprocess
import tarfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def device_name() -> str:
    import jax
    d = jax.devices()[0]
    return (d.device_kind if d.platform != "cpu" else "cpu").lower().replace(" ", "-")


def run_models(cmd: list, algos: list, end: float, say, log, summary: dict) -> None:
    """Runs ``cmd --algo=A`` for each algo until the deadline ``end`` (time.time()), each cut
    15 s before it if need be (resumable: the CLI skips what is done), then one table over the
    finished ones. Statuses go to ``summary["stages"]``."""
    for algo in algos:
        left = end - time.time()
        if left < 30:
            say(f"{algo}: skipped (deadline)")
            summary["stages"][algo] = "skipped"
            continue
        say(f"{algo}: {' '.join(cmd[1:])} --algo={algo}")
        t0 = time.time()
        try:
            res = subprocess.run(cmd + [f"--algo={algo}"], cwd=ROOT, capture_output=True,
                                 text=True, timeout=max(10, left - 15))
            log.write(res.stdout + res.stderr[-4000:])
            status = "done" if res.returncode == 0 else f"exit {res.returncode}"
        except subprocess.TimeoutExpired as e:
            text = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
            log.write(text)
            status = "cut by the deadline (resumable: run again with the same --out)"
        say(f"{algo}: {status} after {time.time() - t0:.0f} s")
        summary["stages"][algo] = status
    done = [a for a in algos if summary["stages"].get(a) == "done"]
    if len(done) > 1:  # one table over the finished models (each is read back, not rerun)
        res = subprocess.run(cmd + [f"--algo={','.join(done)}"], cwd=ROOT,
                             capture_output=True, text=True, timeout=600)
        log.write(res.stdout + res.stderr[-2000:])


RUN_FILES = ("results.md", "results.json", "log.jsonl", "result.json", "experts_log.jsonl")


def write_tarball(out: str, run_dir: str, name: str) -> str:
    """``out/name``: run.log, probe.json, summary.json and the run directory's small files."""
    small = [n for n in ("run.log", "probe.json", "summary.json") if os.path.exists(
        os.path.join(out, n))]
    for root, _, files in os.walk(run_dir):
        small += [os.path.relpath(os.path.join(root, n), out) for n in files if n in RUN_FILES]
    path = os.path.join(out, name)
    with tarfile.open(path, "w:gz") as tar:
        for n in sorted(small):
            tar.add(os.path.join(out, n), arcname=n)
    return path


def start(out_arg: str | None, what: str, minutes: float):
    """The run's output folder (``--out`` or ``results/gpu/<device>-<date>/<what>/``), its
    ``run.log`` (append), ``say(msg)`` printing and logging a line, the deadline
    (time.time() + minutes) and the date. Returns ``(out, log, say, end, day)``."""
    import datetime
    day = datetime.date.today().isoformat()
    out = os.path.abspath(out_arg or os.path.join(ROOT, "results", "gpu",
                                                  f"{device_name()}-{day}", what))
    os.makedirs(out, exist_ok=True)
    log = open(os.path.join(out, "run.log"), "a")

    def say(msg):
        print(msg, flush=True)
        log.write(msg + "\n")
        log.flush()

    return out, log, say, time.time() + 60 * minutes, day
