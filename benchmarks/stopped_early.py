"""Benchmark runs that a stopping rule ended before their epoch budget: they differ from what the
published recipes give now (every epoch), so they are moved aside and run again.

    python benchmarks/stopped_early.py RUNS_DIR   # prints each such run file, relative to RUNS_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def stopped_early(run: dict[str, Any]) -> bool:
    """Whether a rule that stops early ended step 1 or step 2 of ``run`` (a run JSON) before its budget."""
    budget = {"step 1": run["params"].get("epochs_step1"), "step 2": run["params"]["epochs"]}
    short = any(n is not None and budget.get(step) and n < budget[step] for step, n in run["epochs_run"].items())
    return short and run["recipe"].get("early_stopping", True)


def main() -> None:
    root = Path(sys.argv[1])
    for path in sorted(root.rglob("*.json")):
        if stopped_early(json.loads(path.read_text())):
            print(path.relative_to(root))


if __name__ == "__main__":
    main()
