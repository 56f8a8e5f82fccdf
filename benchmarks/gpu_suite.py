"""The prepared GPU suite: one command that fits a device lease, writing figures and logs.

    python benchmarks/gpu_suite.py                     # on one H100 / H200, <= --minutes
    python benchmarks/gpu_suite.py --tiny --out=/tmp/x  # the same stages at a tiny size (CPU)

Stages, in priority order, each started only while its estimated time still fits before the
deadline (``--minutes``, default 9: a device command may run 10):

1. throughput (``benchmarks/train_throughput.py`` cells, one subprocess each): DI, DMA*-SH
   and DR at ``--seeds`` vmapped seeds (default 8 and 128; 1 and 32 when ``--all_seeds``),
   and Cheetah DR at 8 seeds; ``throughput.json`` and a table in ``suite.log``.
2. Cartpole at the paper's budget (100,000 gradient steps; the authors'
`dmash/contexts/context.py`): DR, Concat and
   DMA*-SH, ``--study_seeds`` seeds (5), through the study command into ``cartpole/`` (report,
   figures, per-pair runs). The study is resumable pair by pair: a second call with the same
   ``--out`` continues what a deadline cut.

Everything goes under ``--out`` (default ``results/gpu/<device>-<date>/``) and, for the
device tool's eight returned files, also into one ``gpu_suite.tar.gz`` beside ``suite.log``
and ``summary.json``.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tarfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# this process only measures the matmul rate and names the device; the cells and the study run
# in subprocesses, which must find the GPU's memory free
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")


def _device_name() -> str:
    import jax
    d = jax.devices()[0]
    return (d.device_kind if d.platform != "cpu" else "cpu").lower().replace(" ", "-")


class Deadline:
    def __init__(self, minutes: float):
        self.end = time.time() + 60 * minutes

    def left(self) -> float:
        return self.end - time.time()


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None)
    ap.add_argument("--minutes", type=float, default=9.0)
    ap.add_argument("--seeds", default="8,128")
    ap.add_argument("--all_seeds", action="store_true", help="throughput at 1, 8, 32, 128")
    ap.add_argument("--study_seeds", type=int, default=5)
    ap.add_argument("--tiny", action="store_true", help="tiny sizes, for the CPU test")
    args = ap.parse_args(argv)
    day = datetime.date.today().isoformat()
    out = os.path.abspath(args.out or os.path.join(ROOT, "results", "gpu",
                                                   f"{_device_name()}-{day}"))
    os.makedirs(out, exist_ok=True)
    log_path = os.path.join(out, "suite.log")
    log = open(log_path, "a")

    def say(msg):
        print(msg, flush=True)
        log.write(msg + "\n")
        log.flush()

    deadline = Deadline(args.minutes)
    summary = dict(date=day, device=_device_name(), tiny=args.tiny, stages={})
    say(f"gpu_suite: {summary['device']}, deadline {args.minutes} min, out {out}")

    # 1. throughput ---------------------------------------------------------------------------
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    import train_throughput as tt
    seeds = "1,8,32,128" if args.all_seeds else args.seeds
    cells = [("di", a, int(s)) for s in seeds.split(",") for a in ("dma_sh", "dr")]
    cells.append(("cheetah", "dr", 8))
    episodes, est = 2, 90.0  # seconds a cell may take (compile + 2 timed episodes)
    if args.tiny:
        cells, episodes, est = [("di", "dr", 1)], 1, 5.0
    peak = tt.matmul_gflops(512 if args.tiny else 8192)
    summary["matmul_gflops"] = peak
    say(f"float32 matmul ({512 if args.tiny else 8192}^3): {peak:,.0f} GFLOP/s")
    results = []
    for task, algo, n in cells:
        if deadline.left() < est:
            say(f"throughput {task} {algo} {n} seeds: skipped (deadline)")
            continue
        targs = argparse.Namespace(episodes=episodes, total_steps=100_000, no_warm=task != "di",
                                   cell_timeout=int(max(30, deadline.left())))
        r, err = tt._cell(targs, algo, task, n, 0)
        if r is None:
            say(f"throughput {task} {algo} {n} seeds: FAILED ({err})")
            continue
        results.append(r)
        say(f"throughput {task:<8} {algo:<7} {n:>4} seeds: compile {r['compile_s']:.1f} s, "
            f"{r['seed_grad_steps_per_s']:,.0f} seed-steps/s, {r['env_steps_per_s']:,.0f} env "
            f"steps/s, {r['gflops']:.1f} GFLOP/s ({r['gflops'] / peak:.0%} of the matmul), "
            f"peak {r['peak_mib']:.0f} MiB")
    with open(os.path.join(out, "throughput.json"), "w") as f:
        json.dump(results, f, indent=1)
    summary["stages"]["throughput"] = len(results)

    # 2. Cartpole at the paper's budget ------------------------------------------------------
    study = os.path.join(out, "cartpole")
    cmd = [sys.executable, "-m", "experiments.aib", "--algo=dr,concat,dma_sh",
           f"--seeds={1 if args.tiny else args.study_seeds}", f"--out_dir={study}"]
    cmd += (["--env=di", "--total_steps=20", "--eval_every=10", "--learning_starts=100",
             "--eval_episodes=1", "--bootstrap_reps=100", "--diagnostics=false",
             "--random_baseline=false"] if args.tiny
            else ["--env=cartpole", "--total_steps=100000"])
    if os.path.isdir(study) and os.listdir(study):
        cmd.append("--resume")
    if deadline.left() > 60:
        say("study: " + " ".join(cmd[1:]))
        t0 = time.time()
        try:
            res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                                 timeout=max(10, deadline.left() - 20))
            log.write(res.stdout + res.stderr)
            status = "done" if res.returncode == 0 else f"exit {res.returncode}"
        except subprocess.TimeoutExpired as e:
            log.write((e.stdout or b"").decode() if isinstance(e.stdout, bytes) else
                      (e.stdout or ""))
            status = "cut by the deadline (resumable: run again with the same --out)"
        say(f"study: {status} after {time.time() - t0:.0f} s")
        summary["stages"]["study"] = status
    else:
        say("study: skipped (deadline)")
        summary["stages"]["study"] = "skipped"

    summary["seconds"] = round(args.minutes * 60 - deadline.left(), 1)
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    log.close()
    with tarfile.open(os.path.join(out, "gpu_suite.tar.gz"), "w:gz") as tar:
        for name in sorted(os.listdir(out)):
            if name != "gpu_suite.tar.gz":
                tar.add(os.path.join(out, name), arcname=name)
    return summary


if __name__ == "__main__":
    sys.path.insert(0, ROOT)
    main()
