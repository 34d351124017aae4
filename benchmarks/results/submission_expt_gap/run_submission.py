"""Reproduces this Matbench submission (results.json.gz, info.json) with matbench-ts 0.1.0.

Equivalent command line:
    matbench-ts submit --tasks matbench_expt_gap --strategy pretrained --student crabnet --teacher none --seed 0 --out .

``make_submission`` trains ``matbench_ts.TSRegressor`` on every official fold of
``MatbenchBenchmark(subset=TASKS)`` (``task.get_train_and_val_data``), predicts
``task.get_test_data`` from compositions and calls ``task.record(fold, predictions, params=...)``.
"""
from matbench_ts.bench.submit import make_submission

make_submission(**{'tasks': ['matbench_expt_gap'], 'out': '.', 'strategy': 'pretrained', 'student': 'crabnet', 'teacher': None, 'seed': 0, 'authors': 'matbench-ts developers', 'algorithm': 'CrabNet-CHGNet', 'notes': "CrabNet (cpu size of matbench-ts) fine-tuned on formulas only from a step-1 checkpoint distilled from CHGNet, shipped with matbench-ts; peak learning rate 2e-3 (the CrabNet recipe's for a checkpoint fine-tuned on more than 2,000 rows).", 'profile': 'cpu', 'student_params': None, 'teacher_params': None, 'estimator_params': {}, 'data_dir': None, 'structure_library': None, 'pretrained': 'crabnet-chgnet-mp2018-leaksafe', 'device': None, 'threads': 1, 'n_embed': 0})
