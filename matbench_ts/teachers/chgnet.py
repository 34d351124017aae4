"""Frozen pretrained CHGNet (weights ship in the ``chgnet`` wheel) as a teacher."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from pymatgen.core import Structure
from sklearn.base import BaseEstimator, TransformerMixin

from ..device import resolve_device


class CHGNetTeacher(TransformerMixin, BaseEstimator):
    """Embedding = mean over atoms of CHGNet's last atom features (its readout input).

    CHGNet is frozen, so ``fit`` does nothing and the embedding of a structure
    depends only on the structure: the cache reuses it across folds and tasks.
    CHGNet was trained on Materials Project energies: as a teacher of MP-derived
    formation-energy tasks it has seen test-set targets (a leaky teacher).
    """

    def __init__(self, model_name: str = "0.3.0", batch_size: int = 64, device: str | None = None) -> None:
        self.model_name = model_name
        self.batch_size = batch_size
        self.device = device

    def cache_id(self) -> str:
        """Identity of the embedding function, independent of any training data."""
        return f"chgnet-{self.model_name}"

    def fit(self, structures: Sequence[Structure], y: np.ndarray | None = None) -> CHGNetTeacher:
        self.embedding_dim_ = 64
        return self

    def _model(self):
        from chgnet.model import CHGNet

        model = CHGNet.load(model_name=self.model_name, use_device="cpu", verbose=False)
        return model.to(resolve_device(self.device)).eval()

    def transform(self, structures: Sequence[Structure]) -> np.ndarray:
        model = self._model()
        device = next(model.parameters()).device
        out = np.empty((len(structures), 64), dtype=np.float32)
        with torch.no_grad():
            for start in range(0, len(structures), self.batch_size):
                chunk = structures[start : start + self.batch_size]
                graphs = []
                for offset, struct in enumerate(chunk):
                    try:
                        graphs.append(model.graph_converter(struct).to(device))
                    except Exception as exc:
                        raise ValueError(
                            f"CHGNet cannot build a graph for structure {start + offset} "
                            f"({struct.composition.reduced_formula}): {exc}"
                        ) from None
                pred = model(graphs, task="e", return_atom_feas=True)
                for offset, atom_feas in enumerate(pred["atom_fea"]):
                    out[start + offset] = atom_feas.mean(dim=0).cpu().numpy()
        return out
