"""Benchmark runs fine-tuned from a checkpoint at a peak learning rate other than the one the student's
recipe gives them now (``Recipe.learning_rate_for``: lower with many rows): moved aside and run again.

    python benchmarks/finetune_rate_changed.py RUNS_DIR   # prints each such run file, relative to RUNS_DIR
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from matbench_ts.recipe import resolve_recipe


def rate_used(run: dict[str, Any]) -> float:
    """The peak rate ``run`` trained at (runs before ``learning_rate`` was recorded: its override or recipe's)."""
    return float(run.get("learning_rate") or run["params"].get("learning_rate") or run["recipe"]["learning_rate"])


def rate_changed(run: dict[str, Any]) -> bool:
    """Whether ``run`` (a run JSON) started from a checkpoint with the student's own recipe and no rate of its
    own, and the recipe now gives it another rate."""
    if not run.get("pretrained") or run["params"].get("learning_rate") is not None:
        return False
    recipe = resolve_recipe("auto", run["student"])
    if any(run["recipe"].get(k, v) != v for k, v in dataclasses.asdict(recipe).items()):
        return False  # a recipe of its own
    guided = run["alpha"] > 0  # the teacher's embedding term was on
    return rate_used(run) != recipe.learning_rate_for(run["n_train"], from_checkpoint=True, guided=guided)


def main() -> None:
    root = Path(sys.argv[1])
    for path in sorted(root.rglob("*.json")):
        run = json.loads(path.read_text())
        if "params" in run and rate_changed(run):
            print(path.relative_to(root))


if __name__ == "__main__":
    main()
