"""The two-step teacher-student training loop, shared by the baseline and T-S.

Step 1 (knowledge transfer) minimises ``L_emb = MSE(projection(student_emb), teacher_emb)``.
Step 2 (knowledge guidance) minimises ``(alpha * L_emb + beta * L_target) / (alpha + beta)``,
with ``L_target`` the L1 loss on standardised targets (Matbench scores MAE).
Rows without a teacher embedding (NaN rows) are masked out of ``L_emb``.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .students.base import Student


class StudentWithProjection(nn.Module):
    """A student plus a learned linear map from its embedding to the teacher's dimension."""

    def __init__(self, student: Student, teacher_dim: int | None) -> None:
        super().__init__()
        self.student = student
        self.projection = nn.Linear(student.embedding_dim, teacher_dim) if teacher_dim else None

    def forward(self, batch: Any) -> tuple[Tensor | None, Tensor]:
        emb, pred = self.student(batch)
        return (self.projection(emb) if self.projection is not None else None), pred


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


def batch_losses(model: StudentWithProjection, rows: Rows, idx: Sequence[int], device: torch.device):
    """``(L_emb, n_emb_rows, L_target, n_target_rows)`` of one batch, as tensors."""
    batch = model.student.collate([rows.items[i] for i in idx], device)
    projected, pred = model(batch)
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
    target_loss, n_target = zero, 0
    if rows.y is not None:
        y = torch.as_tensor(rows.y[idx], device=device, dtype=pred.dtype)
        target_loss, n_target = (pred - y).abs().mean(), len(idx)
    return emb_loss, n_emb, target_loss, n_target


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
    model: StudentWithProjection, rows: Rows, batch_size: int, device: torch.device, amp: bool = False
) -> Losses:
    """Mean losses over ``rows`` in eval mode (autocast when ``amp``)."""
    out = Losses()
    model.eval()
    with torch.no_grad(), mixed_precision(device, amp):
        for start in range(0, len(rows), batch_size):
            idx = np.arange(start, min(start + batch_size, len(rows)))
            emb, n_emb, target, n_target = batch_losses(model, rows, idx, device)
            out.emb_sum += float(emb) * n_emb
            out.emb_rows += n_emb
            out.target_sum += float(target) * n_target
            out.target_rows += n_target
    return out


@dataclass
class StepConfig:
    """How one training step runs."""

    name: str
    epochs: int
    alpha: float  # weight of L_emb
    beta: float  # weight of L_target
    learning_rate: float
    batch_size: int
    weight_decay: float
    patience: int
    verbose: int
    amp: bool = False  # mixed precision (autocast) in both the training and the validation passes


def train_step(
    model: StudentWithProjection,
    train: Rows,
    val: Rows,
    config: StepConfig,
    device: torch.device,
    rng: np.random.Generator,
) -> list[dict[str, float]]:
    """Train for ``config.epochs`` with early stopping on the validation loss; keep the best weights.

    The monitored loss is ``L_target`` when ``beta > 0`` (what we predict), else ``L_emb``.
    Returns the per-epoch history.
    """
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay, foreach=True
    )
    # float16 gradients can underflow: scale them (a no-op with bfloat16 or without amp)
    scaler = torch.amp.GradScaler(device.type, enabled=config.amp and autocast_dtype(device) == torch.float16)
    total = config.alpha + config.beta
    monitor = "target" if config.beta > 0 else "emb"
    best, best_state, since_best, history = np.inf, None, 0, []
    bar = tqdm(range(config.epochs), desc=config.name, disable=config.verbose < 1, leave=False)
    for epoch in bar:
        model.train()
        order = rng.permutation(len(train))
        for start in range(0, len(train), config.batch_size):
            idx = order[start : start + config.batch_size]
            with mixed_precision(device, config.amp):
                emb, n_emb, target, n_target = batch_losses(model, train, idx, device)
            loss = (config.alpha * emb + config.beta * target) / total
            if not loss.requires_grad:  # a batch with nothing to learn from
                continue
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        val_losses = evaluate(model, val, config.batch_size * 4, device, config.amp)
        score = getattr(val_losses, monitor)
        history.append({"step": config.name, "epoch": epoch, "val_emb": val_losses.emb, "val_target": val_losses.target})
        bar.set_postfix(val_emb=f"{val_losses.emb:.4f}", val_target=f"{val_losses.target:.4f}")
        if score < best - 1e-6 or best_state is None:
            best, best_state, since_best = score, copy.deepcopy(model.state_dict()), 0
        else:
            since_best += 1
            if since_best >= config.patience:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    return history


def balancing_alpha(model: StudentWithProjection, rows: Rows, beta: float, batch_size: int, device: torch.device) -> float:
    """The alpha at which ``alpha * L_emb`` equals ``beta * L_target`` on ``rows`` (the paper's rule)."""
    losses = evaluate(model, rows, batch_size, device)
    if not losses.emb_rows or not np.isfinite(losses.emb) or losses.emb <= 0:
        return 0.0
    return float(beta * losses.target / losses.emb)
