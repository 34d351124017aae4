# Sourced by the benchmark scripts: the repository root as working folder, the offline data, the CLI.
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export MATBENCH_TS_DATA=${MATBENCH_TS_DATA:-$(realpath ../shared/data)}
export MATMINER_DATA=${MATMINER_DATA:-$MATBENCH_TS_DATA/matminer} OMP_WAIT_POLICY=PASSIVE
MTS=${MTS:-.venv/bin/matbench-ts}
MP2018=$MATBENCH_TS_DATA/mp2018/mp2018_eform_gap.jsonl.gz
# The cpu profile's bench call that every script builds on, JOBS runs at a time (default 1): cpu_bench ARGS...
cpu_bench() { "$MTS" bench --profile cpu --n-jobs "${JOBS:-1}" --threads 1 -q "$@"; }
# The cpu profile's CrabNet size, written out for runs that name it
CPU_CRABNET='{"d_model": 128, "N": 2, "heads": 4, "out_hidden": [256, 128, 64], "dim_feedforward": 256}'
# Move aside (with their predictions) the runs under RUNS_DIR that LISTER (a script in benchmarks/ printing run
# files relative to RUNS_DIR) names, so that a rerun into the same --out trains them with the code now:
# set_aside LISTER RUNS_DIR ASIDE_DIR
set_aside() {
  local run runs
  runs=$(.venv/bin/python "benchmarks/$1" "$2")  # a run file it cannot read ends the script
  for run in $runs; do
    mkdir -p "$(dirname "$3/$run")"
    mv "$2/$run" "$(dirname "$3/$run")/"
    if [ -e "$2/${run%.json}.npz" ]; then mv "$2/${run%.json}.npz" "$(dirname "$3/$run")/"; fi  # its predictions
  done
}
# The runs a stopping rule ended before their last epoch (the published recipes now run every epoch)
set_aside_stopped_early() { set_aside stopped_early.py "$1" "$2"; }
