"""A per-fold bar checked over seeds: for one task and fraction, each strategy's change against the plain
student of the same fold and seed (a seed draws another training subset, validation split and
initialisation), per seed and averaged over seeds, and how many folds reach the cut.

    .venv/bin/python benchmarks/seed_spread.py --task matbench_log_gvrh --fraction 0.05 --student roost \
        --cut 0.15 benchmarks/results/pretrained/roost/plain benchmarks/results/pretrained/roost/shipped-leaksafe

Issue #11's bar asks for >= 15 % on every fold; one seed per fold cannot tell a fold that misses it
from a seed that does.
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

from matbench_ts.bench.report import load_results, with_baseline


def seed_table(results: pd.DataFrame, cut: float) -> str:
    """Markdown: one row per strategy and seed (and the mean over seeds), a column per fold."""
    rows = with_baseline(results)
    rows = rows[rows["strategy"] != "baseline"].assign(change=lambda r: 100 * (r["mae"] / r["mae_base"] - 1))
    folds = sorted(rows["fold"].unique())
    lines = ["| strategy | seed | " + " | ".join(f"fold {f}" for f in folds) + f" | mean | folds at -{100 * cut:g} % |",
             "|---|---|" + "---|" * (len(folds) + 2)]

    def line(strategy: str, label: str, per_fold: pd.Series) -> str:
        cells = [f"{per_fold[f]:+.1f} %" if f in per_fold.index else "" for f in folds]
        reached = int((per_fold <= -100 * cut).sum())
        return (f"| {strategy} | {label} | " + " | ".join(cells) +
                f" | {per_fold.mean():+.1f} % | {reached}/{len(per_fold)} |")

    for strategy, g in rows.groupby("strategy"):
        for seed, s in g.groupby("seed"):
            lines.append(line(strategy, str(seed), s.set_index("fold")["change"]))
        if g["seed"].nunique() < 2:
            continue
        complete = g.groupby("fold")["seed"].nunique() == g["seed"].nunique()  # folds with every seed
        mean = g[g["fold"].isin(complete[complete].index)].groupby("fold")["change"].mean()
        lines.append(line(strategy, f"mean of {g['seed'].nunique()}", mean))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dirs", nargs="+")
    parser.add_argument("--task", required=True)
    parser.add_argument("--fraction", type=float, required=True)
    parser.add_argument("--student", default="crabnet")
    parser.add_argument("--cut", type=float, default=0.15, help="the bar's relative cut (default 0.15)")
    args = parser.parse_args()
    results = load_results(args.run_dirs)
    results = results[(results["task"] == args.task) & np.isclose(results["fraction"], args.fraction)
                      & (results["student"] == args.student)]
    if results.empty:
        raise SystemExit(f"no finished {args.student} runs of {args.task} at {args.fraction:g} in {args.run_dirs}")
    print(f"# {args.task} at {args.fraction:g}, {args.student}: MAE change against the plain student of the same "
          f"fold and seed\n\nRun dirs: {', '.join(args.run_dirs)}\n")
    print(seed_table(results, args.cut))


if __name__ == "__main__":
    main()
