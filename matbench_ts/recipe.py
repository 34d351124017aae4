"""Training recipes: how a student learns (loss, optimiser, schedule, weight averaging, noise).

``"crabnet"`` and ``"roost"`` are the published students' own recipes, read from their code
(``crabnet.crabnet_.CrabNet.fit``; aviary's Roost example); ``"plain"`` is this package's first
recipe (AdamW, L1 loss, early stopping), kept for comparison. ``recipe="auto"`` takes the
student's own. A dict names a recipe and overrides fields: ``{"base": "crabnet", "swa": False}``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Recipe:
    """One way to train a student; every field is one change that can be ablated."""

    #: "robust": crabnet's RobustL1 with the log-std head (gives uncertainty); "l1": plain L1.
    loss: str = "robust"
    #: "lamb": crabnet's Lamb inside Lookahead (alpha 0.5, k 6); "adamw": torch's AdamW.
    optimizer: str = "lamb"
    #: The peak learning rate of the cyclic schedule, or the constant rate.
    learning_rate: float = 6e-3
    #: Lowest rate of the cyclic schedule (unused when ``cycle_epochs`` is 0).
    base_learning_rate: float = 1e-4
    weight_decay: float = 0.0
    #: > 0: triangular cyclic learning rate with this period in epochs (crabnet: 20).
    cycle_epochs: int = 20
    #: crabnet's stochastic weight averaging at the cycle minima: snapshots within 1 % of the best
    #: validation score are averaged; with ``early_stopping``, training stops after ``patience_cycles``
    #: cycles that add none. Without it, the best epoch is kept (``patience`` epochs without progress
    #: stop, with ``early_stopping``).
    swa: bool = True
    patience_cycles: int = 3
    #: crabnet checks the validation score after every batch of a cycle's last epoch (more snapshots);
    #: False checks once, at the end of that epoch.
    swa_every_batch: bool = False
    #: crabnet stops after ``patience_cycles`` cycles without a new minimum in all; False: in a row.
    cumulative_patience: bool = False
    #: crabnet's ``fit`` leaves the model in eval mode after its first weight-averaging check (its
    #: ``predict`` calls ``eval()`` and nothing calls ``train()`` again): dropout then stops. True does
    #: the same; False (default) keeps dropout on in every training epoch.
    dropout_until_swa: bool = False
    #: crabnet's noise on the fractional amounts during training ("fudge"; 0 = none).
    jitter: float = 0.02
    #: None: crabnet's rule from the number of training rows (2**round(log2(n) - 4) in [128, 4096]).
    batch_size: int | None = None
    #: True: the rules above stop a step early (``patience_cycles`` dry cycles with SWA, ``patience``
    #: epochs without progress without). False: every epoch runs; SWA then averages over the whole
    #: run, and without SWA the best epoch is kept (aviary's ``train_ensemble``, ``patience=None``).
    early_stopping: bool = True
    #: Neither stopping rule may end a step before this fraction of its epochs has run (0: any time).
    min_epoch_fraction: float = 0.0
    #: The peak rate when a pretrained checkpoint is fine-tuned on the targets alone (no teacher guiding)
    #: on more than ``finetune_large_rows`` rows (those given to ``fit``; None: ``learning_rate`` always):
    #: with thousands of rows the checkpoint's head start is spent in one cycle and a high rate leaves it
    #: in a worse minimum (docs/results.md).
    finetune_learning_rate: float | None = None
    finetune_large_rows: int = 2000
    #: Fine-tuning a pretrained checkpoint starts from a head fitted to the targets by ridge regression on
    #: the checkpoint's embeddings of the training rows (linear probe, then fine-tune: a fresh head's
    #: first gradients distort pretrained features; Kumar et al., ICLR 2022), not from a random head.
    #: Regression only; a classifier's head starts fresh. Off in every recipe: Roost on 11,000 rows, inner
    #: validation, fine-tuned on the targets alone from it +2.2 %, guided -0.3 % (docs/results.md).
    probe_head: bool = False

    def __post_init__(self) -> None:
        choices = {"loss": ("robust", "l1"), "optimizer": ("lamb", "adamw")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"recipe {name} must be one of {allowed}, got {getattr(self, name)!r}")
        for name in ("learning_rate", "base_learning_rate", "finetune_learning_rate"):
            value = getattr(self, name)
            if value is None and name == "finetune_learning_rate":
                continue
            if not (isinstance(value, (int, float)) and np.isfinite(value) and value > 0):
                raise ValueError(f"recipe {name} must be a finite number > 0, got {value!r}")
        if not (np.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(f"recipe weight_decay must be >= 0, got {self.weight_decay!r}")
        if not (isinstance(self.min_epoch_fraction, (int, float)) and 0 <= self.min_epoch_fraction <= 1):
            raise ValueError(f"recipe min_epoch_fraction must be in [0, 1], got {self.min_epoch_fraction!r}")
        if not (np.isfinite(self.jitter) and self.jitter >= 0):
            raise ValueError(f"recipe jitter must be >= 0, got {self.jitter!r}")
        for name, low in (("cycle_epochs", 0), ("patience_cycles", 1), ("finetune_large_rows", 0)):
            if not isinstance(getattr(self, name), (int, np.integer)) or getattr(self, name) < low:
                raise ValueError(f"recipe {name} must be an integer >= {low}, got {getattr(self, name)!r}")
        for name in ("swa", "probe_head", "dropout_until_swa", "swa_every_batch", "cumulative_patience", "early_stopping"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"recipe {name} must be True or False, got {getattr(self, name)!r}")
        if self.swa and not self.cycle_epochs:
            raise ValueError("recipe swa averages at the minima of the cyclic schedule: it needs cycle_epochs > 0")
        if self.batch_size is not None and (not isinstance(self.batch_size, (int, np.integer)) or self.batch_size < 1):
            raise ValueError(f"recipe batch_size must be a positive integer or None, got {self.batch_size!r}")

    def learning_rate_for(self, n_rows: int, from_checkpoint: bool, guided: bool = False) -> float:
        """The peak (or constant) rate for a fit on ``n_rows`` rows, from a checkpoint or not, with the
        teacher's embedding term (``guided``) or not."""
        fine_tune = from_checkpoint and not guided
        if fine_tune and self.finetune_learning_rate is not None and n_rows > self.finetune_large_rows:
            return float(self.finetune_learning_rate)
        return float(self.learning_rate)

    def batch_size_for(self, n_rows: int) -> int:
        """The batch size for ``n_rows`` training rows."""
        if self.batch_size is not None:
            return int(self.batch_size)
        return int(np.clip(2 ** round(np.log2(max(n_rows, 1)) - 4), 2**7, 2**12))


RECIPES: dict[str, Recipe] = {
    # crabnet's fit, but every epoch runs: its stop after 3 dry cycles ended some small-data runs on a
    # plateau (phonons: 100 of 300 epochs); on inner validation running on was better or the same
    # (later cycles change the average only when they reach a new validation minimum; parity.md).
    # A checkpoint fine-tuned on the targets alone on more than 2,000 rows peaks at 2e-3: on inner validation
    # 2e-3 was better from 2,591 rows up (4 of 5 tasks), 6e-3 as good or better up to 1,611; guided by the
    # teacher, 2e-3 was worse on average (expt_gap), so guided fits keep 6e-3 (docs/results.md)
    "crabnet": Recipe(early_stopping=False, finetune_learning_rate=2e-3, finetune_large_rows=2000),
    # aviary's Roost example: AdamW 3e-4, weight decay 1e-6, robust loss, batch 128, every epoch run and
    # the best on validation kept (train_ensemble's patience=None: with ~2 batches an epoch on small
    # tasks, a 30-epoch patience stopped Roost before it learned; docs/results/parity.md)
    "roost": Recipe(optimizer="adamw", learning_rate=3e-4, weight_decay=1e-6, cycle_epochs=0, swa=False,
                    jitter=0.0, batch_size=128, early_stopping=False),
    # this package's first recipe
    "plain": Recipe(loss="l1", optimizer="adamw", learning_rate=5e-4, cycle_epochs=0, swa=False, jitter=0.0,
                    batch_size=128),
}


#: Fields added after fit states and checkpoints were written with this package: left out of
#: :func:`recipe_settings` at their default, so those states still resume and their records still match.
_ADDED_LATER = ("probe_head",)


def recipe_settings(recipe: Recipe) -> dict[str, Any]:
    """The recipe as resume keys and checkpoint records hold it."""
    settings = dataclasses.asdict(recipe)
    for name in _ADDED_LATER:
        if settings[name] == Recipe.__dataclass_fields__[name].default:
            del settings[name]
    return settings


def resolve_recipe(recipe: str | dict[str, Any] | Recipe, student: Any) -> Recipe:
    """The :class:`Recipe` that ``recipe`` names for ``student`` (a name or a Student)."""
    if isinstance(recipe, Recipe):
        return recipe
    overrides: dict[str, Any] = {}
    if isinstance(recipe, dict):
        overrides = dict(recipe)
        recipe = overrides.pop("base", "auto")
    if recipe == "auto":
        recipe = student if isinstance(student, str) and student in RECIPES else "plain"
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; use 'auto', one of {list(RECIPES)}, or a dict of overrides")
    fields = {f.name for f in dataclasses.fields(Recipe)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"unknown recipe field(s) {unknown}; fields: {sorted(fields)}")
    return dataclasses.replace(RECIPES[recipe], **overrides)
