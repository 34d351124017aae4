"""Pretrained student checkpoints shipped with the package (see :mod:`matbench_ts.pretrained`)."""
