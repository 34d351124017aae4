"""Result files written whole or not at all: JSON and compressed arrays through
:func:`matbench_ts.cache.atomic_write`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..cache import atomic_write


def to_jsonable(obj: Any) -> Any:
    """Plain JSON types (numpy scalars/arrays, tuples, Paths converted)."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def atomic_write_json(path: Path, data: Any) -> None:
    """JSON through :func:`matbench_ts.cache.atomic_write`, synced to disk before the rename."""
    def write(fh: Any) -> None:
        fh.write(json.dumps(to_jsonable(data), indent=1).encode())
        fh.flush()
        os.fsync(fh.fileno())

    atomic_write(path, write, mode=0o644)


def atomic_save_npz(path: Path, **arrays: np.ndarray) -> None:
    """``np.savez_compressed`` through :func:`matbench_ts.cache.atomic_write`."""
    atomic_write(path, lambda fh: np.savez_compressed(fh, **arrays), mode=0o644)
