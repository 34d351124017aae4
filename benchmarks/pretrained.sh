#!/usr/bin/env bash
# The runs behind the pretrained students (issue #11): checkpoints and their evidence.
# Every phase is resumable (pretraining keeps OUT.work/, the harness skips finished runs).
# Usage: bash benchmarks/pretrained.sh PHASE...   Needs the offline data: MATBENCH_TS_DATA (default ../shared/data).
set -euo pipefail
source "$(dirname "$0")/env.sh"
# Benchmark checkpoints are not shipped (nor committed): they live here, outside the repository.
CKPT=${CKPT:-../checkpoints}
# Every task the evidence evaluates: a leak-safe checkpoint leaves out all their reduced formulas (all folds).
EVALUATED=matbench_steels,matbench_expt_gap,matbench_glass,matbench_jdft2d,matbench_phonons,matbench_dielectric,matbench_log_gvrh,matbench_perovskites
# The harness on the cpu profile with the CHGNet teacher and the mp2018 structures: bench BENCH_ARGS...
bench() { cpu_bench --structure-library "$MP2018" --teacher chgnet "$@"; }


phase_bench_checkpoint_mp2018() {  # leak-safe CrabNet (cpu size) on the mp2018 structures
  "$MTS" pretrain --out $CKPT/crabnet-chgnet-mp2018-bench.pt --library mp2018_eform_gap.jsonl.gz \
    --exclude-formulas $EVALUATED --epochs 60 --threads 1
}
phase_bench_checkpoint_mp2018_e200() {  # the same, up to 200 epochs (60 still improved the validation loss)
  "$MTS" pretrain --out $CKPT/crabnet-chgnet-mp2018-bench-e200.pt --library mp2018_eform_gap.jsonl.gz \
    --exclude-formulas $EVALUATED --epochs 200 --threads 1
}
phase_library_size() {  # the benchmark checkpoint on seeded samples of its library, then log_gvrh 5 %
  for n in 2800 5600 11200; do
    "$MTS" pretrain --out $CKPT/crabnet-chgnet-mp2018-bench-n$n.pt --library mp2018_eform_gap.jsonl.gz \
      --exclude-formulas $EVALUATED --max-structures $n --epochs 60 --threads 1 -q
    bench --student crabnet --tasks matbench_log_gvrh --fractions 0.05 --strategies pretrained \
      --pretrained $CKPT/crabnet-chgnet-mp2018-bench-n$n.pt --out benchmarks/results/pretrained/library_size/n$n
  done
}
phase_bench_checkpoint() {  # leak-safe CrabNet (cpu size) on the default library (all MP structures, ~112k)
  # two threads: CrabNet's step 1 here took 34 s an epoch on two against 46 s on one (2026-12-07, nothing beside)
  "$MTS" pretrain --out $CKPT/crabnet-chgnet-mp-bench.pt --exclude-formulas $EVALUATED --threads 2
}
phase_ship_mp2018() {  # the first shipped checkpoint (every mp2018 structure, 60 epochs); replaced by `ship`'s
  "$MTS" pretrain --out $CKPT/crabnet-chgnet-mp2018.pt --library mp2018_eform_gap.jsonl.gz --epochs ${EPOCHS:-60} --threads 1
}
phase_ship_leaksafe() {  # the leak-safe benchmark checkpoint (200 epochs) ships too: the headline is reproducible
  phase_bench_checkpoint_mp2018_e200
  cp $CKPT/crabnet-chgnet-mp2018-bench-e200.pt matbench_ts/checkpoints/crabnet-chgnet-mp2018-leaksafe.pt
}
phase_ship() {  # the shipped checkpoints: the default library, nothing excluded, pretrain's default 200 epochs
  local student  # STUDENTS=roost builds one of them
  for student in ${STUDENTS:-crabnet roost}; do  # built outside the package (their .work/ folders), then copied in
    "$MTS" pretrain --out $CKPT/$student-chgnet-mp.pt --student $student --threads 1
    cp $CKPT/$student-chgnet-mp.pt matbench_ts/checkpoints/
  done
}
phase_log_gvrh_5() {  # the bar: log_gvrh at 5 %, 5 folds; baseline and ts: benchmarks/ts_headline.sh (ts_recipe/)
  local name=${NAME:-crabnet-chgnet-mp2018-bench}
  bench --student crabnet --tasks matbench_log_gvrh --fractions 0.05 --strategies pretrained,pretrained-ts \
    --pretrained $CKPT/$name.pt --out benchmarks/results/pretrained/$name
  bash benchmarks/ts_headline.sh log_gvrh_5
}
# One SPEC (task:fraction) scored on inner validation (20 % of each training fold in FOLDS, test folds unused)
# for the pretrained STRATEGIES: inner_validation SPEC BENCH_ARGS...
inner_validation() {
  local spec=$1; shift
  bench --tasks "${spec%%:*}" --fractions "${spec##*:}" --folds ${FOLDS:-0,1} --inner-validation 0.2 \
    --strategies ${STRATEGIES:-pretrained,pretrained-ts} "$@"
}
phase_finetune_lr() {  # the fine-tuning peak learning rate, chosen on inner validation (20 % of training folds)
  # SPECS (task:fraction ...) to ask again with all the data, e.g. after perovskites' 100 % cell (results.md):
  # NAME=crabnet-chgnet-mp2018-leaksafe STRATEGIES=pretrained LRS="0.006 0.002" \
  #   SPECS="matbench_perovskites:1 matbench_log_gvrh:1 matbench_dielectric:1"
  local student=${STUDENT:-crabnet} name=${NAME:-crabnet-chgnet-mp2018-bench} checkpoint
  checkpoint=$CKPT/$name.pt
  [ -e "$checkpoint" ] || checkpoint=$name  # a shipped one, by name (NAME=crabnet-chgnet-mp2018-leaksafe)
  for lr in ${LRS:-0.006 0.002 0.0006}; do
    for spec in ${SPECS:-matbench_log_gvrh:0.05 matbench_dielectric:0.25 matbench_phonons:0.25}; do
      inner_validation "$spec" --student $student --pretrained $checkpoint --learning-rate $lr \
        --out benchmarks/results/pretrained/finetune_lr/$name/lr$lr
    done
  done
}
phase_grid_lr() {  # the grid's cells again with fine-tuning peak rate LR (test folds), for a rate finetune_lr
  # asked about on inner validation: LR=0.002 TASKS=matbench_perovskites FRACTIONS=1 FOLDS=0,1,2,3,4 (beside the grid)
  local name=${NAME:-crabnet-chgnet-mp2018-leaksafe} lr=${LR:?LR, the peak learning rate}
  bench --student crabnet --tasks ${TASKS:-matbench_perovskites} --fractions ${FRACTIONS:-1} --folds ${FOLDS:-0,1,2,3,4} \
    --strategies ${STRATEGIES:-pretrained} --pretrained $name --learning-rate $lr \
    --out benchmarks/results/pretrained/grid_lr$lr/$name
}
phase_same_size_baseline() {  # the plain student at the checkpoint's (cpu) size: the pretraining effect alone
  cpu_bench --student crabnet --tasks matbench_log_gvrh \
    --fractions 0.05 --strategies baseline --student-params "$CPU_CRABNET" --out benchmarks/results/pretrained/baseline_cpu_size
}
phase_every_epoch() {  # the 200-epoch leak-safe runs again after CrabNet's recipe began running every epoch
  local name=${NAME:-crabnet-chgnet-mp2018-bench-e200} out=benchmarks/results/pretrained/every_epoch
  bench --student crabnet --tasks matbench_log_gvrh --fractions 0.05 --strategies pretrained,pretrained-ts \
    --pretrained $CKPT/$name.pt --out $out/$name
  cpu_bench --student crabnet --tasks matbench_log_gvrh \
    --fractions 0.05 --strategies baseline --student-params "$CPU_CRABNET" --out $out/baseline_cpu_size
}
bench_with_steels() {  # STRATEGIES on the tasks with structures, STEELS_STRATEGIES on steels (no steel has a
  # structure), the student $STUDENT (default CrabNet): bench_with_steels TASKS STRATEGIES STEELS_STRATEGIES BENCH_ARGS...
  local tasks=$1 strategies=$2 steels_strategies=$3
  shift 3
  bench --student ${STUDENT:-crabnet} "$@" --tasks $tasks --strategies $strategies
  bench --student ${STUDENT:-crabnet} "$@" --tasks matbench_steels --strategies $steels_strategies
}
phase_grid() {  # issue #11 item 4: every regression task, the shipped leak-safe checkpoint (formulas of none of them)
  local name=${NAME:-crabnet-chgnet-mp2018-leaksafe} fraction checkpoint
  local tasks=${TASKS:-matbench_log_gvrh,matbench_perovskites,matbench_dielectric,matbench_jdft2d,matbench_phonons,matbench_expt_gap}
  checkpoint=$CKPT/$name.pt
  [ -e "$checkpoint" ] || checkpoint=$name  # a shipped one, by name
  for fraction in ${FRACTIONS:-0.05 0.25 1}; do  # small fractions first: an interrupted phase still gives whole rows
    bench_with_steels $tasks pretrained,pretrained-ts pretrained --fractions $fraction --pretrained $checkpoint \
      --out benchmarks/results/pretrained/grid/$name
  done
}
phase_grid_finetune_rate() {  # the grid's runs fine-tuned at a peak rate the recipe no longer gives them (lower with
  # many rows: Recipe.learning_rate_for) kept in grid_lr0.006/, then those cells again (grid's TASKS, FRACTIONS)
  local name=${NAME:-crabnet-chgnet-mp2018-leaksafe}
  set_aside finetune_rate_changed.py benchmarks/results/pretrained/grid/$name/runs \
    benchmarks/results/pretrained/grid_lr0.006/$name/runs
  phase_grid
}
phase_grid_report() {  # the grid against the plain student and ts on the recipe now: pages, summary.csv, table, results.md
  local name=${NAME:-crabnet-chgnet-mp2018-leaksafe}
  "$MTS" report benchmarks/results/ts_recipe benchmarks/results/parity/crabnet \
    benchmarks/results/pretrained/grid/$name benchmarks/results/pretrained/roost/* --out docs/results/pretrained --no-tsne
  .venv/bin/python benchmarks/pretrained_table.py docs/results/pretrained/summary.csv > docs/results/pretrained/table.md
  .venv/bin/python benchmarks/splice_table.py docs/results.md docs/results/pretrained/table.md  # the grid table there
}
phase_submit_expt_gap() {  # a leaderboard-ready submission of the formulas-only student on expt_gap (official folds)
  local out=benchmarks/results/submission_expt_gap  # runs at a rate the recipe no longer gives: kept, then run again
  set_aside finetune_rate_changed.py $out/runs benchmarks/results/submission_expt_gap_lr0.006/runs
  "$MTS" submit --tasks matbench_expt_gap --strategy pretrained --teacher none --student crabnet \
    --pretrained crabnet-chgnet-mp2018-leaksafe --profile cpu --threads 1 -q --authors "matbench-ts developers" \
    --algorithm CrabNet-CHGNet --notes "CrabNet (cpu size of matbench-ts) fine-tuned on formulas only from a step-1 checkpoint distilled from CHGNet, shipped with matbench-ts; peak learning rate 2e-3 (the CrabNet recipe's for a checkpoint fine-tuned on more than 2,000 rows)." \
    --out $out
}
# Where default_choice writes for $STUDENT: CrabNet's (the default student's) study, or one folder per other student
default_choice_dir() {
  local student=${STUDENT:-crabnet}
  echo benchmarks/results/pretrained/default_choice$([ "$student" = crabnet ] || echo "_$student")
}
phase_default_choice() {  # issue #11 item 5: start TSRegressor from a checkpoint by default? Inner validation only
  # (20 % of each training fold held out and scored; test folds unused), folds $FOLDS, small tasks first;
  # STUDENT=roost asks it for Roost, from Roost's leak-safe checkpoint
  local name=${NAME:-${STUDENT:-crabnet}-chgnet-mp2018-leaksafe} out fraction tasks
  out=$(default_choice_dir)
  tasks=matbench_jdft2d,matbench_phonons,matbench_dielectric,matbench_expt_gap,matbench_log_gvrh,matbench_perovskites
  for fraction in ${FRACTIONS:-0.05 0.25 1}; do
    bench_with_steels $tasks baseline,ts baseline --fractions $fraction --folds ${FOLDS:-0} --inner-validation 0.2 \
      --out $out/plain
    bench_with_steels $tasks pretrained,pretrained-ts pretrained --fractions $fraction --folds ${FOLDS:-0} \
      --inner-validation 0.2 --pretrained $name --out $out/$name
  done
}
phase_default_choice_report() {  # the decision of item 5 from those runs (the rule is in the script's docstring)
  local out
  out=$(default_choice_dir)
  .venv/bin/python benchmarks/default_choice.py $out > $out/choice.md
}
phase_bench_checkpoint_roost() {  # leak-safe Roost (cpu size) on the mp2018 structures, 200 epochs: Roost's grid rows
  "$MTS" pretrain --out $CKPT/roost-chgnet-mp2018-leaksafe.pt --student roost --library mp2018_eform_gap.jsonl.gz \
    --exclude-formulas $EVALUATED --threads 1
}
phase_ship_leaksafe_roost() {  # it ships too: Roost's rows (the log_gvrh bar) are reproducible offline
  phase_bench_checkpoint_roost
  cp $CKPT/roost-chgnet-mp2018-leaksafe.pt matbench_ts/checkpoints/
}
phase_roost_head() {  # issue #11 item 4, Roost on the head tasks: plain Roost and ts, then from its shipped leak-safe
  # checkpoint (the first build's runs, from a file since lost: benchmarks/results/pretrained/roost_first_build/).
  # ARMS=plain or ARMS=shipped runs one half (two processes, one per core); TASKS narrows the tasks.
  local fraction arm out=benchmarks/results/pretrained/roost
  for fraction in ${FRACTIONS:-0.05 0.25 1}; do
    local run=(bench --student roost --tasks ${TASKS:-matbench_log_gvrh,matbench_perovskites} --fractions $fraction)
    for arm in ${ARMS:-plain shipped}; do
      case $arm in
        plain) "${run[@]}" --strategies baseline,ts --out $out/plain ;;
        shipped) "${run[@]}" --strategies pretrained,pretrained-ts --pretrained roost-chgnet-mp2018-leaksafe \
          --out $out/shipped-leaksafe ;;
        *) echo "roost_head: unknown arm $arm (plain or shipped)" >&2; return 1 ;;
      esac
    done
  done
}
phase_roost_finetune_lr() {  # Roost's fine-tuning rate with all the data: the recipe's 3e-4 against 1e-4, both
  # pretrained routes, from the shipped leak-safe build, perovskites then log_gvrh at 100 %
  STUDENT=roost NAME=roost-chgnet-mp2018-leaksafe LRS=${LRS:-0.0003 0.0001} \
    SPECS=${SPECS:-matbench_perovskites:1 matbench_log_gvrh:1} phase_finetune_lr
}
phase_probe_head() {  # fine-tuning from a linear-probe head (Recipe.probe_head) on inner validation, both
  # pretrained routes; the recipe's random head at the same rate is in finetune_lr/NAME/lr*
  local student=${STUDENT:-roost} name=${NAME:-roost-chgnet-mp2018-leaksafe} spec
  for spec in ${SPECS:-matbench_perovskites:1 matbench_log_gvrh:1}; do
    inner_validation "$spec" --student $student --pretrained $name \
      --recipe "{\"base\": \"$student\", \"probe_head\": true}" --out benchmarks/results/pretrained/probe_head/$name
  done
}
phase_roost_seeds() {  # the log_gvrh 5 % bar over seeds 1 and 2 as well (roost_head runs seed 0), then the table
  local out=benchmarks/results/pretrained/roost
  local run=(bench --student roost --tasks matbench_log_gvrh --fractions 0.05 --seeds 1,2)
  "${run[@]}" --strategies baseline --out $out/plain
  "${run[@]}" --strategies pretrained,pretrained-ts --pretrained roost-chgnet-mp2018-leaksafe --out $out/shipped-leaksafe
  .venv/bin/python benchmarks/seed_spread.py --task matbench_log_gvrh --fraction 0.05 --student roost \
    $out/plain $out/shipped-leaksafe > docs/results/pretrained/roost_log_gvrh_seeds.md
}
phase_report() {
  local name=${NAME:-crabnet-chgnet-mp2018-bench}
  "$MTS" report benchmarks/results/ts_recipe benchmarks/results/pretrained/$name \
    --out benchmarks/results/pretrained/$name/report --no-tsne
}

for phase in "$@"; do
  echo "=== phase $phase ($(date +%H:%M:%S))"
  "phase_$phase" || echo "=== phase $phase FAILED"
done
