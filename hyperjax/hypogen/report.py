"""The HyPoGen pipeline's report: the results table over algos and seeds beside the expert
and the uniform-random policy, one row per spec, the manipulation tasks' success table
(paper Table 2), the paper's breakdowns (successful episodes only, Tables 24 / 25; in- and
out-of-distribution specs, Tables 26–29; the BC loss per block, Table 4) and the per-spec
return plot (Figs. 5–9 style)."""
from __future__ import annotations

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from hyperjax.envs.manipulation import EPISODE_LENGTH  # noqa: E402
from hyperjax.hypogen import paper, specs  # noqa: E402
from hyperjax.hypogen.config import PipelineConfig  # noqa: E402

__all__ = ["breakdowns", "paper_lines", "plot_per_spec", "report"]


def _num(v, spec: str) -> str:
    """``v`` formatted by ``spec``, or "–" where there is no figure (None or NaN: no expert
    under ``--expert_specs``, no successful episode)."""
    return "–" if v is None or np.isnan(v) else format(v, spec)


def report(cfg: PipelineConfig, grid, ds, results: dict,
           random_return) -> tuple[list[str], dict]:
    """The results table (markdown lines) and its numbers: per method the held-out return at
    the last epoch (the headline: nothing was chosen on it), at the epoch chosen on separate
    selection episodes, and on the training specs (BC check); the expert's and the
    uniform-random policy's returns (``random_return float[S]``,
    ``stages.stage_random_floor``) on the same specs; then one row per spec (first seed)."""
    seeds, epochs = cfg.seed_list, cfg.epochs
    splits = [specs.split_specs(grid, s, cfg.split, cfg.test_fraction) for s in seeds]
    rand = np.asarray(random_return, np.float64)
    has_expert = np.asarray(ds.meta.get("expert_trained", [True] * len(grid)))
    ex = np.where(has_expert, ds.returns().mean(-1), np.nan)
    on = lambda v, key: float(np.mean([v[getattr(sp, key)].mean() for sp in splits]))
    keys = ("test_return_last", "test_return_selected", "train_return_last")
    table = {a: {k: (float(np.mean([r[k] for r in rs])), float(np.std([r[k] for r in rs])))
                 for k in keys} for a, rs in results.items()}
    fmt = lambda v: f"{v[0]:.2f} ± {v[1]:.2f}"
    lines = [f"# {cfg.task}: zero-shot return on held-out specs", "",
             f"{len(grid)} specs ({len(splits[0].train)} train / {len(splits[0].test)} test, "
             f"split {cfg.split}"
             + ("" if cfg.split in ("fig4", "maniskill") else
                f", test fraction {cfg.test_fraction}") + f"), {len(seeds)} seed(s), "
             f"{epochs} epochs; mean ± std over seeds. Reported episodes are never used to "
             f"choose anything: 'selected' is the epoch chosen on other episodes (other start "
             f"states) of the same test specs.", "",
             "| method | held-out, last epoch | held-out, selected epoch | train specs, last "
             "epoch | train specs, normalised |", "|---|---|---|---|---|"]
    ex_train, ex_test = on(ex, "train"), on(ex, "test")
    rand_train = on(rand, "train")
    for a, v in table.items():
        norm = (v["train_return_last"][0] - rand_train) / (ex_train - rand_train)
        lines.append(f"| {a} | {fmt(v['test_return_last'])} | {fmt(v['test_return_selected'])}"
                     f" | {fmt(v['train_return_last'])} | {norm:.0%} |")
    lines.append(f"| expert (recorded episodes) | {_num(ex_test, '.2f')} | | "
                 f"{_num(ex_train, '.2f')} | |")
    lines.append(f"| uniform random | {on(rand, 'test'):.2f} | | {on(rand, 'train'):.2f} | |")
    if cfg.task in paper.TABLE1:   # Table 2's tasks: beside the success table below
        ours = {a: v["test_return_last"][0] for a, v in table.items()} | {"expert": ex_test}
        lines += paper_lines(cfg.task, ours)
    summary = {"table": table, "expert_test": ex_test, "expert_train": ex_train,
               "random_test": on(rand, "test"), "random_train": on(rand, "train"),
               "expert_per_spec": ex.tolist(), "random_per_spec": rand.tolist(),
               "specs": grid.specs.tolist()}
    sp = splits[0]
    role = {int(i): "train" for i in sp.train} | {int(i): "test" for i in sp.test}
    speed = ds.meta.get("expert_speed")
    head = "| spec | role | random | expert |" + (" expert speed |" if speed else "")
    head += "".join(f" {a} |" for a in results)
    lines += ["", f"Per spec (seed {seeds[0]}; models at the last epoch):", "", head,
              "|" + "---|" * (head.count("|") - 1)]
    per = {a: {} for a in results}
    for a, rs in results.items():
        r0 = rs[0]
        per[a].update(zip(r0["test_ids"], r0["per_spec_last"]))
        per[a].update(zip(r0["train_ids"], r0["per_train_spec_last"]))
    for i in range(len(grid)):
        row = (f"| {specs.spec_string(grid.specs[i])} | {role.get(i, 'unused')} | "
               f"{rand[i]:.1f} | {_num(ex[i], '.1f')} |")
        if speed:
            row += f" {speed[i]:.2f} |"
        row += "".join(f" {per[a][i]:.1f} |" if i in per[a] else " |" for a in results)
        lines.append(row)
    learned = ex > rand + 0.1 * np.abs(rand)
    summary["expert_beats_random"] = learned.tolist()
    lines += ["", f"Experts clearly above the uniform-random policy (by more than 10 %): "
              f"{int(learned.sum())} of {int(has_expert.sum())} specs with an expert"
              + ("" if learned[has_expert].all() else " (not: " + ", ".join(
                  specs.spec_string(grid.specs[i])
                  for i in np.flatnonzero(~learned & has_expert)) + ")")
              + "."]
    if speed:
        target = grid.specs[:, list(grid.factors).index("speed")]
        speed = np.asarray(speed)
        r = float(np.corrcoef(target, speed)[0, 1])
        summary["speed_correlation"] = r
        lines += ["", f"Pearson correlation of target speed and the experts' achieved mean "
                  f"speed: {r:.3f} over the {len(grid)} specs"]
        if 2 < learned.sum() < len(grid):
            r2 = float(np.corrcoef(target[learned], speed[learned])[0, 1])
            summary["speed_correlation_learned"] = r2
            lines[-1] += f", {r2:.3f} over the {int(learned.sum())} whose expert learned"
        lines[-1] += "."
    if "expert_success" in ds.meta:
        ex_ok = np.where(has_expert, ds.meta["expert_success"], np.nan)
        ex_len = np.where(has_expert, ds.meta["expert_length"], np.nan)
        lines += ["", "Success rate and mean episode length on the held-out specs (paper Table 2; "
                  f"{EPISODE_LENGTH}-step cap, success ends the episode):", "",
                  "| method | success, last epoch | length, last epoch | success, selected epoch |",
                  "|---|---|---|---|"]
        summary["success"] = {}
        for a, rs in results.items():
            v = {k: float(np.mean([r[k] for r in rs])) for k in
                 ("test_success_last", "test_length_last", "test_success_selected")}
            summary["success"][a] = v
            lines.append(f"| {a} | {v['test_success_last']:.1%} | {v['test_length_last']:.1f} | "
                         f"{v['test_success_selected']:.1%} |")
        summary["expert_success_test"] = on(ex_ok, "test")
        summary["expert_success_train"] = on(ex_ok, "train")
        lines.append(f"| expert (recorded episodes) | {_num(on(ex_ok, 'test'), '.1%')} | "
                     f"{_num(on(ex_len, 'test'), '.1f')} | |")
        ours = {a: (v["test_success_last"], v["test_length_last"])
                for a, v in summary["success"].items()}
        lines += paper_lines(cfg.task, ours | {"expert": (on(ex_ok, "test"),
                                                           on(ex_len, "test"))})
        lines += ["", "Expert success per spec: " + ", ".join(
            f"{specs.spec_string(grid.specs[i])}: "
            + (f"{ex_ok[i]:.0%}" if has_expert[i] else "no expert (--expert_specs=train)")
            for i in range(len(grid))) + "."]
    ft = {a: [r["test_return_finetuned"] for r in rs if "test_return_finetuned" in r]
          for a, rs in results.items()}
    for a, v in ft.items():
        if v:
            summary.setdefault("finetuned", {})[a] = float(np.mean(v))
            lines += ["", f"{a} after test-time fine-tuning on each test spec's recorded expert "
                      f"episodes (not zero-shot): {np.mean(v):.2f}."]
    lines += ["", "Normalised = (model − random) / (expert − random) on the training specs: the "
              "share of the expert's margin over chance that behaviour cloning recovered. The "
              "expert column averages its recorded demonstration episodes; the models and the "
              "random policy run their own episodes (same start-state distribution)."]
    more, summary["breakdowns"] = breakdowns(cfg, results)
    return lines + more, summary


def paper_lines(task: str, ours: dict) -> list[str]:
    """Our held-out figures beside the paper's cells (``hyperjax.hypogen.paper``) as markdown
    lines, or ``[]`` for a task the paper's Tables 1 / 2 do not have.

    Args:
      task: the pipeline's task name (``cheetah_speed``, ``lift_cube_stiffness``, ...).
      ours: per algo (and ``"expert"``) the held-out figure at the last epoch: a return
        (Table 1 tasks), or ``(success rate in [0, 1], mean episode length in steps)``
        (Table 2 tasks); NaN where there is none (no expert). Algos the paper lacks are left
        out.
    """
    rows = [a for a in paper.ALGOS if a in ours]
    if task in paper.TABLE1:
        lines = ["", f"Beside the paper (Table 1, {task}: its full budget, 1M-step TD3 "
                 "experts and 2,000 epochs; ours at this run's budget, last epoch):", "",
                 "| method | ours, held-out return | paper | ours / paper |", "|---|---|---|---|"]
        for a in rows:
            want = paper.TABLE1[task][a]
            lines.append(f"| {a} | {_num(ours[a], '.1f')} | {want:.2f} | "
                         f"{_num(ours[a] / want, '.0%')} |")
        return lines
    if task in paper.TABLE2:
        lines = ["", f"Beside the paper (Table 2, {task}: success % and episode length on the "
                 "held-out specs, 100 rollouts per spec; ours at this run's budget, last "
                 "epoch):", "",
                 "| method | ours, success | paper, success | ours, length | paper, length |",
                 "|---|---|---|---|---|"]
        for a in rows:
            ok, steps = ours[a]
            want_ok, want_steps = paper.TABLE2[task][a]
            lines.append(f"| {a} | {_num(100 * ok, '.1f')} % | {want_ok:.2f} % | "
                         f"{_num(steps, '.1f')} | {want_steps:.2f} |")
        return lines
    return []


def _mean_std(values) -> tuple[float, float, int]:
    v = np.asarray(values, np.float64).ravel()
    return (float(v.mean()), float(v.std()), int(v.size)) if v.size else (np.nan, np.nan, 0)


def breakdowns(cfg: PipelineConfig, results: dict) -> tuple[list[str], dict]:
    """The paper's breakdowns of the held-out episodes at the last epoch, from each result's
    per-episode fields (``stages.train_one``; results written before them are left out):

    - successful episodes only (App. C.6, Tables 24 / 25): DMC tasks' returns of the episodes
      the failure rule passes (``data.mujoco_failed``), manipulation tasks' episode lengths of
      the successful ones; mean ± std over every such episode of every seed, and their count;
    - in- and out-of-training-distribution specs (App. C.7, Tables 26–29,
      ``specs.in_training_distribution``): mean return (manipulation: success rate and
      episode length) over each group's specs, mean ± std over seeds;
    - Table 4: HyPoGen's BC loss on the training specs after each block θ¹ … θᴷ
      (``train.blockwise_bc``), mean over seeds.

    Returns the markdown lines and ``{"success_only", "distribution", "blockwise_bc"}``.
    """
    lines, out = [], {"success_only": {}, "distribution": {}, "blockwise_bc": {}}
    runs = {a: [r for r in rs if "episode_returns_last" in r] for a, rs in results.items()}
    runs = {a: rs for a, rs in runs.items() if rs}
    if not runs:
        return lines, out
    manip = cfg.is_manipulation
    if any("episode_success_last" in r for rs in runs.values() for r in rs):
        what = "episode length" if manip else "return"
        rule = ("success ends the episode before the cap" if manip else
                "failed: reward below 0.05 for 50 consecutive steps (App. C.6)")
        lines += ["", f"Held-out {what} over the successful episodes only (paper Table "
                  f"{25 if manip else 24}; {rule}), last epoch, every seed's episodes:", "",
                  f"| method | {what} (successful) | successful episodes |", "|---|---|---|"]
        for a, rs in runs.items():
            vals, n_all = [], 0
            for r in rs:
                ok = np.asarray(r["episode_success_last"], bool)
                v = np.asarray(r["episode_length_last" if manip else "episode_returns_last"])
                vals.append(v[ok])
                n_all += ok.size
            m, sd, n = _mean_std(np.concatenate(vals))
            out["success_only"][a] = {"mean": m, "std": sd, "count": n, "episodes": n_all}
            cell = "–" if n == 0 else f"{m:.2f} ± {sd:.2f}"
            lines.append(f"| {a} | {cell} | {n} of {n_all} |")
    head = ("| method | specs in / out | success in | success out | length in | length out |"
            if manip else "| method | specs in / out | return in | return out |")
    lines += ["", "Held-out specs within one standard deviation of the training specs on every "
              "factor (in-distribution) and the others (paper Tables "
              f"{'28 / 29' if manip else '26 / 27'}), last epoch, mean ± std over seeds:", "",
              head, "|" + "---|" * (head.count("|") - 1)]
    for a, rs in runs.items():
        cols = {}
        for r in rs:
            inside = specs.in_training_distribution(r["test_specs"], r["train_specs"])
            per = {"return": np.asarray(r["episode_returns_last"]).mean(-1)}
            if manip and "episode_success_last" in r:
                per["success"] = np.asarray(r["episode_success_last"], float).mean(-1)
                per["length"] = np.asarray(r["episode_length_last"], float).mean(-1)
            for k, v in per.items():
                for where, mask in (("in", inside), ("out", ~inside)):
                    cols.setdefault(f"{k}_{where}", []).append(
                        float(v[mask].mean()) if mask.any() else np.nan)
            cols.setdefault("n_in", []).append(int(inside.sum()))
            cols.setdefault("n_out", []).append(int((~inside).sum()))
        row = {k: (float(np.mean(v)), float(np.std(v))) for k, v in cols.items()}
        out["distribution"][a] = row
        fmt = lambda k, f: ("–" if k not in row or np.isnan(row[k][0]) else
                            f"{format(row[k][0], f)} ± {format(row[k][1], f)}")
        n = f"{row['n_in'][0]:g} / {row['n_out'][0]:g}"
        lines.append(f"| {a} | {n} | " + (
            f"{fmt('success_in', '.1%')} | {fmt('success_out', '.1%')} | "
            f"{fmt('length_in', '.1f')} | {fmt('length_out', '.1f')} |" if manip else
            f"{fmt('return_in', '.2f')} | {fmt('return_out', '.2f')} |"))
    bc = {a: np.mean([r["blockwise_bc"] for r in rs], 0) for a, rs in runs.items()
          if all("blockwise_bc" in r for r in rs)}
    for a, v in bc.items():
        out["blockwise_bc"][a] = v.tolist()
        lines += ["", f"{a}: BC loss on the training specs after each block θ¹ … θ^{len(v)} "
                  f"(paper Table 4), mean over seeds: " + ", ".join(f"{x:.4g}" for x in v)
                  + "."]
    return lines, out


def plot_per_spec(path: str, grid, summary: dict, results: dict) -> str:
    """Per-spec returns beside the spec value (paper Figs. 5–9 style) as a PNG at ``path``:
    every grid spec's expert and uniform-random return, and each model's held-out and
    training-spec returns at the last epoch (first seed). One-factor grids plot against the
    factor; others against the spec's index. Returns ``path``."""
    one = grid.specs.shape[1] == 1
    x = grid.specs[:, 0] if one else np.arange(len(grid))
    fig, ax = plt.subplots(figsize=(7, 4))
    order = np.argsort(x)
    ax.plot(x[order], np.asarray(summary["expert_per_spec"])[order], "k-", label="expert")
    ax.plot(x[order], np.asarray(summary["random_per_spec"])[order], "k:", label="random")
    for a, rs in results.items():
        r = rs[0]
        ids = np.asarray(r["test_ids"] + r["train_ids"], int)
        ret = np.asarray(r["per_spec_last"] + r["per_train_spec_last"])
        o = np.argsort(x[ids])
        line, = ax.plot(x[ids][o], ret[o], "-", alpha=0.8, label=a)
        ax.plot(x[r["test_ids"]], r["per_spec_last"], "o", color=line.get_color(), ms=4)
    ax.set_xlabel(grid.factors[0] if one else "spec index")
    ax.set_ylabel("return (last epoch)")
    ax.set_title(f"{grid.name}: per-spec return (dots: held-out specs)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
