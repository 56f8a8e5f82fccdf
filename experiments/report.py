"""One report over any runs and studies: ``python -m experiments.report DIR [DIR ...] --out=DIR``.

Each DIR is a run directory (``experiments.aib``'s: ``config.json``, ``metrics.jsonl``,
``summary.json``), a study directory holding run directories, a folder of either, or a
``study.json`` (studies committed without their runs). Runs are grouped by (task, method) and
their seeds pooled (seed counts may differ); the report (``report.md``, ``study.json``,
``plots/``) has per-task AER tables, the IQM table per regime x overlap class with stratified
bootstrap CIs, DMA*-SH's relative gains as ratios of IQMs with bootstrap CIs and probabilities
of improvement, and the paper's figures beside ours (v1's headline, v2's Tables 2 and 9 and
its IQM table) with a verdict (``hyperjax.analysis.collect``, ``report``, ``paper``).

Runs of one task at different budgets, or of different code versions, are refused in one line
naming them unless ``--allow_mixed``; the report then lists what it pooled. One run never
counts twice: a study's cell gives way to the run directories it pooled when they are given
too, and a copy of a run directory is refused, ``--allow_mixed`` or not. A damaged or
unfinished run directory is named and skipped (``--strict``: refused). Bad input: one line,
exit 2.
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags, logging  # noqa: E402

from hyperjax.utils import absl_flags_parser, fail  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("out", None, "Directory for report.md, study.json and plots/ (created).")
flags.DEFINE_bool("allow_mixed", False, "Pool runs of one task at different budgets, or of "
                  "different code versions (the report lists what it pooled).")
flags.DEFINE_bool("strict", False, "Refuse a damaged or unfinished run directory instead of "
                  "skipping it.")
flags.DEFINE_integer("bootstrap_reps", 5000, "Bootstrap resamples for every interval (the "
                     "authors' 5,000).")


def main(argv):
    logging.set_verbosity(logging.WARNING)  # rliable logs every interval at INFO
    dirs = argv[1:]
    if not dirs:
        fail("name at least one run or study directory: python -m experiments.report DIR "
             "[DIR ...] --out=DIR")
    if not FLAGS.out:
        fail("--out: the directory to write the report into is required")
    if FLAGS.bootstrap_reps < 100:
        fail(f"--bootstrap_reps must be at least 100, got {FLAGS.bootstrap_reps}")
    from hyperjax.analysis import collect
    from hyperjax.analysis.study import write_study
    try:
        runs, skipped = collect.load(dirs, strict=FLAGS.strict)
        for line in skipped:
            print(f"skipped: {line}", flush=True)
        study = collect.merge(runs, allow_mixed=FLAGS.allow_mixed)
    except collect.CollectError as e:
        fail(str(e))
    try:
        path = write_study(study, FLAGS.out, FLAGS.bootstrap_reps)
    except OSError as e:
        fail(f"--out={FLAGS.out}: cannot write the report ({e.strerror})")
    print(f"report: {path} ({len(runs)} source(s), {len(study.envs)} task(s), "
          f"{len(study.algos)} method(s))", flush=True)


if __name__ == "__main__":
    app.run(main, flags_parser=absl_flags_parser(FLAGS))
