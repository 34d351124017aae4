#!/usr/bin/env bash
# The runs behind docs/results.md (issue 4), phase by phase. Every phase is resumable: rerun it
# and finished runs are skipped. Usage: bash benchmarks/evidence.sh PHASE... (default: all, in order)
# Needs the offline data: MATBENCH_TS_DATA (default ../shared/data).
set -euo pipefail
source "$(dirname "$0")/env.sh"
OUT=benchmarks/results/evidence
# One configuration for every task: the cpu profile as it was for these runs (CrabNet d_model 128 N 2,
# Roost 32x2, the earlier 'plain' recipe: AdamW, L1, 150 epochs, step 1 50 epochs, early stopping on a
# 10% validation split, alpha auto); each run directory's config.json records it. The cpu profile now
# trains with the published recipes: its reruns go to new directories (benchmarks/ts_headline.sh).
JOBS=${JOBS:-2}  # both cores
bench() { cpu_bench --structure-library "$MP2018" --out "$OUT" "$@"; }
SMALL=matbench_dielectric,matbench_phonons,matbench_jdft2d
HEAD=matbench_log_gvrh,matbench_perovskites

phase_embed() {  # CHGNet embeddings of every structure, once (the runs then only read the cache)
  "$MTS" embed --teacher chgnet --teacher-params '{"n_jobs": 2}' --structure-library "$MP2018" \
    --tasks $SMALL,$HEAD,matbench_expt_gap,mp2018_e_form
}
phase_small() {
  bench --tasks $SMALL --fractions 0.05,0.25 --strategies baseline,ts,ts-no-step1 --student crabnet --teacher chgnet
}
phase_transfer() {  # step 1 on 5000 mp2018 structures (test-fold formulas excluded) / on the whole training fold
  bench --tasks $HEAD --fractions 0.05 --strategies transfer,transfer-fold --student crabnet --teacher chgnet
}
phase_full_gvrh() {
  bench --tasks matbench_log_gvrh --fractions 1 --strategies baseline,ts --student crabnet --teacher chgnet
  bench --tasks matbench_log_gvrh --fractions 1 --strategies ts-no-step1 --student crabnet --teacher chgnet
}
phase_quarter() {
  bench --tasks $HEAD --fractions 0.25 --strategies baseline,ts --student crabnet --teacher chgnet
}
phase_mp2018() {  # fold 0 = the fixed seeded 80/20 split
  bench --tasks mp2018_e_form,mp2018_band_gap --fractions 0.05,0.25 --strategies baseline,ts,ts-no-step1 \
    --student crabnet --teacher chgnet --folds 0
}
phase_small_full() {
  bench --tasks $SMALL --fractions 1 --strategies baseline,ts,ts-no-step1 --student crabnet --teacher chgnet
}
phase_expt_gap() {  # teacher structures by formula look-up in mp2018 (53% of rows found)
  bench --tasks matbench_expt_gap --fractions 0.05,0.25,1 --strategies baseline,ts --student crabnet --teacher chgnet
}
phase_steels() {  # no steel composition is in mp2018: the teacher has nothing to teach, baseline only
  bench --tasks matbench_steels --fractions 0.05,0.25,1 --strategies baseline --student crabnet --teacher chgnet
}
phase_full_perov() {
  bench --tasks matbench_perovskites --fractions 1 --strategies baseline,ts --student crabnet --teacher chgnet
  bench --tasks matbench_perovskites --fractions 1 --strategies ts-no-step1 --student crabnet --teacher chgnet
}
phase_alignn() {  # ALIGNN trained inside each fit on the labelled training rows only (leak-free)
  bench --tasks matbench_perovskites --fractions 0.05 --strategies ts --student crabnet --teacher alignn
  bench --tasks matbench_phonons --fractions 1 --strategies ts --student crabnet --teacher alignn
}
phase_alpha() {  # alpha sweep on log_gvrh 5% (benchmarks/results/alpha_sweep), and alpha=1 where ts-no-step1 beat ts
  local sweep=benchmarks/results/alpha_sweep
  for a in 0.3 1 3; do
    cpu_bench --tasks matbench_log_gvrh --fractions 0.05 --strategies ts --student crabnet --teacher chgnet \
      --alpha $a --out $sweep/alpha_$a
  done
  cpu_bench --tasks matbench_log_gvrh --fractions 0.05 --strategies step1-only --student crabnet --teacher chgnet \
    --out $sweep/alpha_0_step1_only
  cpu_bench --tasks matbench_phonons --fractions 1 --strategies ts --student crabnet --teacher chgnet \
    --alpha 1 --out $sweep/alpha_1
}
phase_alpha_rule() {  # which rule "auto" means, chosen on 20% of each training fold (test folds unused)
  local study=benchmarks/results/alpha_rule
  for rule in auto-init auto-step2; do
    sel() { cpu_bench --structure-library "$MP2018" --inner-validation 0.2 --student crabnet --teacher chgnet \
              --strategies ts --alpha $rule --out $study/$rule "$@"; }
    sel --tasks $HEAD,matbench_phonons,matbench_dielectric --fractions 0.05 --folds 0,1,2
    sel --tasks matbench_phonons,matbench_jdft2d --fractions 1 --folds 0,1,2
    sel --tasks matbench_dielectric --fractions 1 --folds 0,1
    sel --tasks matbench_log_gvrh --fractions 1 --folds 0
  done
}
phase_roost() {
  bench --tasks $SMALL --fractions 0.05,0.25 --strategies baseline,ts --student roost --teacher chgnet
}
phase_roost_full() {  # Roost with all the data on the two smallest tasks
  bench --tasks matbench_phonons,matbench_jdft2d --fractions 1 --strategies baseline,ts --student roost --teacher chgnet
}
phase_roost_head() {  # Roost on the two headline tasks with a quarter and all of the data
  bench --tasks $HEAD --fractions 0.25,1 --strategies baseline,ts --student roost --teacher chgnet
}
phase_roost_more() {  # Roost with all the data on dielectric; Roost on expt_gap
  bench --tasks matbench_dielectric --fractions 1 --strategies baseline,ts --student roost --teacher chgnet
  bench --tasks matbench_expt_gap --fractions 0.05,0.25,1 --strategies baseline,ts --student roost --teacher chgnet
}
phase_mp2018_full() {  # CrabNet with all of the mp2018 training split (fold 0)
  bench --tasks mp2018_e_form,mp2018_band_gap --fractions 1 --strategies baseline,ts --student crabnet --teacher chgnet \
    --folds 0
}
phase_transfer_d1() {  # step 1 on more of mp2018: 20,000 structures (folds 0-1), all of it (every fold)
  local sizes=benchmarks/results/transfer_size
  cpu_bench --structure-library "$MP2018" --pretrain-max 20000 --tasks matbench_log_gvrh --fractions 0.05 \
    --folds 0,1 --strategies transfer --student crabnet --teacher chgnet --out $sizes/max_20000
  cpu_bench --structure-library "$MP2018" --pretrain-max 0 --tasks matbench_log_gvrh --fractions 0.05 \
    --strategies transfer --student crabnet --teacher chgnet --out $sizes/max_all
}
phase_classification() {  # issue #13: glass (teacher structures by formula look-up in mp2018) and mp2018_is_metal
  local out=benchmarks/results/classification  # the cpu profile with the published recipe
  local fraction
  for fraction in 0.05 0.25 1; do  # the small fractions first: an interrupted phase still gives whole rows
    cpu_bench --structure-library "$MP2018" --out $out --tasks matbench_glass,mp2018_is_metal --fractions $fraction \
      --strategies baseline,ts --student crabnet --teacher chgnet
  done
  cpu_bench --structure-library "$MP2018" --out $out --tasks matbench_glass --fractions 0.25 --strategies ts-no-step1 \
    --student crabnet --teacher chgnet
  # glass has a teacher structure for 0.8 % of its rows: the formulas-only route is the leak-safe pretrained
  # student (no glass formula in its library). mp2018_is_metal is left out: its rows are that library.
  cpu_bench --structure-library "$MP2018" --out ${out}_pretrained --tasks matbench_glass --fractions 0.05,0.25,1 \
    --strategies pretrained --student crabnet --teacher chgnet --pretrained crabnet-chgnet-mp2018-leaksafe
  # the plain student at the checkpoint's (cpu) size: the pretraining effect apart from the size (above 1,000
  # training rows the cpu profile's baseline already has that size)
  cpu_bench --out ${out}_cpu_size --tasks matbench_glass --fractions 0.05 --strategies baseline \
    --student crabnet --student-params "$CPU_CRABNET"
}
phase_classification_checks() {  # glass at 25 %: is the teacher's embedding term what moves ROC-AUC, or noise?
  local out=benchmarks/results/classification_checks
  cpu_bench --structure-library "$MP2018" --out $out/glass_alpha0 --tasks matbench_glass --fractions 0.25 \
    --folds 0,2 --strategies ts-no-step1 --alpha 0 --student crabnet --teacher chgnet  # the teacher's path, no guidance
  cpu_bench --out $out/glass_seed1 --tasks matbench_glass --fractions 0.25 --folds 0,2 --seeds 1 \
    --strategies baseline --student crabnet  # the plain student with another seed
}
phase_classification_report() {  # the report's pages and plots, and the table of docs/results.md
  "$MTS" report benchmarks/results/classification benchmarks/results/classification_pretrained \
    --out benchmarks/results/classification/report --no-tsne
  .venv/bin/python benchmarks/classification_table.py benchmarks/results/classification \
    benchmarks/results/classification_pretrained "cpu size=benchmarks/results/classification_cpu_size" \
    > benchmarks/results/classification/table.md
}
phase_report() {
  local runs=(benchmarks/results/ts_5pct_chgnet "$OUT" benchmarks/results/alpha_sweep/* benchmarks/results/transfer_size/*)
  "$MTS" report "${runs[@]}" --out docs/results
  .venv/bin/python benchmarks/headline.py docs/results/summary.csv > docs/results/headline.md
  OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/teacher_diagnostics.py \
    --tasks $HEAD,$SMALL,mp2018_e_form,mp2018_band_gap --out benchmarks/results/teacher_diagnostics.csv
  .venv/bin/python benchmarks/bar_check.py --diagnostics benchmarks/results/teacher_diagnostics.csv "${runs[@]}" \
    > docs/results/bar.md
}

PHASES=(embed alpha alpha_rule small transfer full_gvrh quarter small_full alignn mp2018 expt_gap steels full_perov roost roost_full roost_head roost_more mp2018_full transfer_d1
        classification classification_checks classification_report report)
for phase in "${@:-${PHASES[@]}}"; do
  echo "=== phase $phase ($(date +%H:%M:%S))"
  "phase_$phase" || echo "=== phase $phase FAILED"
done
