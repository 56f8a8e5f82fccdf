"""The HyPoGen pipeline's report: the results table over algos and seeds beside the expert
and the uniform-random policy, one row per spec, and the manipulation tasks' success table
(paper Table 2)."""
from __future__ import annotations

import numpy as np

from hyperjax.envs.manipulation import EPISODE_LENGTH
from hyperjax.hypogen import specs
from hyperjax.hypogen.config import PipelineConfig

__all__ = ["report"]


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
    num = lambda v, f: "–" if np.isnan(v) else format(v, f)  # no expert (--expert_specs)
    lines.append(f"| expert (recorded episodes) | {num(ex_test, '.2f')} | | "
                 f"{num(ex_train, '.2f')} | |")
    lines.append(f"| uniform random | {on(rand, 'test'):.2f} | | {on(rand, 'train'):.2f} | |")
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
               f"{rand[i]:.1f} | {num(ex[i], '.1f')} |")
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
        lines.append(f"| expert (recorded episodes) | {num(on(ex_ok, 'test'), '.1%')} | "
                     f"{num(on(ex_len, 'test'), '.1f')} | |")
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
    return lines, summary
