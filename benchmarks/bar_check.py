"""Issue #4's bar, checked fold by fold from the raw runs (written to docs/results/bar.md by
``bash benchmarks/evidence.sh report``):

    .venv/bin/python benchmarks/bar_check.py --diagnostics benchmarks/results/teacher_diagnostics.csv \
        benchmarks/results/ts_5pct_chgnet benchmarks/results/evidence

1. With 5 % of the data, every teacher strategy on the headline tasks against the 20 % cut, per fold,
   next to that fold's reachable floor (the larger of the composition floor and the teacher's MAE): a
   cut below the reachable floor asks the student to beat the best a composition model can do or its
   own teacher. The teacher's MAE is the runs' ridge probe and, where ``teacher_diagnostics.py`` fitted
   one, the better of that and its kernel probe (a stronger read-out of the same frozen teacher).
2. Every ``ts`` cell against its baseline: a gain or a loss counts as beyond fold noise when the
   paired t-test over folds gives p < 0.05.
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

from matbench_ts.bench.report import load_results, load_task_info, summarize, with_baseline

HEAD_TASKS = ("matbench_log_gvrh", "matbench_perovskites")
CUT = 0.20  # the bar: at least 20 % below the baseline on every fold
NOISE_P = 0.05


def per_fold_cut(results: pd.DataFrame, floors: dict[str, float], diagnostics: pd.DataFrame | None) -> pd.DataFrame:
    """One row per headline task x student x strategy x fold at 5 %: MAE, the 20 % cut, the reachable floor."""
    small = with_baseline(results[results["task"].isin(HEAD_TASKS) & np.isclose(results["fraction"], 0.05)])
    rows = small[small["strategy"] != "baseline"].copy()
    rows["cut"] = (1 - CUT) * rows["mae_base"]
    teacher = rows["teacher_mae"].to_numpy(float)
    if diagnostics is not None and "probe_structure_kernel" in diagnostics:
        kernel = diagnostics[np.isclose(diagnostics["fraction"], 0.05)][["task", "fold", "probe_structure_kernel"]]
        kernel = rows[["task", "fold"]].merge(kernel, on=["task", "fold"], how="left")["probe_structure_kernel"]
        # ALIGNN's MAE is its own prediction, not a probe of CHGNet: keep it.
        teacher = np.where(rows["teacher"] == "chgnet", np.fmin(teacher, kernel.to_numpy(float)), teacher)
    rows["reachable_floor"] = np.fmax(rows["task"].map(floors).to_numpy(float), teacher)
    rows["change"] = rows["mae"] / rows["mae_base"] - 1
    return rows


def cut_table(rows: pd.DataFrame) -> str:
    lines = ["| task | student | teacher | strategy | folds | change (mean) | folds at -20 % | "
             "20 % cut (mean) | reachable floor (mean) | folds whose cut is below their reachable floor |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for (task, student, teacher, strategy), g in rows.groupby(["task", "student", "teacher", "strategy"]):
        lines.append(f"| {task.replace('matbench_', '')} | {student} | {teacher} | {strategy} | {len(g)} | "
                     f"{100 * g['change'].mean():+.1f} % | {(g['change'] <= -CUT).sum()}/{len(g)} | "
                     f"{g['cut'].mean():.4g} | {g['reachable_floor'].mean():.4g} | "
                     f"{(g['cut'] < g['reachable_floor']).sum()}/{len(g)} |")
    return "\n".join(lines)


def verdict(row: pd.Series) -> str:
    if not np.isfinite(row.p_paired):
        return "under 3 folds: no test"
    if row.p_paired >= NOISE_P:
        return "within fold noise"
    return "gain beyond noise" if row.gain_vs_baseline > 0 else "LOSS beyond noise"


def noise_table(summary: pd.DataFrame) -> str:
    ts = summary[summary["strategy"] == "ts"].sort_values(["fraction", "task", "student", "teacher"])
    lines = ["| fraction | task | student | teacher | folds | change | folds better | p (paired t) | verdict |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in ts.itertuples():
        lines.append(f"| {row.fraction:g} | {row.task.replace('matbench_', '')} | {row.student} | {row.teacher} | "
                     f"{row.n_runs} | {-100 * row.gain_vs_baseline:+.1f} % | "
                     f"{row.folds_better:.0f}/{row.folds_paired:.0f} | {row.p_paired:.2g} | {verdict(row)} |")
    return "\n".join(lines)


def main(run_dirs: list[str], diagnostics: str | None = None) -> str:
    results, info = load_results(run_dirs), load_task_info(run_dirs)
    floors = {task: d.get("composition_floor", np.nan) for task, d in info.items()}
    summary = summarize(results, info)
    probes = pd.read_csv(diagnostics) if diagnostics else None
    return "\n\n".join([
        "## 5 % of the data on the headline tasks: the 20 % cut, fold by fold",
        cut_table(per_fold_cut(results, floors, probes)),
        "## `ts` against the baseline: beyond fold noise? (paired t-test over folds, p < 0.05)",
        noise_table(summary),
    ]) + "\n"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="+")
    parser.add_argument("--diagnostics", help="teacher_diagnostics.py's CSV (kernel probes)")
    args = parser.parse_args()
    print(main(args.run_dirs, args.diagnostics), end="")
