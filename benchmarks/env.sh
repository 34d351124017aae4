# Sourced by the benchmark scripts: the repository root as working folder, the offline data, the CLI.
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export MATBENCH_TS_DATA=${MATBENCH_TS_DATA:-$(realpath ../shared/data)}
export MATMINER_DATA=${MATMINER_DATA:-$MATBENCH_TS_DATA/matminer} OMP_WAIT_POLICY=PASSIVE
MTS=${MTS:-.venv/bin/matbench-ts}
MP2018=$MATBENCH_TS_DATA/mp2018/mp2018_eform_gap.jsonl.gz
# The cpu profile's CrabNet size, written out for runs that name it
CPU_CRABNET='{"d_model": 128, "N": 2, "heads": 4, "out_hidden": [256, 128, 64], "dim_feedforward": 256}'
# Move aside (with their predictions) the runs under RUNS_DIR that a rule ended before their last epoch,
# so that a rerun into the same --out trains them with the recipe now: set_aside_stopped_early RUNS_DIR ASIDE_DIR
set_aside_stopped_early() {
  local run aside rc
  for run in $(find "$1" -name '*.json'); do
    rc=0  # 10: stopped early, 11: ran its epochs; anything else (a broken file) ends the script
    .venv/bin/python -c "import json, sys; r = json.load(open(sys.argv[1]))
budget = {'step 1': r['params'].get('epochs_step1'), 'step 2': r['params']['epochs']}
short = any(n is not None and budget.get(step) and n < budget[step] for step, n in r['epochs_run'].items())
sys.exit(10 if short and r['recipe'].get('early_stopping', True) else 11)" "$run" || rc=$?
    if [ $rc -eq 10 ]; then
      aside=$2/${run#"$1"/}
      mkdir -p "$(dirname "$aside")"
      mv "$run" "$(dirname "$aside")/"
      if [ -e "${run%.json}.npz" ]; then mv "${run%.json}.npz" "$(dirname "$aside")/"; fi  # its predictions
    elif [ $rc -ne 11 ]; then
      echo "set_aside_stopped_early: cannot read $run" >&2
      return 1
    fi
  done
}
