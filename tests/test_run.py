"""``hyperjax.run`` (the library's run driver, ``train_run``): its options as one record, a
finished run read back and its rows rebuilt from the checkpoint record (or read from its
metrics when its checkpoints are gone, refused when neither can), a resume over a damaged
newest checkpoint that reproduces the run bit for bit. (Kill-and-resume against the CLI:
test_cli.py; the run directory and its lock: test_rundir.py; the non-finite guard:
test_guards.py.)"""
import dataclasses
import os
import shutil

import pytest

import hyperjax as hj
from hyperjax import checkpoint

from cli_cases import aib, aib_inprocess, cli_with_file_limit, one_line_error, read_rows as _rows

TINY = ["--algo=dr", "--env=di", "--total_steps=300", "--eval_every=100",
        "--learning_starts=100", "--eval_episodes=1", "--report=false",
        "--random_baseline=false"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished tiny DR run (4 segments; checkpoints 3 and 4 kept) and a pristine copy."""
    d = str(tmp_path_factory.mktemp("fin") / "run")
    res = aib(*TINY, f"--out_dir={d}")
    assert res.returncode == 0, res.stderr[-3000:]
    assert checkpoint.all_steps(os.path.join(d, "checkpoints")) == [3, 4]
    return d


@pytest.mark.parametrize("damage", ["deleted", "cut mid-line", "cut to whole lines"])
def test_a_finished_runs_metrics_are_rebuilt_from_the_checkpoint_record(finished, tmp_path,
                                                                       damage):
    d = str(tmp_path / "run")
    shutil.copytree(finished, d)
    path = os.path.join(d, "metrics.jsonl")
    text = open(path).read()
    if damage == "deleted":
        os.remove(path)
    elif damage == "cut mid-line":
        open(path, "w").write(text[: len(text) // 2 + 7])
    else:
        open(path, "w").write("".join(text.splitlines(True)[:5]))
    res = aib(*TINY, f"--out_dir={d}", "--resume")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "rewritten from checkpoint 4" in res.stdout
    assert open(path).read() == text


def test_a_finished_run_without_checkpoints_is_read_back_from_its_metrics(finished, tmp_path):
    """Its checkpoints deleted (or its files copied without them, as results/ keeps runs): a
    resume reads the run back from ``metrics.jsonl`` and compiles nothing; no file changes."""
    d = str(tmp_path / "run")
    shutil.copytree(finished, d)
    shutil.rmtree(os.path.join(d, "checkpoints"))
    before = {f: open(os.path.join(d, f)).read() for f in ("metrics.jsonl", "summary.json")}
    res = aib(*TINY, f"--out_dir={d}", "--resume")
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"di/dr: finished earlier; read from {d} (metrics.jsonl; no final checkpoint)" \
        in res.stdout and "compiled in" not in res.stdout
    assert {f: open(os.path.join(d, f)).read() for f in before} == before


def test_a_finished_run_that_cannot_be_read_back_is_refused_not_retrained(finished, tmp_path,
                                                                          capsys):
    """No checkpoint and a ``metrics.jsonl`` short of its last evaluation: one line, exit 2,
    and the run's files stay as they were (training again would overwrite them)."""
    d = str(tmp_path / "run")
    shutil.copytree(finished, d)
    shutil.rmtree(os.path.join(d, "checkpoints"))
    path = os.path.join(d, "metrics.jsonl")
    open(path, "w").write("".join(open(path).read().splitlines(True)[:-1]))
    before = {f: open(os.path.join(d, f)).read() for f in ("metrics.jsonl", "summary.json")}
    one_line_error(aib_inprocess(capsys, *TINY, f"--out_dir={d}", "--resume"),
                   r"holds a finished run \(summary.json\) but no checkpoint and no complete "
                   r"metrics.jsonl .* pass --overwrite to train it again$")
    assert {f: open(os.path.join(d, f)).read() for f in before} == before


def test_resume_skips_a_damaged_latest_checkpoint_and_reproduces_the_run(finished, tmp_path):
    """A run killed after its 4th checkpoint whose newest checkpoint is damaged resumes from
    checkpoint 3 and ends with the same rows, bit for bit (resume is exact)."""
    d = str(tmp_path / "run")
    shutil.copytree(finished, d)
    os.remove(os.path.join(d, "summary.json"))   # as if killed before the end
    os.remove(os.path.join(d, "checkpoints", "4", "state", "_METADATA"))
    res = aib(*TINY, f"--out_dir={d}", "--resume")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "checkpoint 4 skipped: it does not restore" in res.stdout
    assert "resumed from checkpoint after 3 segment(s)" in res.stdout
    assert _rows(d) == _rows(finished)


def test_a_full_disk_stops_the_run_in_one_line_and_a_resume_reproduces_it(finished, tmp_path):
    """The disk fills before checkpoint 4 (a file size limit: checkpoint 3's files fit, the
    next replay buffer does not): exit 2, one line naming the checkpoint and the OS error, no
    orbax or tensorstore traceback; checkpoint 3 stays, and a resume once there is room ends
    with the finished run's rows, bit for bit."""
    d = str(tmp_path / "run")
    shutil.copytree(finished, d)
    os.remove(os.path.join(d, "summary.json"))                    # killed after checkpoint 3
    shutil.rmtree(os.path.join(d, "checkpoints", "4"))
    res = cli_with_file_limit(20_000, "experiments.aib", *TINY, f"--out_dir={d}", "--resume")
    assert res.returncode == 2, res.stderr[-3000:]
    assert res.stderr.strip().splitlines() == [
        f"error: checkpoint 4 in {d}/checkpoints could not be written (File too large (errno "
        f"27)); checkpoints kept: [3]"], res.stderr[-3000:]
    assert checkpoint.all_steps(os.path.join(d, "checkpoints")) == [3]
    res = aib(*TINY, f"--out_dir={d}", "--resume")
    assert res.returncode == 0, res.stderr[-3000:]
    assert _rows(d) == _rows(finished)


def test_a_failed_writes_os_reason_is_read_from_tensorstore_or_the_chain():
    """What the full-disk line names: ENOSPC as tensorstore reports it (the real disk-full
    case the file-size test above stands in for), an OSError under a wrapper, else the first
    line of the error."""
    reason = checkpoint._os_reason
    assert reason(ValueError("OUT_OF_RANGE: Error writing \"x/0\" ... Failed to write 9 bytes "
                             "to file 14: No space left on device [os_error_code='28']")) == \
        "No space left on device (errno 28)"
    try:
        try:
            raise OSError(28, "No space left on device", "/x")
        except OSError as e:
            raise ValueError("wrapped") from e
    except ValueError as e:
        assert reason(e) == "No space left on device (errno 28)"
    assert reason(RuntimeError("odd\nsecond line")) == "RuntimeError: odd"


def test_train_run_options_are_one_record_and_unknown_ones_are_named(tmp_path):
    """``train_run(cfg, dir, RunOptions(...), **fields)``: keyword fields replace the record's;
    a misspelt one is refused in one line before anything is created or compiled."""
    cfg = hj.Config(algo="dr", total_steps=20, eval_every=10, learning_starts=100)
    with pytest.raises(ValueError, match=r"unknown option\(s\) sead; RunOptions has seeds, "):
        hj.train_run(cfg, str(tmp_path / "run"), hj.RunOptions(seeds=2), sead=3)
    assert not os.path.exists(tmp_path / "run")
    opts = dataclasses.replace(hj.RunOptions(seeds=2), sweep=("q_lr=1e-3",))
    assert opts.record(cfg.resolved())["seeds"] == 2
    assert opts.record(cfg.resolved())["sweep"] == ["q_lr=1e-3"]


def test_keep_checkpoints_must_keep_one():
    with pytest.raises(ValueError, match=r"keep_checkpoints must be >= 1, got 0"):
        hj.RunOptions(keep_checkpoints=0)
