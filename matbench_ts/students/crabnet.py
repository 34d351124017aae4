"""CrabNet student built on the ``crabnet`` package's ``SubCrab`` transformer."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch
from pymatgen.core import Composition
from torch import Tensor, nn

from .._crabnet import SubCrab
from .base import Student, residual_hidden


class CrabNetStudent(Student):
    """CrabNet (Wang et al. 2021): element-attention transformer over a formula.

    The embedding is the element-averaged output of CrabNet's residual network
    before its last linear layer; since that layer is linear, ``head(embedding)``
    equals CrabNet's own average of per-element outputs. As in CrabNet, the head has three
    outputs: the prediction is the first gated by the sigmoid of the third, the second is the
    log standard deviation of the robust loss.
    Defaults are CrabNet's published sizes.
    """

    def __init__(
        self,
        d_model: int = 512,
        N: int = 3,
        heads: int = 4,
        out_hidden: Sequence[int] = (1024, 512, 256, 128),
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        fractional: bool = False,
    ) -> None:
        super().__init__()
        with warnings.catch_warnings():
            # torch notes that crabnet's encoder (batch_first=False) cannot use nested tensors: nothing to act on
            warnings.filterwarnings("ignore", message="enable_nested_tensor is True", category=UserWarning)
            self.net = SubCrab(
                out_dims=3,
                d_model=d_model,
                N=N,
                heads=heads,
                out_hidden=list(out_hidden),
                dim_feedforward=dim_feedforward,
                dropout=dropout,
                fractional=fractional,
            )

    @property
    def head(self) -> nn.Linear:
        return self.net.output_nn.fc_out

    def outputs(self, emb: Tensor) -> tuple[Tensor, Tensor]:
        out = self.head(emb)
        return out[:, 0] * torch.sigmoid(out[:, 2]), out[:, 1]

    def set_linear_head(self, weight: np.ndarray, bias: float, log_std: float) -> None:
        # the gate sigmoid(out[:, 2]) starts at 0.5, where it learns fastest: the linear part is doubled
        super().set_linear_head(2 * np.asarray(weight), 2 * bias, log_std)

    def augment(self, batch: tuple[Tensor, Tensor], jitter: float) -> tuple[Tensor, Tensor]:
        """crabnet's fractional noise ("fudge"): amounts times ``1 + N(0, jitter)``, renormalised."""
        if not jitter:
            return batch
        src, frac = batch
        frac = (frac * (1 + torch.randn_like(frac) * jitter)).clamp(0, 1).masked_fill(src == 0, 0)
        return src, frac / frac.sum(dim=1, keepdim=True)

    def encode(self, compositions: Sequence[Composition]) -> list[tuple[list[int], list[float]]]:
        items = []
        for comp in compositions:
            frac = comp.fractional_composition
            items.append(([el.Z for el in frac.elements], [float(v) for v in frac.values()]))
        return items

    def collate(self, items, device: torch.device) -> tuple[Tensor, Tensor]:
        width = max(len(z) for z, _ in items)
        src = np.zeros((len(items), width), dtype=np.int64)
        frac = np.zeros((len(items), width), dtype=np.float32)
        for i, (z, f) in enumerate(items):
            src[i, : len(z)] = z
            frac[i, : len(f)] = f
        return torch.from_numpy(src).to(device), torch.from_numpy(frac).to(device)

    def embed(self, batch: tuple[Tensor, Tensor]) -> Tensor:
        src, frac = batch
        per_element = residual_hidden(self.net.output_nn, self.net.encoder(src, frac))
        present = (src != 0).unsqueeze(-1).to(per_element.dtype)
        return (per_element * present).sum(dim=1) / present.sum(dim=1)
