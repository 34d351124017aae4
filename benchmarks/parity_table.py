"""The parity page (issue #14): our plain students with their published recipes against the
leaderboard CrabNet, the ``crabnet`` package's own fit, and our earlier ('plain') recipe; the
ablation of each recipe change and the student-size choice (both on inner validation); the
calibration of the predicted standard deviations.

    python benchmarks/parity_table.py --out docs/results/parity.md
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from matbench_ts.bench.report import fit_time, load_results, markdown_table
from stopped_early import stopped_early

PARITY = Path("benchmarks/results/parity")
#: The earlier recipe's all-data baselines (cpu profile, AdamW + L1 + early stopping).
EARLIER = Path("benchmarks/results/evidence")
LEADERBOARD = Path("leaderboard/matbench_v0.1_mean_scores.json")


def mean_std(values: pd.Series) -> str:
    return f"{values.mean():.4g} ± {values.std(ddof=0):.2g}" if len(values) else ""


def fold_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (student, task): MAE mean ± std over folds, the folds run."""
    rows = []
    for (student, task), g in (runs.groupby(["student", "task"]) if len(runs) else []):
        rows.append({"student": student, "task": task, "folds": len(g), "mae": g.mae.mean(), "mae_std": g.mae.std(ddof=0),
                     "fit_time_s": g.fit_time_s.mean()})
    return pd.DataFrame(rows)


def calibration_rows(run_dirs: list[Path]) -> pd.DataFrame:
    rows = []
    for d in run_dirs:
        for path in sorted(d.glob("runs/**/*.json")):
            r = json.loads(path.read_text())
            if r.get("status") == "done" and r.get("calibration"):
                rows.append({"student": r["student"], "task": r["task"], "fold": r["fold"], **r["calibration"]})
    return pd.DataFrame(rows)


def anchor_runs(directory: Path) -> pd.DataFrame:
    """crabnet's own fit, one row per (task, size, fold)."""
    return pd.DataFrame([json.loads(p.read_text()) for p in sorted(directory.glob("*.json"))])


def anchor_cell(ours: pd.DataFrame, anchor: pd.DataFrame) -> str:
    """crabnet's own fit on the folds both ran: its mean, ours, and the folds where ours is better."""
    cells = []
    for size, a in (anchor.groupby("size") if len(anchor) else []):
        both = ours.merge(a[["fold", "mae"]], on="fold", suffixes=("", "_anchor"))
        if len(both):
            cells.append(f"{both.mae_anchor.mean():.4g} vs ours {both.mae.mean():.4g} on folds "
                         f"{','.join(map(str, both.fold))} ({size} size; ours better on {(both.mae < both.mae_anchor).sum()}"
                         f"/{len(both)})")
    return "; ".join(cells)


def parity_section(board: dict, anchor: pd.DataFrame) -> str:
    runs = pd.concat([run_records(d) for d in (PARITY / "crabnet", PARITY / "roost") if d.exists()] or [pd.DataFrame()])
    if not len(runs):
        return "(no parity runs yet)"
    ours = fold_table(runs)
    earlier_runs = load_results(EARLIER)
    earlier_runs = earlier_runs[(earlier_runs.strategy == "baseline") & (earlier_runs.fraction == 1.0)]
    earlier = fold_table(earlier_runs)
    current = runs.groupby(["student", "task"]).current.sum()
    lines = []
    for row in ours.itertuples():
        ref = board.get(row.task, {}).get("CrabNet")
        before = earlier[(earlier.student == row.student) & (earlier.task == row.task)]
        anc = anchor[anchor.task == row.task] if len(anchor) and row.student == "crabnet" else anchor.iloc[:0]
        fold_runs = runs[(runs.student == row.student) & (runs.task == row.task)]
        gap = (row.mae - ref[1]) / ref[2] if ref else np.nan
        lines.append({
            "student": row.student, "task": row.task, "folds": row.folds,
            "ours (published recipe)": f"{row.mae:.4g} ± {row.mae_std:.2g}",
            "folds on the recipe now": int(current.get((row.student, row.task), 0)),
            "earlier recipe": f"{before.mae.iloc[0]:.4g} ({before.folds.iloc[0]} folds)" if len(before) else "",
            "leaderboard CrabNet": f"{ref[1]:.4g} ± {ref[2]:.2g}" if ref else "",
            "(ours - board) / board std": f"{gap:+.2f}" if np.isfinite(gap) else "",
            "crabnet's own fit here (same folds)": anchor_cell(fold_runs[["fold", "mae"]], anc),
            "fit time (s)": f"{row.fit_time_s:.0f}",
        })
    return markdown_table(pd.DataFrame(lines)) if lines else "(no parity runs yet)"


def inner_section(directory: Path, label: str) -> str:
    """Mean inner-validation MAE per variant (one run directory each), against the first one."""
    rows = []
    for d in sorted(p for p in directory.glob("*") if p.is_dir()):
        runs = load_results(d)
        if len(runs):
            rows.append({label: d.name, "folds": ",".join(map(str, sorted(runs.fold))), "mae (inner validation)":
                         runs.mae.mean(), "per fold": " / ".join(f"{m:.4g}" for m in runs.sort_values("fold").mae)})
    frame = pd.DataFrame(rows)
    if len(frame) and "crabnet" in set(frame[label]):
        ref = frame.loc[frame[label] == "crabnet", "mae (inner validation)"].iloc[0]
        frame["vs crabnet recipe"] = [f"{(m - ref) / ref:+.1%}" for m in frame["mae (inner validation)"]]
    return markdown_table(frame) if len(frame) else "(not run yet)"


def run_records(directory: Path) -> pd.DataFrame:
    """Finished runs under ``directory``: student, task, fold, MAE, fit time, the epochs step 2 ran
    and whether the run is the one the recipe now gives."""
    rows = []
    for path in sorted(directory.glob("runs/**/*.json")):
        r = json.loads(path.read_text())
        if r.get("status") == "done":
            # a run that ran every epoch is the same under both stopping rules
            rows.append({"student": r["student"], "task": r["task"], "fold": r["fold"], "mae": r["mae"],
                         "fit_time_s": fit_time(r), "epochs": r["epochs_run"].get("step 2"),
                         "current": not stopped_early(r)})
    return pd.DataFrame(rows)


def variants_section(variants: dict[str, Path], mark_stale: bool = False) -> str:
    """Per (task, fold), each variant's MAE and the epochs it ran (one run directory each);
    ``mark_stale`` keeps only the rows of runs that stopped early, marking those not yet rerun."""
    table, keys = None, set()
    for name, directory in variants.items():
        runs = run_records(directory)
        if not len(runs):
            continue
        now = name == list(variants)[-1]  # the last variant is the recipe in force
        if mark_stale and now:
            runs = runs[~runs.current | runs.set_index(["task", "fold"]).index.isin(keys)]
        runs[name] = [f"{m:.4g} ({e} ep.){', old stop rule: to rerun' if mark_stale and now and not c else ''}"
                      for m, e, c in zip(runs.mae, runs.epochs, runs.current)]
        keys = set(zip(runs.task, runs.fold))
        runs = runs[["task", "fold", name]]
        table = runs if table is None else table.merge(runs, on=["task", "fold"], how="outer")
    if table is None:
        return "(not run yet)"
    return markdown_table(table.sort_values(["task", "fold"]).fillna(""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=os.environ.get("MATBENCH_TS_DATA", "../shared/data"))
    parser.add_argument("--out", default="docs/results/parity.md")
    args = parser.parse_args()
    board = json.loads((Path(args.data) / LEADERBOARD).read_text())
    anchor = anchor_runs(PARITY / "crabnet_anchor")
    calib = calibration_rows([d for d in (PARITY / "crabnet", PARITY / "roost") if d.exists()])
    calib_table = (calib.groupby(["student", "task"]).agg(folds=("fold", "size"), spearman=("spearman", "mean"),
                                                          coverage_95=("coverage_95", "mean"),
                                                          miscalibration_area=("miscalibration_area", "mean"))
                   .reset_index() if len(calib) else pd.DataFrame())
    text = "\n\n".join([
        "# Parity of the plain students (generated by benchmarks/parity_table.py)",
        "All the training data of each fold, `matbench-ts bench --profile cpu --strategies baseline` "
        "(commands: `bash benchmarks/parity.sh`). Leaderboard: Matbench v0.1, official rows; proxy tasks "
        "(phonons, jdft2d, dielectric, log_gvrh, perovskites) are subsets of them with MP structures, so "
        "their comparison is approximate.",
        "## Plain students against the leaderboard CrabNet", parity_section(board, anchor),
        "## Student size on small data, and crabnet's dropout detail (matbench_steels, 20 % of each training fold held out)",
        inner_section(PARITY / "size_choice", "sizes"),
        "## Recipe ablation (matbench_expt_gap, CPU size, 20 % of each training fold held out)",
        inner_section(PARITY / "ablation", "recipe"),
        "## Stopping rules (inner validation: 20 % of each training fold held out)",
        "crabnet's rule stops after 3 cycles of the learning-rate schedule without a new SWA minimum; "
        "`min_epoch_fraction` 0.5 lets no rule stop before half the epochs, 1.0 runs every epoch (SWA "
        "over the whole run). A variant that would not change a run (the default ran past its minimum) "
        "is not rerun: the two are the same run, epoch for epoch.",
        variants_section({"crabnet (default)": PARITY / "min_epochs" / "default",
                          "min_epoch_fraction 0.5": PARITY / "min_epochs" / "min_half",
                          "min_epoch_fraction 1.0": PARITY / "min_epochs" / "all_epochs",
                          "crabnet (default), ablation runs": PARITY / "ablation" / "crabnet",
                          "crabnet (default), size-choice runs": PARITY / "size_choice" / "published_up_to_1000"}),
        "Roost on steels: patience 30 epochs (at ~2 optimiser steps an epoch) against 300 "
        "(every epoch; the best on validation kept, as aviary's `train_ensemble` with `patience=None`):",
        variants_section({"patience 30": PARITY / "roost_patience" / "patience30",
                          "patience 300": PARITY / "roost_patience" / "patience300"}),
        "## CrabNet test folds before and after running every epoch",
        "`crabnet_stopped_early`: the parity runs that crabnet's stop rule ended before epoch 300 "
        "(`bash benchmarks/stopping.sh rerun` moved them aside and ran them again with the recipe now); "
        "the runs that reached epoch 300 are the same under both rules.",
        variants_section({"crabnet's stop rule": PARITY / "crabnet_stopped_early",
                          "every epoch (recipe now)": PARITY / "crabnet"}, mark_stale=True),
        "## Roost test folds before and after the stopping fix",
        "`roost_early_stopping`: the recipe with 30 epochs of patience; `roost`: every epoch, best kept.",
        variants_section({"patience 30 epochs": PARITY / "roost_early_stopping",
                          "every epoch (recipe now)": PARITY / "roost"}),
        "## Calibration of `predict(X, return_std=True)` (test folds)",
        (markdown_table(calib_table) if len(calib_table) else "(no runs yet)"),
    ])
    Path(args.out).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
