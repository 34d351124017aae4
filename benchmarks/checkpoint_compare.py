"""Two leak-safe CrabNet checkpoints (mp2018: 22,378 structures; the default library: 88,540) at 5 % of
every regression task: MAE means over the five folds against the plain student, and the full library
against mp2018 (folds better, paired p). Written to docs/results/pretrained/log_gvrh_5_library_size.md:

    .venv/bin/python benchmarks/checkpoint_compare.py
"""

from __future__ import annotations

import numpy as np
from scipy.stats import ttest_rel
from matbench_ts.bench.report import load_results
plain = load_results("benchmarks/results/ts_recipe")
plain = plain[(plain.strategy=="baseline") & np.isclose(plain.fraction,0.05) & (plain.student=="crabnet")].set_index(["task","fold"])["mae"]
names = ["crabnet-chgnet-mp2018-leaksafe","crabnet-chgnet-mp-bench"]
res = {n: load_results(f"benchmarks/results/pretrained/grid/{n}") for n in names}
print("| task | strategy | plain student | mp2018 leak-safe (22,378) | full library leak-safe (88,540) | full against mp2018 (folds better, paired p) |")
print("|---|---|---|---|---|---|")
for task in ["matbench_dielectric","matbench_expt_gap","matbench_jdft2d","matbench_log_gvrh","matbench_perovskites","matbench_phonons","matbench_steels"]:
  for strat in ["pretrained","pretrained-ts"]:
    cells=[]; per={}
    for n in names:
      r=res[n]; r=r[(r.task==task)&(r.strategy==strat)&np.isclose(r.fraction,0.05)&(r.seed==0)].set_index("fold")["mae"]
      per[n]=r
    a,b=per[names[0]],per[names[1]]
    folds=sorted(set(a.index)&set(b.index))
    if len(b)==0 or len(folds)<5: continue
    p=plain.loc[task].loc[folds]
    def fmt(x): return f"{x.mean():.4g} ({100*(x.mean()/p.mean()-1):+.1f} %)"
    pv=ttest_rel(b.loc[folds],a.loc[folds]).pvalue
    print(f"| {task.replace('matbench_','')} | {strat} | {p.mean():.4g} | {fmt(a.loc[folds])} | {fmt(b.loc[folds])} | {100*(b.loc[folds].mean()/a.loc[folds].mean()-1):+.1f} % ({(b.loc[folds]<a.loc[folds]).sum()}/{len(folds)}, p={pv:.2g}) |")
