"""The training state of a fit on disk, so that an interrupted long fit goes on where it was.

``fit(..., resume_dir=FOLDER)`` saves each training step's state (weights, optimiser, schedule,
random streams, early-stopping state: see :func:`~matbench_ts.training.train_step`) into FOLDER
at most every :data:`SAVE_EVERY_S` seconds and when the step ends. A later fit of the same estimator
parameters on the same data with the same FOLDER loads it and continues from that epoch, ending
where an uninterrupted fit ends. State written by a fit of other parameters or data is refused.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import joblib
import torch

from .cache import atomic_write, structure_key

#: Parameters that change neither what a fit learns nor its random streams.
NEUTRAL_PARAMS = ("verbose", "cache_dir")
#: Seconds between two saves of a step's state (it is also saved when the step ends).
SAVE_EVERY_S = 60.0


def fit_key(params: dict[str, Any], compositions: Sequence[Any], y: Any, structures: Sequence[Any],
            pretrain_structures: Sequence[Any]) -> str:
    """Content hash of what a fit learns from: its parameters and its data."""
    return joblib.hash((
        {k: v for k, v in params.items() if k not in NEUTRAL_PARAMS},
        [str(c) for c in compositions], y,
        [None if s is None else structure_key(s) for s in structures],
        [structure_key(s) for s in pretrain_structures],
    ))


class FitState:
    """The saved steps of one fit in ``folder``, tagged with the fit's :func:`fit_key`.

    The saved steps are read once, here: state of another fit raises ValueError before any work.
    """

    def __init__(self, folder: str | Path, key: str) -> None:
        self.folder = Path(folder)
        self.key = key
        self._saved = {path.name: self._read(path) for path in sorted(self.folder.glob("*.pt"))}

    def path(self, step: str) -> Path:
        """The file that holds the state of ``step``."""
        return self.folder / f"{step.replace(' ', '')}.pt"

    def _read(self, path: Path) -> dict[str, Any]:
        state = torch.load(path, map_location="cpu", weights_only=False)  # our own file: numpy rng states inside
        if state.get("fit_key") != self.key:
            raise ValueError(f"resume_dir {str(self.folder)!r} holds the state of another fit ({path.name}: other "
                             "parameters or data): delete it or give another folder")
        return state

    def load(self, step: str) -> dict[str, Any] | None:
        """The saved state of ``step``, or None when it has none yet (handed over once: it is not kept)."""
        return self._saved.pop(self.path(step).name, None)

    def saver(self, step: str) -> Callable[[dict[str, Any]], None]:
        """The ``checkpoint`` callback of ``train_step`` for ``step``: writes at most every
        :data:`SAVE_EVERY_S` seconds (tiny epochs would otherwise spend their time writing) and at the end."""
        path, last = self.path(step), [time.monotonic()]

        def save(state: dict[str, Any]) -> None:
            if state["done"] or time.monotonic() - last[0] >= SAVE_EVERY_S:
                atomic_write(path, lambda fh: torch.save({**state, "fit_key": self.key}, fh))
                last[0] = time.monotonic()

        return save
