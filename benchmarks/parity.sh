#!/usr/bin/env bash
# The runs behind the parity study (issue #14, docs/results/parity.md): the plain students with their
# published recipes, 5 official folds, all the training data, against the leaderboard CrabNet.
# Every phase is resumable (finished runs are skipped). Usage: bash benchmarks/parity.sh PHASE...
# Needs the offline data: MATBENCH_TS_DATA (default ../shared/data).
set -euo pipefail
source "$(dirname "$0")/env.sh"
OUT=benchmarks/results/parity
# The cpu profile: each student's published recipe (recipe auto), 300 epochs; the published student
# sizes up to 1,000 training rows, the CPU sizes above (CrabNet d_model 128, N 2).
bench() { cpu_bench --strategies baseline "$@"; }

phase_size_choice() {  # published vs CPU sizes on steels, scored on 20% of the training folds
  bench --tasks matbench_steels --folds 0 --inner-validation 0.2 --out $OUT/size_choice/published_up_to_1000
  bench --tasks matbench_steels --folds 0,1 --inner-validation 0.2 --student-params "$CPU_CRABNET" \
    --out $OUT/size_choice/cpu_sizes
}
phase_ablation() {  # each recipe change alone, on expt_gap (CPU size), scored on 20% of the training folds
  for r in crabnet '{"base": "crabnet", "dropout_until_swa": true}' '{"base": "crabnet", "swa_every_batch": true}' \
           '{"base": "crabnet", "cumulative_patience": true}' \
           '{"base": "crabnet", "dropout_until_swa": true, "swa_every_batch": true, "cumulative_patience": true}' plain '{"base": "crabnet", "loss": "l1"}' '{"base": "crabnet", "optimizer": "adamw", "learning_rate": 0.001}' \
           '{"base": "crabnet", "swa": false}' '{"base": "crabnet", "jitter": 0}' '{"base": "crabnet", "batch_size": 128}'; do
    name=$(echo "$r" | tr -d '{}" ' | tr ':,' '=_')
    bench --tasks matbench_expt_gap --folds 0,1 --inner-validation 0.2 --recipe "$r" --out $OUT/ablation/$name
  done
}
phase_dropout() {  # crabnet's fit stops dropout at its first SWA check: steels, published size, inner validation
  bench --tasks matbench_steels --folds 0 --inner-validation 0.2 --recipe '{"base": "crabnet", "dropout_until_swa": true}' \
    --out $OUT/size_choice/published_dropout_until_swa
}
phase_official() {  # the two official composition tasks (exact Matbench rows and folds)
  bench --tasks matbench_steels,matbench_expt_gap --student crabnet --out $OUT/crabnet
}
phase_proxy_small() {
  bench --tasks matbench_jdft2d,matbench_phonons,matbench_dielectric --student crabnet --out $OUT/crabnet
}
phase_roost() {
  bench --tasks matbench_steels,matbench_expt_gap,matbench_phonons --student roost --out $OUT/roost
}
phase_proxy_head() {
  bench --tasks matbench_log_gvrh,matbench_perovskites --student crabnet --out $OUT/crabnet
}
phase_anchor() {  # the crabnet package's own fit on the same official folds
  .venv/bin/python benchmarks/crabnet_anchor.py --tasks matbench_steels --size published --out $OUT/crabnet_anchor
  .venv/bin/python benchmarks/crabnet_anchor.py --tasks matbench_expt_gap --size cpu --out $OUT/crabnet_anchor
}
# The stopping-rule study and the reruns it caused: benchmarks/stopping.sh
# The T-S headline on this recipe (issue #14 item 5): benchmarks/ts_headline.sh
phase_report() {
  .venv/bin/python benchmarks/parity_table.py --out docs/results/parity.md
}

PHASES=(official size_choice dropout ablation proxy_small roost anchor proxy_head report)
for phase in "${@:-${PHASES[@]}}"; do
  echo "=== phase $phase ($(date +%H:%M:%S))"
  "phase_$phase" || echo "=== phase $phase FAILED"
done
