# Sourced by the benchmark scripts: the repository root as working folder, the offline data, the CLI.
cd "$(dirname "$0")/.."
export MATBENCH_TS_DATA=${MATBENCH_TS_DATA:-$(realpath ../shared/data)}
export MATMINER_DATA=${MATMINER_DATA:-$MATBENCH_TS_DATA/matminer} OMP_WAIT_POLICY=PASSIVE
MTS=${MTS:-.venv/bin/matbench-ts}
MP2018=$MATBENCH_TS_DATA/mp2018/mp2018_eform_gap.jsonl.gz
# The cpu profile's CrabNet size, written out for runs that name it
CPU_CRABNET='{"d_model": 128, "N": 2, "heads": 4, "out_hidden": [256, 128, 64], "dim_feedforward": 256}'
