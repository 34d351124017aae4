"""The two-step teacher-student training loop, shared by the baseline and T-S.

Step 1 (knowledge transfer) minimises ``L_emb = MSE(projection(student_emb), teacher_emb)``.
Step 2 (knowledge guidance) minimises ``(alpha * L_emb + beta * L_target) / (alpha + beta)``,
with ``L_target`` the recipe's loss on standardised targets (crabnet's RobustL1, or L1); how the
optimiser, schedule and weight averaging run is the :class:`~matbench_ts.recipe.Recipe`.
Rows without a teacher embedding (NaN rows) are masked out of ``L_emb``; in step 2 each row with one
weighs like a row of ``L_target`` (a batch's ``L_emb`` is scaled by its share of such rows), so a
few structures among many targets guide a little instead of outweighing them.
"""

from __future__ import annotations

import contextlib
import copy
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import RidgeCV
from torch import Tensor, nn
from tqdm.auto import tqdm

from ._crabnet import SWA, Lamb, Lookahead, RobustL1, with_hook_state
from .recipe import Recipe
from .students.base import Student


#: Lowest log standard deviation the robust loss sees (standardised targets: std >= 0.1 % of theirs).
MIN_LOG_STD = -7.0
# The measured alpha's ceiling: a step 1 that fits its few training rows exactly makes L_emb nearly 0 and
# the balancing alpha unbounded (19,000 on matbench_glass at 5 %, one row with a structure); every alpha
# measured on the evidence tasks was below 45.
MAX_ALPHA = 100.0


class StudentWithProjection(nn.Module):
    """A student plus a learned linear map from its embedding to the teacher's dimension."""

    def __init__(self, student: Student, teacher_dim: int | None) -> None:
        super().__init__()
        self.student = student
        self.projection = nn.Linear(student.embedding_dim, teacher_dim) if teacher_dim else None

    def forward(self, batch: Any) -> tuple[Tensor | None, Tensor, Tensor]:
        """``(projected embedding or None, prediction, log_std)``."""
        emb, pred, log_std = self.student(batch)
        return (self.projection(emb) if self.projection is not None else None), pred, log_std


@dataclass
class Rows:
    """Encoded student inputs with optional scaled targets and scaled teacher embeddings."""

    items: list
    y: np.ndarray | None = None  # (n,) or None in step 1
    teacher: np.ndarray | None = None  # (n, d), NaN rows where there is no structure

    def subset(self, idx: np.ndarray) -> Rows:
        return Rows(
            [self.items[i] for i in idx],
            None if self.y is None else self.y[idx],
            None if self.teacher is None else self.teacher[idx],
        )

    def __len__(self) -> int:
        return len(self.items)


@dataclass
class Losses:
    """Summed per-row losses over an epoch or evaluation pass."""

    emb_sum: float = 0.0
    emb_rows: int = 0
    target_sum: float = 0.0
    target_rows: int = 0

    @property
    def emb(self) -> float:
        return self.emb_sum / self.emb_rows if self.emb_rows else float("nan")

    @property
    def target(self) -> float:
        return self.target_sum / self.target_rows if self.target_rows else float("nan")


#: Target losses: crabnet's RobustL1 (prediction and log-std), L1, or binary cross-entropy on logits.
OBJECTIVES = ("robust", "l1", "bce")


def batch_losses(
    model: StudentWithProjection, rows: Rows, idx: Sequence[int], device: torch.device, *,
    objective: str = "l1", jitter: float = 0.0, pos_weight: float | None = None,
) -> tuple[Tensor, int, Tensor, Tensor, int]:
    """``(L_emb, n_emb_rows, L_target, monitored, n_target_rows)`` of one batch, as tensors.

    ``L_target`` is the ``objective``'s loss (``pos_weight`` weighs the positive class of "bce");
    ``monitored`` is what validation watches: the MAE, or the unweighted log-loss for "bce".
    ``jitter`` > 0 applies the student's training noise to the inputs.
    """
    batch = model.student.collate([rows.items[i] for i in idx], device)
    if jitter:
        batch = model.student.augment(batch, jitter)
    projected, pred, log_std = model(batch)
    pred = pred.float()  # losses in float32, also under mixed precision
    projected = None if projected is None else projected.float()
    zero = pred.sum() * 0.0
    emb_loss, n_emb = zero, 0
    if projected is not None and rows.teacher is not None:
        teacher = rows.teacher[idx]
        has = ~np.isnan(teacher[:, 0])  # on the host: no device sync, no masking when every row has one
        n_emb = int(has.sum())
        if n_emb == len(idx):
            emb_loss = ((projected - torch.as_tensor(teacher, device=device)) ** 2).mean()
        elif n_emb:
            has_t = torch.as_tensor(has, device=device)
            emb_loss = ((projected[has_t] - torch.as_tensor(teacher[has], device=device)) ** 2).mean()
    target_loss, monitored, n_target = zero, zero, 0
    if rows.y is not None:
        y = torch.as_tensor(rows.y[idx], device=device, dtype=pred.dtype)
        n_target = len(idx)
        if objective == "bce":
            monitored = F.binary_cross_entropy_with_logits(pred, y)
            target_loss = monitored if pos_weight is None else F.binary_cross_entropy_with_logits(
                pred, y, pos_weight=torch.tensor(pos_weight, device=device))
        else:
            monitored = target_loss = (pred - y).abs().mean()
            if objective == "robust":  # a floor on the log-std keeps it finite when rows are fitted exactly
                target_loss = RobustL1(pred, log_std.float().clamp(min=MIN_LOG_STD), y)
    return emb_loss, n_emb, target_loss, monitored, n_target


def autocast_dtype(device: torch.device) -> torch.dtype:
    """bfloat16 where the device has it (CPUs, recent GPUs), else float16 (with gradient scaling)."""
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


@contextlib.contextmanager
def mixed_precision(device: torch.device, enabled: bool) -> Iterator[None]:
    """Autocast the student's forward pass when ``enabled`` (weights and optimiser stay float32)."""
    if not enabled:
        yield
        return
    with torch.autocast(device.type, dtype=autocast_dtype(device)):
        yield


def evaluate(
    model: StudentWithProjection, rows: Rows, batch_size: int, device: torch.device, amp: bool = False,
    objective: str = "l1",
) -> Losses:
    """Mean losses over ``rows`` in eval mode (autocast when ``amp``); ``target`` is the monitored
    target loss (the MAE, or the log-loss for ``objective="bce"``)."""
    out = Losses()
    model.eval()
    with torch.no_grad(), mixed_precision(device, amp):
        for start in range(0, len(rows), batch_size):
            idx = np.arange(start, min(start + batch_size, len(rows)))
            emb, n_emb, _, monitored, n_target = batch_losses(model, rows, idx, device, objective=objective)
            out.emb_sum += float(emb) * n_emb
            out.emb_rows += n_emb
            out.target_sum += float(monitored) * n_target
            out.target_rows += n_target
    return out


@dataclass
class StepConfig:
    """How one training step runs."""

    name: str
    epochs: int
    alpha: float  # weight of L_emb
    beta: float  # weight of L_target
    recipe: Recipe
    learning_rate: float  # the peak (cyclic schedule) or constant rate
    batch_size: int
    patience: int  # epochs without progress that stop a step trained without SWA
    verbose: int
    amp: bool = False  # mixed precision (autocast) in both the training and the validation passes
    objective: str = "l1"  # the target loss (OBJECTIVES)
    pos_weight: float | None = None  # weight of the positive class in "bce"


def make_optimizer(model: nn.Module, recipe: Recipe, learning_rate: float) -> torch.optim.Optimizer:
    """The recipe's optimiser: Lamb in Lookahead (crabnet) or AdamW, wrapped in crabnet's SWA."""
    if recipe.optimizer == "lamb":
        optimizer = with_hook_state(Lookahead(Lamb(model.parameters(), lr=learning_rate,
                                                   weight_decay=recipe.weight_decay), alpha=0.5, k=6))
    else:
        optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=recipe.weight_decay,
                                      foreach=True)
    return with_hook_state(SWA(optimizer)) if recipe.swa else optimizer


def _optimizer_layers(optimizer: Any) -> Iterator[Any]:
    """The optimiser and those it wraps (crabnet's SWA -> Lookahead -> Lamb)."""
    while optimizer is not None:
        yield optimizer
        optimizer = getattr(optimizer, "optimizer", None) or getattr(optimizer, "base_optimizer", None)


def optimizer_snapshot(optimizer: torch.optim.Optimizer, params: Sequence[Tensor]) -> dict[str, Any]:
    """Every layer's per-parameter state (keyed by parameter position) and scalar attributes,
    and the parameter groups' settings: what crabnet's wrappers' own ``state_dict`` cannot restore
    in another process (they key their state by ``id``)."""
    index = {id(p): i for i, p in enumerate(params)}
    layers = []
    for layer in _optimizer_layers(optimizer):
        state = {index[id(p)]: copy.deepcopy(s) for p, s in layer.state.items() if id(p) in index}
        scalars = {k: copy.deepcopy(v) for k, v in vars(layer).items()
                   if isinstance(v, (bool, int, float, list, np.number)) and not k.startswith("_")
                   and k not in ("param_groups", "state", "defaults")}
        layers.append({"state": state, "scalars": scalars})
    groups = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
    return {"layers": layers, "groups": copy.deepcopy(groups)}


def restore_optimizer(optimizer: torch.optim.Optimizer, params: Sequence[Tensor], snapshot: dict[str, Any]) -> None:
    """Put an :func:`optimizer_snapshot` back (state tensors moved to their parameter's device)."""
    for layer, saved in zip(_optimizer_layers(optimizer), snapshot["layers"]):
        layer.state.clear()  # in place: wrappers hold references to the inner state
        for i, s in saved["state"].items():
            p = params[i]
            layer.state[p] = {k: v.to(p.device) if isinstance(v, Tensor) and v.dim() else v for k, v in s.items()}
        for name, value in saved["scalars"].items():
            setattr(layer, name, value)
    for group, values in zip(optimizer.param_groups, snapshot["groups"]):
        group.update(values)


def train_step(
    model: StudentWithProjection,
    train: Rows,
    val: Rows,
    config: StepConfig,
    device: torch.device,
    rng: np.random.Generator,
    checkpoint: Callable[[dict[str, Any]], None] | None = None,
    resume: dict[str, Any] | None = None,
) -> list[dict[str, float]]:
    """Train one step; returns the per-epoch history.

    The monitored validation score is the MAE (log-loss for classification) when ``beta > 0``,
    else ``L_emb``.
    With the recipe's SWA (crabnet's), snapshots at the minima of the cyclic learning rate within
    1 % of the best score are averaged and the average is the result; without it, the best epoch is
    kept. With the recipe's ``early_stopping``, ``patience_cycles`` cycles that add no snapshot (SWA)
    or ``patience`` epochs without progress stop the step, but not before the recipe's
    ``min_epoch_fraction`` of the epochs. A non-finite training loss raises ``FloatingPointError``.

    ``checkpoint``, when given, receives after each epoch everything the step needs to go on
    (weights, optimiser, schedule, random streams, early-stopping state; ``"done"`` once it has
    finished; ``"seconds"``, the step's training time so far over all calls, None when it resumed
    from a state that did not record it); passing that dict back as ``resume`` continues the step
    where it was.
    """
    recipe = config.recipe
    optimizer = make_optimizer(model, recipe, config.learning_rate)
    scheduler = None
    if recipe.cycle_epochs:
        batches = -(-len(train) // config.batch_size)
        scheduler = torch.optim.lr_scheduler.CyclicLR(
            optimizer, base_lr=min(recipe.base_learning_rate, config.learning_rate), max_lr=config.learning_rate,
            step_size_up=max(1, recipe.cycle_epochs * batches // 2), cycle_momentum=False,
        )
    # float16 gradients can underflow: scale them (a no-op with bfloat16 or without amp)
    scaler = torch.amp.GradScaler(device.type, enabled=config.amp and autocast_dtype(device) == torch.float16)
    total = config.alpha + config.beta
    monitor = "target" if config.beta > 0 else "emb"
    best, best_state, since_best, history, averaged, dry_cycles = np.inf, None, 0, [], 0, 0
    swa_checked, first_epoch = False, 0
    params = list(model.parameters())
    started, seconds_before = time.monotonic(), 0.0
    if resume is not None:
        model.load_state_dict(resume["model"])
        restore_optimizer(optimizer, params, resume["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(resume["scheduler"])
        scaler.load_state_dict(resume["scaler"])
        rng.bit_generator.state = resume["rng"]
        torch.set_rng_state(resume["torch_rng"])
        if device.type == "cuda" and resume.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(resume["cuda_rng"], device)
        first_epoch, seconds_before = resume["epoch"], resume.get("seconds")
        best, best_state, since_best, history, averaged, dry_cycles, swa_checked = (
            resume["loop"][k] for k in ("best", "best_state", "since_best", "history", "averaged", "dry_cycles",
                                        "swa_checked"))
        if resume.get("done"):
            return history

    def save(epoch: int, done: bool) -> None:
        if checkpoint is None:
            return
        checkpoint({
            "epoch": epoch, "done": done, "model": copy.deepcopy(model.state_dict()),
            "optimizer": optimizer_snapshot(optimizer, params),
            "scheduler": None if scheduler is None else scheduler.state_dict(), "scaler": scaler.state_dict(),
            "rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
            "seconds": None if seconds_before is None else seconds_before + time.monotonic() - started,
            "loop": {"best": best, "best_state": best_state, "since_best": since_best, "history": list(history),
                     "averaged": averaged, "dry_cycles": dry_cycles, "swa_checked": swa_checked},
        })

    def swa_check(score: float) -> bool:
        """crabnet's rule: reset the average on a 2 % gain, add snapshots within 1 % of the best."""
        nonlocal swa_checked
        optimizer.update_swa(score)
        swa_checked = True
        model.train(not recipe.dropout_until_swa)  # evaluate() left it in eval mode
        return bool(optimizer.minimum_found)

    may_stop_after = int(np.ceil(recipe.min_epoch_fraction * config.epochs))  # epochs
    bar = tqdm(range(first_epoch, config.epochs), desc=config.name, disable=config.verbose < 1, leave=False,
               initial=first_epoch, total=config.epochs)
    for epoch in bar:
        model.train(not (recipe.dropout_until_swa and swa_checked))
        order = rng.permutation(len(train))
        epoch_loss = torch.zeros((), device=device)
        at_minimum = recipe.swa and (epoch + 1) % recipe.cycle_epochs == 0  # the cycle's last epoch
        found = False
        for start in range(0, len(train), config.batch_size):
            idx = order[start : start + config.batch_size]
            with mixed_precision(device, config.amp):
                emb, n_emb, target, _, n_target = batch_losses(model, train, idx, device, objective=config.objective,
                                                               jitter=recipe.jitter, pos_weight=config.pos_weight)
            if n_target and n_emb < n_target:  # a row with a structure weighs like a row of the target loss
                emb = emb * (n_emb / n_target)
            loss = (config.alpha * emb + config.beta * target) / total
            if not loss.requires_grad:  # a batch with nothing to learn from
                continue
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            if scheduler is not None:
                scheduler.step()
            epoch_loss += loss.detach()
            if at_minimum and recipe.swa_every_batch:  # as crabnet: a check after every batch of that epoch
                found |= swa_check(getattr(evaluate(model, val, config.batch_size * 4, device, config.amp,
                                                    config.objective), monitor))
        if not torch.isfinite(epoch_loss):  # one host sync per epoch
            raise FloatingPointError(
                f"{config.name}: the training loss became non-finite in epoch {epoch + 1} "
                f"(learning_rate={config.learning_rate:g}, alpha={config.alpha:g}, beta={config.beta:g}); "
                "lower the learning rate"
            )
        val_losses = evaluate(model, val, config.batch_size * 4, device, config.amp, config.objective)
        score = getattr(val_losses, monitor)
        history.append({"step": config.name, "epoch": epoch, "val_emb": val_losses.emb, "val_target": val_losses.target})
        bar.set_postfix(val_emb=f"{val_losses.emb:.4f}", val_target=f"{val_losses.target:.4f}")
        if recipe.swa:
            if at_minimum:
                if not recipe.swa_every_batch:
                    found = swa_check(score)
                averaged += found
                # crabnet counts cycles without a new minimum over the whole run; else they must follow each other
                dry_cycles = dry_cycles + 1 if not found else (dry_cycles if recipe.cumulative_patience else 0)
                if recipe.early_stopping and dry_cycles >= recipe.patience_cycles and epoch + 1 >= may_stop_after:
                    break
        elif score < best - 1e-6 or best_state is None:
            best, best_state, since_best = score, copy.deepcopy(model.state_dict()), 0
        else:
            since_best += 1
            if recipe.early_stopping and since_best >= config.patience and epoch + 1 >= may_stop_after:
                break
        save(epoch + 1, done=False)
    if recipe.swa and averaged:
        optimizer.swap_swa_sgd()
    elif best_state is not None:
        model.load_state_dict(best_state)
    save(len(history), done=True)
    return history


def probe_head(model: StudentWithProjection, rows: Rows, batch_size: int, device: torch.device) -> None:
    """Fit the head's prediction output to ``rows.y`` by ridge regression on the student's embeddings
    (the ridge strength by scikit-learn's efficient leave-one-out), its log-std output to the constant
    that minimises the robust loss of the probe's residuals (``Recipe.probe_head``)."""
    student = model.student
    model.eval()
    parts = []
    with torch.no_grad():
        for start in range(0, len(rows), batch_size):
            parts.append(student.embed(student.collate(rows.items[start : start + batch_size], device)).float().cpu())
    emb = torch.cat(parts).double().numpy()
    probe = RidgeCV(alphas=np.logspace(-3, 3, 13)).fit(emb, rows.y)
    residual = float(np.abs(rows.y - probe.predict(emb)).mean())
    # RobustL1 = sqrt(2)|r| exp(-s) + s is least at s = log(sqrt(2) mean|r|)
    log_std = max(float(np.log(np.sqrt(2) * max(residual, 1e-12))), MIN_LOG_STD)
    student.set_linear_head(probe.coef_, float(probe.intercept_), log_std)


def balancing_alpha(
    model: StudentWithProjection, rows: Rows, beta: float, batch_size: int, device: torch.device, objective: str = "l1"
) -> float:
    """The alpha at which ``alpha * L_emb`` equals ``beta`` times the monitored target loss on ``rows``
    (the paper's rule; the MAE for regression, the log-loss for classification)."""
    losses = evaluate(model, rows, batch_size, device, objective=objective)
    if not losses.emb_rows or not np.isfinite(losses.emb) or losses.emb <= 0:
        return 0.0
    alpha = float(beta * losses.target / losses.emb)
    if alpha > MAX_ALPHA:
        rows_text = "the training row" if losses.emb_rows == 1 else f"the {losses.emb_rows} training rows"
        warnings.warn(f"the embedding loss of {rows_text} with a structure is nearly zero "
                      f"({losses.emb:.2g}: step 1 fitted them almost exactly), so the balancing alpha would be "
                      f"{alpha:.3g}; it is capped at {MAX_ALPHA:g}", UserWarning, stacklevel=2)
        alpha = MAX_ALPHA
    return alpha
