"""The student interface: composition -> embedding -> property."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from pymatgen.core import Composition
from torch import Tensor, nn


def residual_hidden(resnet: nn.Module, x: Tensor) -> Tensor:
    """Run a Roost-style ``ResidualNetwork`` up to, not through, its final ``fc_out``.

    Both crabnet's and aviary's ResidualNetwork share this layout (aviary's adds
    optional batch norms), so one function gives the embedding for both.
    """
    norms = getattr(resnet, "bns", [nn.Identity()] * len(resnet.fcs))
    for fc, norm, res_fc, act in zip(resnet.fcs, norms, resnet.res_fcs, resnet.acts):
        x = act(norm(fc(x))) + res_fc(x)
    return x


class Student(nn.Module, ABC):
    """A composition model split at its last linear layer.

    Subclasses wrap a model from the field's packages and provide:
    ``encode`` (compositions -> per-row inputs, cheap and done once),
    ``collate`` (a list of per-row inputs -> one batch of tensors),
    ``embed`` (batch -> ``(B, embedding_dim)``) and ``head`` (the final linear layer).
    The head has two outputs or more: the prediction and its log standard deviation (the
    robust loss's uncertainty head, as in the published CrabNet and Roost).
    """

    #: Largest atomic number the student's element table covers.
    max_z: int = 118

    @property
    @abstractmethod
    def head(self) -> nn.Linear:
        """The final linear layer, embedding -> property."""

    @property
    def embedding_dim(self) -> int:
        return self.head.in_features

    @abstractmethod
    def encode(self, compositions: Sequence[Composition]) -> list[Any]:
        """Per-row model inputs, computed once per fit or predict call."""

    @abstractmethod
    def collate(self, items: Sequence[Any], device: torch.device) -> Any:
        """Stack per-row inputs into one batch on ``device``."""

    @abstractmethod
    def embed(self, batch: Any) -> Tensor:
        """The pooled embedding (input of ``head``) of a batch."""

    def outputs(self, emb: Tensor) -> tuple[Tensor, Tensor]:
        """``(prediction, log_std)`` from the embedding: the head's first two outputs."""
        out = self.head(emb)
        return out[:, 0], out[:, 1]

    def set_linear_head(self, weight: np.ndarray, bias: float, log_std: float) -> None:
        """Set the head so that the prediction is ``emb @ weight + bias`` and the log-std ``log_std``
        for every row (a linear probe's fit; ``Recipe.probe_head``)."""
        head = self.head
        with torch.no_grad():
            head.weight.zero_()
            head.bias.zero_()
            head.weight[0].copy_(torch.as_tensor(weight))
            head.bias[0].fill_(float(bias))
            head.bias[1].fill_(float(log_std))

    def augment(self, batch: Any, jitter: float) -> Any:
        """A training batch with input noise of relative size ``jitter`` (default: none)."""
        return batch

    def forward(self, batch: Any) -> tuple[Tensor, Tensor, Tensor]:
        """Return ``(embedding, prediction, log_std)`` for a batch."""
        emb = self.embed(batch)
        return (emb, *self.outputs(emb))

    def check_elements(self, compositions: Sequence[Composition]) -> None:
        """Raise ValueError naming the first row with an element outside the student's table."""
        for i, comp in enumerate(compositions):
            for el in comp.elements:
                if el.Z > self.max_z:
                    raise ValueError(
                        f"row {i}: element {el} in {comp.formula} is unknown to the "
                        f"{type(self).__name__} element table (Z <= {self.max_z})"
                    )
