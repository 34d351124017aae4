"""Roost student built on ``aviary`` (distribution ``aviary-models``)."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import torch
import torch.nn.functional as F
from aviary.roost.data import CompositionData, collate_batch
from aviary.roost.model import Roost
from pymatgen.core import Composition
from torch import Tensor, nn

from .base import Student, residual_hidden


class RoostStudent(Student):
    """Roost (Goodall & Lee 2020): message passing over the stoichiometry graph.

    The embedding is the input of the last linear layer of Roost's output network.
    Defaults are aviary's.
    """

    def __init__(
        self,
        elem_embedding: str = "matscholar200",
        elem_fea_len: int = 64,
        n_graph: int = 3,
        elem_heads: int = 3,
        cry_heads: int = 3,
        trunk_hidden: Sequence[int] = (1024, 512),
        out_hidden: Sequence[int] = (256, 128, 64),
    ) -> None:
        super().__init__()
        self.net = Roost(
            robust=True,  # two outputs: prediction and log standard deviation
            n_targets=[1],
            task_dict={"target": "regression"},
            elem_embedding=elem_embedding,
            elem_fea_len=elem_fea_len,
            n_graph=n_graph,
            elem_heads=elem_heads,
            cry_heads=cry_heads,
            trunk_hidden=tuple(trunk_hidden),
            out_hidden=tuple(out_hidden),
            device="cpu",
        )
        self.max_z = self.net.elem_embedding.num_embeddings - 1

    @property
    def head(self) -> nn.Linear:
        return self.net.output_nns[0].fc_out

    def encode(self, compositions: Sequence[Composition]) -> list:
        frame = pd.DataFrame(
            {"composition": list(compositions), "target": 0.0, "material_id": range(len(compositions))}
        )
        data = CompositionData(frame, task_dict={"target": "regression"})
        return [data[i] for i in range(len(data))]

    def collate(self, items, device: torch.device) -> tuple[Tensor, ...]:
        inputs, _targets, *_ids = collate_batch(items)
        return tuple(t.to(device) for t in inputs)

    def embed(self, batch: tuple[Tensor, ...]) -> Tensor:
        elem_weights, elem_z, self_idx, nbr_idx, cry_elem_idx = batch
        crystal = self.net.material_nn(
            elem_weights, self.net.elem_embedding(elem_z), self_idx, nbr_idx, cry_elem_idx
        )
        return residual_hidden(self.net.output_nns[0], F.relu(self.net.trunk_nn(crystal)))
